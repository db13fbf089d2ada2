"""Parse, store, correlate: the pipeline shared by ``mma replay``, ``mma ingest`` and ``mma run``.

One message → one transaction: a notice with its event, region and the
candidates its region causes, or an alert with its object and the candidates
it causes, commit together (a batch of alerts: one transaction), each step
inside the :mod:`~mma.ingest.guard`. The pipeline also keeps the in-memory
index of active regions in step with the database, and runs the re-score and
expiry jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import Connection, Engine

from mma import channels
from mma.config import Config
from mma.db import locks
from mma.errors import BadMessage, Ignored, TransientError
from mma.ingest.alerts import Vetters, store_alerts
from mma.ingest.guard import Guard, Parsed, database_errors, parse_checked
from mma.ingest.notices import store_notice
from mma.ingest.stage import Handler, Outcome, Stage
from mma.match.candidate import Thresholds
from mma.match.correlator import Correlator
from mma.models import Alert, Item, Notice

log = logging.getLogger(__name__)


class IndexKeeper:
    """Keeps the correlator's in-memory region index in step with the database.

    The index changes inside transactions; after a failed one it may be ahead of
    the database, so it is marked stale and rebuilt whole before the next step.
    """

    def __init__(self, engine: Engine, correlator: Correlator) -> None:
        self.engine = engine
        self.correlator = correlator
        self.stale = True

    def ensure(self) -> None:
        """Rebuild the index if it is stale (outside a transaction)."""
        if self.stale:
            with self.engine.connect() as conn:
                self.correlator.load_active(conn)
            self.stale = False

    def sync(self, conn: Connection) -> None:
        """Bring the index to the database's active regions (rebuilt whole if stale)."""
        if self.stale:
            self.correlator.load_active(conn)
            self.stale = False
        else:
            self.correlator.sync_active(conn)

    def errors(self, what: str) -> AbstractContextManager[None]:
        """:func:`database_errors`, marking the index stale on a failure."""
        return database_errors(what, self.mark_stale)

    def mark_stale(self) -> None:
        """Rebuild before the next step."""
        self.stale = True


