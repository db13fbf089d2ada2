"""The guarded processing step shared by ``mma replay``, ``mma ingest`` and ``mma run``.

One message → one transaction: a notice with its event, region and the
coincidences its region causes, or an alert with its object and the
coincidences it causes, commit together. Any :class:`mma.errors.BadMessage`
(and any unexpected error of a handler or of the skymap code) sends the raw
bytes to the dead-letter table with the origin and the reason, and the stream
goes on. Database failures are not the message's fault: they propagate as
:class:`mma.errors.TransientError` so the caller retries instead of
dead-lettering good data.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from mma import outbox
from mma.config import Config
from mma.db import region_store, store
from mma.db.engine import describe_error
from mma.errors import BadMessage, Ignored, TransientError
from mma.match.candidate import Thresholds
from mma.match.correlator import Correlator
from mma.match.revisions import Ledger, rerank
from mma.match.scoring import vet_rubin, vet_ztf
from mma.models import Alert, Item, Notice, RegionSpec
from mma.skymaps.region import Region, build_region, hpx29
from mma.skymaps.spec import region_table

log = logging.getLogger(__name__)


class Handler(Protocol):
    """What the pipeline needs of a handler module (see :mod:`mma.handlers`)."""

    NAME: str
    KIND: str

    def parse(self, raw: bytes, *, topic: str) -> Notice | Alert: ...


@dataclass
class Outcome:
    """What processing one message did."""

    kind: str  # notice | alert | duplicate | ignored | dead_letter
    touched: set[str] = field(default_factory=set)  # coincidence ids created or changed


@dataclass
class Parsed:
    """A message after :meth:`Pipeline.parse`: its item, or why it has none."""

    handler: Handler
    raw: bytes
    origin: str
    item: Item | None = None
    error: Exception | None = None


class Pipeline:
    """Parse, store, correlate: one message at a time, each in one transaction."""

    def __init__(self, engine: Engine, config: Config,
                 fetch: Callable[[str], bytes] | None = None) -> None:
        """Set up the pipeline.

        Parameters
        ----------
        fetch
            Downloads a skymap URL (raising TransientError or BadMessage); None
            leaves URL-only maps unfetched (replays without --fetch).
        """
        self.engine = engine
        self.config = config
        self.fetch = fetch
        self.channels = outbox.enabled_channels(config)
        self.correlator = Correlator(config, Thresholds.of(config, self.channels))
        # Vetting rules per survey (DESIGN.md 2.3); other surveys are not vetted yet.
        self.vetters: dict[str, tuple[Callable[..., list[str]], Mapping[str, Any]]] = {
            "ZTF": (vet_ztf, config.section("vetting.ztf")),
            "LSST": (vet_rubin, config.section("vetting.rubin")),
        }
        self.max_skymap_bytes = int(config.section("limits")["max_skymap_inflated_bytes"])
        self.counts: Counter[str] = Counter()
        # The in-memory region index changes inside transactions; after a failed one it
        # may be ahead of the database, so it is rebuilt before the next message.
        self._index_stale = True

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
            if self._index_stale:
                with self.engine.connect() as conn:
                    self.correlator.load_active(conn)
                self._index_stale = False
            if item is None:
                item = handler.parse(raw, topic=topic)
            if isinstance(item, Notice):
                outcome = self._notice(handler, item, raw, origin, now or item.issued_time)
            else:
                outcome = self._alerts([item], [now or item.time])[0]
        except (OperationalError, DBAPIError) as exc:
            self._index_stale = True
            raise TransientError(f"{origin}: database error: {describe_error(exc)}") from exc
        except Ignored as exc:
            return self.ignored(handler.NAME, origin, exc)
        except BadMessage as exc:
            return self.dead_letter(handler.NAME, origin, exc, raw)
        except Exception as exc:  # a bug must not kill the stream; the bytes are kept
            log.exception("%s: unexpected error in %s", origin, handler.NAME)
            self._index_stale = True
            return self.dead_letter(handler.NAME, origin, exc, raw)
        self.counts[outcome.kind] += 1
        return outcome

    def parse(self, handler: Handler, raw: bytes, *, origin: str, topic: str = "") -> Parsed:
        """Parse one message without touching the database; never raises."""
        try:
            return Parsed(handler, raw, origin, item=handler.parse(raw, topic=topic))
        except Exception as exc:  # Ignored, BadMessage, or a handler bug: settled later
            if not isinstance(exc, BadMessage | Ignored):
                log.exception("%s: unexpected error in %s", origin, handler.NAME)
            return Parsed(handler, raw, origin, error=exc)

    def settle(self, parsed: Parsed) -> Outcome:
        """Count an ignored message or dead-letter a failed one (see :meth:`parse`).

        Raises
        ------
        TransientError
            The database is down: retry (the message was not recorded).
        """
        assert parsed.error is not None
        if isinstance(parsed.error, Ignored):
            return self.ignored(parsed.handler.NAME, parsed.origin, parsed.error)
        return self.dead_letter(parsed.handler.NAME, parsed.origin, parsed.error, parsed.raw)

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
            if self._index_stale:
                with self.engine.connect() as conn:
                    self.correlator.load_active(conn)
                self._index_stale = False
            outcomes = self._alerts(alerts, [now or a.time for a in alerts])
        except (OperationalError, DBAPIError) as exc:
            self._index_stale = True
            raise TransientError(f"{batch[0].origin} (+{len(batch) - 1}): database error: "
                                 f"{describe_error(exc)}") from exc
        except Exception:
            log.exception("%s (+%d): batch failed; processing its alerts one by one",
                          batch[0].origin, len(batch) - 1)
            self._index_stale = True
            return [self.process(p.handler, p.raw, origin=p.origin, item=p.item, now=now)
                    for p in batch]
        self.counts.update(o.kind for o in outcomes)
        return outcomes

    def rescore(self, now: datetime) -> set[str]:
        """Re-score every active region against the latest backgrounds (end of a replay).

        The regions are the database's, not this index's: a daemon that re-scored
        a version another daemon had superseded would revert that one's work.
        """
        try:
            with self.engine.begin() as conn:
                if self._index_stale:
                    self.correlator.load_active(conn)
                    self._index_stale = False
                else:
                    self.correlator.sync_active(conn)
                ledger = self.correlator.ledger()
                self.correlator.rescore(conn, ledger, now)
                touched = self._finish(conn, ledger, set(self.correlator.active))
                return touched
        except (OperationalError, DBAPIError) as exc:
            self._index_stale = True
            raise TransientError(f"rescore: database error: {describe_error(exc)}") from exc

    def expire(self, now: datetime) -> list[str]:
        """Close regions whose windows have ended (the scheduler's expiry job)."""
        try:
            with self.engine.begin() as conn:
                return self.correlator.expire(conn, now)
        except (OperationalError, DBAPIError) as exc:
            self._index_stale = True
            raise TransientError(f"expire: database error: {describe_error(exc)}") from exc

    def ignored(self, source: str, origin: str, reason: Ignored) -> Outcome:
        """Count a valid message of no interest (not stored, not dead-lettered)."""
        log.debug("%s: skipped by %s: %s", origin, source, reason)
        self.counts["ignored"] += 1
        return Outcome("ignored")

    def dead_letter(self, source: str, origin: str, error: BaseException, raw: bytes) -> Outcome:
        """Keep a message that cannot be processed, with its origin and the reason.

        Raises
        ------
        TransientError
            The database is down: the message must be retried, not dropped.
        """
        try:
            pk = store.add_dead_letter(self.engine, source=source, origin=origin,
                                       error=error, raw=raw)
        except (OperationalError, DBAPIError) as exc:
            raise TransientError(f"{origin}: cannot store dead letter: {exc}") from exc
        log.error("%s: dead letter #%d (%s, %d bytes): %s", origin, pk, type(error).__name__,
                  len(raw), error)
        self.counts["dead_letter"] += 1
        return Outcome("dead_letter")

    def _region_of(self, spec: RegionSpec, skymap: bytes | None = None) -> Region | None:
        """Build a region (CPU-heavy: done before a transaction opens).

        None when the spec is a map URL only and *skymap* (fetched bytes) is None.
        """
        table = region_table(spec, max_bytes=self.max_skymap_bytes, skymap=skymap)
        return None if table is None else build_region(table)

    def _notice(self, handler: Handler, notice: Notice, raw: bytes, origin: str,
                now: datetime) -> Outcome:
        # Every daemon reads every notice; another one sharing the database may have
        # stored it first, with its region or retraction: take those into the index
        # from the database, without decoding the map again.
        with self.engine.connect() as conn:
            if store.notice_stored(conn, raw):
                return self._duplicate(conn, notice, origin)
        spec = None if notice.retraction else notice.region
        region = None if spec is None else self._region_of(spec)
        with self.engine.begin() as conn:
            stored = store.add_notice(conn, notice, raw, handler=handler.NAME, origin=origin)
            if not stored.is_new:  # stored meanwhile
                return self._duplicate(conn, notice, origin)
            if notice.retraction:
                ledger = self.correlator.ledger()
                self.correlator.retract(conn, ledger, stored.event_pk)
                touched = self._finish(conn, ledger, {stored.event_pk})
                log.warning("event %s: retracted by %s; %d candidates withdrawn",
                            notice.event_id, origin, len(touched))
                return Outcome("notice", touched)
            if stored.inert:
                log.warning("event %s: %s %s from %s came after its retraction: stored, "
                            "flagged after_retraction, no region activated", notice.event_id,
                            notice.instrument, notice.notice_type, origin)
                if region is not None and spec is not None:
                    self._store_region(conn, stored, region, spec.kind, origin, now,
                                       retracted=True)
                return Outcome("notice")
            touched = set()
            if region is not None and spec is not None:
                touched = self._store_region(conn, stored, region, spec.kind, origin, now)
        if spec is not None and spec.skymap_url and spec.skymap is None:
            touched |= self._upgrade(stored, notice, spec, now)
        return Outcome("notice", touched)

    def _duplicate(self, conn: Connection, notice: Notice, origin: str) -> Outcome:
        self.correlator.sync_active(conn)
        log.info("%s: notice for %s already stored", origin, notice.event_id)
        return Outcome("duplicate")

    def _store_region(self, conn: Connection, stored: store.StoredNotice, region: Region,
                      kind: str, origin: str, now: datetime,
                      retracted: bool = False) -> set[str]:
        """Store *region* in notice order; if it is the newest (and the event not
        retracted), match it against the stored objects. Returns the candidates
        published."""
        event = store.load_event(conn, stored.event_pk)
        start, end = self.config.window_days(event.event_class)
        t0 = event.event_time
        if event.messenger != "gw":
            # Distance layers mean something only for a GW map (a GUANO or IceCube
            # product may be an LVK map with distance): never score others on them.
            region = region.without_distance()
        placed = region_store.add_region(
            conn, event_pk=stored.event_pk, notice_pk=stored.notice_pk, kind=kind,
            tiles=region_store.Tiles(region.lo, region.hi, region.probdensity, region.distmu,
                                     region.distsigma, region.distnorm,
                                     region.credible_level),
            window=(t0 + timedelta(days=start), t0 + timedelta(days=end)),
            area50_deg2=region.area_deg2(0.5), area90_deg2=region.area_deg2(0.9),
            retracted=retracted)
        ledger = self.correlator.ledger()
        if placed.active:
            active = self.correlator.activate(placed.region_pk, placed.version, event, region)
            self.correlator.on_region(conn, ledger, active, now)
        else:  # an older notice: kept for audit; the active region may have been renumbered
            self.correlator.sync_active(conn)
        touched = self._finish(conn, ledger, {stored.event_pk})
        log.info("event %s: region v%d (%s%s) from %s, %d tiles, A90 %.1f deg2, %d "
                 "candidates published", event.event_id, placed.version, kind,
                 "" if placed.active else ", older than the active one: superseded", origin,
                 region.n_tiles, region.area_deg2(0.9), len(touched))
        return touched

    def _finish(self, conn: Connection, ledger: Ledger, event_pks: set[int]) -> set[str]:
        """Rank, keep the revision history, and queue what was published."""
        versions = {a.region_pk: a.version for a in self.correlator.active.values()}
        rerank(conn, ledger, event_pks, versions)
        ledger.flush(conn)
        outbox.enqueue(conn, self.channels, ledger.published, utcnow())
        return set(ledger.published)

    def _upgrade(self, stored: store.StoredNotice, notice: Notice, spec: RegionSpec,
                 now: datetime) -> set[str]:
        """Fetch the map a notice gives by URL and make it the event's region.

        The shape stored with the notice (if any) stays in force when the
        download fails; a map that downloads but does not decode is kept as a
        dead letter.
        """
        url = spec.skymap_url
        assert url is not None
        if self.fetch is None:
            log.info("event %s: skymap %s not fetched (fetching is off)", notice.event_id, url)
            return set()
        try:
            data = self.fetch(url)
        except (TransientError, BadMessage) as exc:
            log.warning("event %s: skymap %s not fetched, keeping the notice's own region: "
                        "%s", notice.event_id, url, exc)
            return set()
        try:
            region = self._region_of(spec, skymap=data)
        except BadMessage as exc:
            self.dead_letter("skymap_fetch", url, exc, data)
            return set()
        with self.engine.begin() as conn:
            if store.lock_event(conn, stored.event_pk) == "retracted":
                return set()  # a retraction overtook the download
            assert region is not None
            return self._store_region(conn, stored, region, "skymap", url, now)

    def _alerts(self, batch: Sequence[Alert], now: Sequence[datetime]) -> list[Outcome]:
        """Store and match alerts in one transaction (:meth:`process_alerts`)."""
        ipix = hpx29(np.array([a.ra_deg for a in batch], dtype=float),
                     np.array([a.dec_deg for a in batch], dtype=float)).tolist()
        vetoes = [self._vet(alert) for alert in batch]
        outcomes = [Outcome("duplicate") for _ in batch]
        clock = max(now)
        with self.engine.begin() as conn:
            stored = store.add_alerts(conn, batch, hpx29=ipix, vetoes=vetoes)
            # Another daemon may have stored, superseded or retracted a region since this
            # index was built: match against what the database holds now.
            self.correlator.sync_active(conn)
            ledger = self.correlator.ledger()
            events: set[int] = set()
            withdrawn: dict[int, set[str]] = {}
            fresh = [i for i, result in enumerate(stored) if result is not None]
            for i, alert in enumerate(batch):
                if stored[i] is None and "withdrawn" in vetoes[i]:
                    # Rubin re-sends a source it withdrew: its object is judged again.
                    by_event = self.correlator.withdraw_alert(
                        conn, ledger, alert.survey, alert.alert_id, vetoes[i], clock)
                    events |= set(by_event)
                    withdrawn[i] = set(by_event.values())
                    outcomes[i] = Outcome("alert")
            for i in fresh:
                self.correlator.rates.note_alert(batch[i].survey)
                outcomes[i] = Outcome("alert")
            objects = [result.object_pk for result in stored if result is not None]
            matched, matched_events = self.correlator.on_alerts(
                conn, ledger, [ipix[i] for i in fresh], [batch[i].time for i in fresh],
                objects, clock)
            touched = self._finish(conn, ledger, events | matched_events)
            for i, object_pk in zip(fresh, objects, strict=True):
                outcomes[i].touched |= matched.get(object_pk, set()) & touched
            for i, withdrawn_ids in withdrawn.items():
                outcomes[i].touched |= withdrawn_ids & touched
        return outcomes

    def _vet(self, alert: Alert) -> list[str]:
        vetter = self.vetters.get(alert.survey)
        return vetter[0](alert.quality, vetter[1]) if vetter else []


def utcnow() -> datetime:
    """The wall clock, timezone-aware UTC."""
    return datetime.now(UTC)