class Pipeline:
    """Parse, store, correlate: one message at a time, each in one transaction."""

    def __init__(self, engine: Engine, config: Config,
                 fetch: Callable[[str], bytes] | None = None, *, deliver: bool = True) -> None:
        """Set up the pipeline.

        Parameters
        ----------
        fetch
            Downloads a skymap URL (raising TransientError or BadMessage); None
            leaves URL-only maps unfetched (replays without --fetch).
        deliver
            Queue deliveries in the outbox for the enabled channels. False (``mma
            replay``, ``mma ingest --no-deliver``): store and match only; candidates
            are scored exactly as with deliveries (the channels' cuts still count).
        """
        self.engine = engine
        self.config = config
        self.channels = channels.enabled_channels(config)
        self.correlator = Correlator(config, Thresholds.of(config, self.channels))
        self.guard = Guard(engine)
        limits = config.section("limits")
        self.stage = Stage(engine, config, self.correlator, self.channels if deliver else {},
                           fetch, self.guard.dead_letter,
                           int(limits["max_skymap_inflated_bytes"]),
                           int(limits["max_region_tiles"]))
        self.vet = Vetters(config)
        # What a replay's summary shows, and the daemon's tests read.
        self.counts = self.guard.counts
        self.parse, self.settle = self.guard.parse, self.guard.settle
        self.ignored, self.dead_letter = self.guard.ignored, self.guard.dead_letter
        self.index = IndexKeeper(engine, self.correlator)

    def process(self, handler: Handler, raw: bytes, *, origin: str, topic: str = "",
                item: Item | None = None, now: datetime | None = None) -> Outcome:
        """Process one message; never raises for a bad message.

        Parameters
        ----------
        handler
            The handler module that claims the message.
        raw
            The message bytes, kept with the notice or in the dead-letter table.
        origin
            ``topic:partition:offset`` or a file path (with ``#n`` for the n-th record).
        item
            The already parsed object, if the caller parsed it (replay sorts first).
        now
            Stream time: the notice's issue time or the alert's time in a
            replay, the wall clock when live.

        Raises
        ------
        TransientError
            The database failed; the message should be retried, not dead-lettered.
        """
        try:
            with self.index.errors(origin):
                self.index.ensure()
                if item is None:
                    item = parse_checked(handler, raw, topic=topic)
                if isinstance(item, Notice):
                    outcome = store_notice(self.stage, handler, item, raw, origin,
                                           now or item.issued_time)
                else:
                    outcome = store_alerts(self.stage, self.vet, [item], [now or item.time])[0]
        except TransientError:
            raise
        except Ignored as exc:
            return self.ignored(handler.NAME, origin, exc)
        except BadMessage as exc:
            return self.dead_letter(handler.NAME, origin, exc, raw)
        except Exception as exc:  # a bug must not kill the stream; the bytes are kept
            log.exception("%s: unexpected error in %s", origin, handler.NAME)
            self.index.stale = True
            return self.dead_letter(handler.NAME, origin, exc, raw)
        self.counts[outcome.kind] += 1
        return outcome


    def process_alerts(self, batch: Sequence[Parsed], now: datetime | None = None,
                       ) -> list[Outcome]:
        """Store and match parsed alerts in one transaction; an outcome per alert.

        Per-message transactions cap a stream at a few hundred alerts per second
        (a commit each); a Kafka batch of a Rubin visit commits once. If the batch
        fails for a reason other than the database (a bug triggered by one alert),
        its alerts are processed one at a time so that only the culprit is
        dead-lettered.

        Raises
        ------
        TransientError
            The database failed; retry the whole batch (nothing was committed).
        """
        if not batch:
            return []
        items = [p.item for p in batch]
        assert all(isinstance(item, Alert) for item in items)
        alerts: list[Alert] = [item for item in items if isinstance(item, Alert)]
        try:
            with self.index.errors(f"{batch[0].origin} (+{len(batch) - 1})"):
                self.index.ensure()
                outcomes = store_alerts(self.stage, self.vet, alerts,
                                        [now or a.time for a in alerts])
        except TransientError:
            raise
        except Exception:
            log.exception("%s (+%d): batch failed; processing its alerts one by one",
                          batch[0].origin, len(batch) - 1)
            self.index.stale = True
            return [self.process(p.handler, p.raw, origin=p.origin, item=p.item, now=now)
                    for p in batch]
        self.counts.update(o.kind for o in outcomes)
        return outcomes

    def rescore(self, now: datetime) -> set[str]:
        """Re-score every active region against the latest backgrounds; the ids published.

        One event per transaction, each under its lock (:mod:`mma.db.locks`), so that
        alert batches wait for one event at a time, not for the whole re-score. The
        regions are the database's, not this index's: a daemon that re-scored a
        version another daemon had superseded would revert that one's work.
        """
        with self.index.errors("rescore"):
            with self.engine.begin() as conn:
                self.index.sync(conn)
                self.correlator.remeasure(conn, now)
                event_pks = sorted(self.correlator.active)
            touched: set[str] = set()
            for event_pk in event_pks:
                try:
                    touched |= self._rescore_event(event_pk, now)
                except BadMessage as exc:  # values the database refuses: the others go on
                    log.error("rescore of event #%d skipped: %s", event_pk, exc)
            return touched

    def _rescore_event(self, event_pk: int, now: datetime) -> set[str]:
        """Re-score one event in its own transaction, under its lock; the ids published."""
        with self.index.errors(f"rescore of event #{event_pk}"), \
                self.engine.begin() as conn:
            locks.share_regions(conn)
            self.index.sync(conn)
            if event_pk not in self.correlator.active:  # expired or retracted since
                return set()
            locks.lock_events(conn, [event_pk])
            ledger = self.correlator.ledger()
            self.correlator.rescore(conn, ledger, event_pk, now)
            return self.stage.finish(conn, ledger, {event_pk})

    def expire(self, now: datetime) -> list[str]:
        """Close regions whose windows have ended (the scheduler's expiry job)."""
        with self.index.errors("expire"), self.engine.begin() as conn:
            locks.hold_regions(conn)
            self.index.sync(conn)
            return self.correlator.expire(conn, now)
