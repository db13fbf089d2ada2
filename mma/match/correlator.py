"""Matching in both directions: new alerts against the active regions, and a new
region against the objects already stored.

The correlator keeps the active region of each event in memory (rebuilt from
the database by :meth:`Correlator.load_active`) as one level-29 range index.
A match of any detection of an object inside an event's region and window
makes the object a candidate of the event, judged on all its detections in the
window by :class:`mma.match.judge.Judge`. Both directions apply this same rule,
so the result does not depend on whether the alerts or the notice came first.
Rows are written in the caller's transaction; nothing is emitted here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

import numpy as np
from sqlalchemy import Connection

from mma.config import Config
from mma.db import candidates as rows
from mma.db import region_store, store
from mma.db.background import background_surveys
from mma.db.backmatch import objects_in_region
from mma.match.active import ActiveRegion, ActiveRegions
from mma.match.candidate import Thresholds
from mma.match.judge import Judge
from mma.match.revisions import Ledger, retract
from mma.match.scorer import Backgrounds, Scorer
from mma.models import StoredEvent
from mma.skymaps.region import Region

log = logging.getLogger(__name__)


class Correlator:
    """Both match directions over the active regions."""

    def __init__(self, config: Config, thresholds: Thresholds | None = None) -> None:
        self.config = config
        self.thresholds = thresholds or Thresholds.of(config, {})
        self.max_cl = float(config.section("scoring")["max_credible_level"])
        self.regions = ActiveRegions(config, self.max_cl)
        self.scorer = Scorer(config)
        self.judge = Judge(self.scorer, self.max_cl)

    def ledger(self) -> Ledger:
        """A fresh record of one transaction's candidate changes."""
        return Ledger(self.thresholds)

    @property
    def active(self) -> dict[int, ActiveRegion]:
        """The active region of each event, by event_pk."""
        return self.regions.by_event

    @property
    def backgrounds(self) -> Backgrounds:
        """The survey backgrounds (the scorer's)."""
        return self.scorer.backgrounds

    def load_active(self, conn: Connection) -> None:
        """Rebuild the active regions from the database."""
        self.regions.load(conn)

    def sync_active(self, conn: Connection) -> None:
        """Bring the active regions to the database's (see :meth:`ActiveRegions.sync`)."""
        self.regions.sync(conn)

    def activate(self, region_pk: int, version: int, event: StoredEvent,
                 region: Region) -> ActiveRegion:
        """Make *region* the current one of its event."""
        return self.regions.activate(region_pk, version, event, region)

    # -- direction 1: a region against stored objects ---------------------------------------
    def on_region(self, conn: Connection, ledger: Ledger, active: ActiveRegion,
                  now: datetime, reason: str = "region") -> None:
        """Match a new or updated region against every object stored in its window.

        Candidates of the event that the region no longer holds are retracted
        with the flag ``left_region``.
        """
        found = objects_in_region(conn, active.region_pk, active.start, active.end,
                                  self.max_cl)
        kept = set(self._candidates(conn, ledger, active, found, now, reason,
                                    skip_bad=True).values())
        left = [cid for cid in rows.live_ids_of_event(conn, active.event_pk)
                if cid not in kept]
        for row in rows.lock_many(conn, left).values():  # in id order, as locked
            retract(conn, ledger, row, "left_region", "left_region", active.key)
        log.info("event %s: region v%d holds %d objects detected in its window",
                 active.event.event_id, active.version, len(kept))

    # -- direction 2: new alerts against active regions -------------------------------------
    def match(self, ipix: Sequence[int], times: Sequence[datetime],
              object_pks: Sequence[int]) -> dict[int, set[int]]:
        """Which objects each active region holds, from newly stored alerts (one lookup).

        Parameters
        ----------
        ipix, times, object_pks
            Per alert: level-29 index of its position, its time (UTC), its object.

        Returns
        -------
        By event_pk, the objects whose alerts lie in its region and window.
        """
        if not len(ipix) or not self.active:
            return {}
        points, keys, _tiles = self.regions.index.match(np.asarray(ipix, dtype=np.int64))
        wanted: dict[int, set[int]] = {}
        for i, event_pk in zip(points.tolist(), keys.tolist(), strict=True):
            active = self.active[event_pk]
            if active.start <= times[i] <= active.end:
                wanted.setdefault(event_pk, set()).add(object_pks[i])
        return wanted

    def on_alerts(self, conn: Connection, ledger: Ledger, wanted: dict[int, set[int]],
                  now: datetime) -> dict[int, set[str]]:
        """Judge the objects :meth:`match` found; by object, the ids of its candidates.

        Call with the events of *wanted* locked (:func:`mma.db.locks.lock_events`).
        """
        out: dict[int, set[str]] = {}
        for event_pk in sorted(wanted):  # one order in every daemon: rows lock alike
            active = self.active[event_pk]
            for object_pk, cid in self._candidates(conn, ledger, active, wanted[event_pk],
                                                   now, "new_detection").items():
                out.setdefault(object_pk, set()).add(cid)
        return out

    def _candidates(self, conn: Connection, ledger: Ledger, active: ActiveRegion,
                    object_pks: Iterable[int], now: datetime, reason: str, *,
                    skip_bad: bool = False) -> dict[int, str]:
        """Judge each object against *active* (:meth:`Judge.record`); by object, the ids."""
        live = {a.region_pk for a in self.active.values()}
        return self.judge.record(conn, ledger, active, object_pks, now, reason, live=live,
                                 skip_bad=skip_bad)

    def remeasure(self, conn: Connection, now: datetime) -> None:
        """Measure every survey's background again (before a re-score)."""
        for survey in sorted(set(self.backgrounds.surveys())
                             | set(background_surveys(conn))):
            self.backgrounds.get(conn, survey, now, force=True)

    def rescore(self, conn: Connection, ledger: Ledger, event_pk: int, now: datetime) -> None:
        """Re-score one active region's candidates against the latest backgrounds.

        The scheduler's periodic job in the daemon (one event per transaction,
        its lock held); the last step of a replay.
        """
        self.on_region(conn, ledger, self.active[event_pk], now, reason="rescore")

    def rejudge(self, conn: Connection, ledger: Ledger, object_pk: int,
                event_pks: Iterable[int], now: datetime) -> None:
        """Judge an object again against each of *event_pks* still active (a withdrawal).

        A candidate left with no vetted detection is retracted (flags
        ``veto:withdrawn`` and ``source_withdrawn``). Call with the events locked.
        """
        for event_pk in sorted(set(event_pks) & set(self.active)):
            self._candidates(conn, ledger, self.active[event_pk], [object_pk], now,
                             "source_withdrawn")

    def expire(self, conn: Connection, now: datetime) -> list[str]:
        """Close the regions whose time window ended before *now* (status ``expired``).

        Their candidates stay as they are; no new alert can match them.
        Returns the event ids expired.
        """
        done = [a for a in self.active.values() if a.end < now]
        for active in done:
            region_store.expire_region(conn, active.region_pk)
            self.regions.deactivate(active.event_pk)
            log.info("event %s: region v%d expired (window ended %s)",
                     active.event.event_id, active.version, active.end.isoformat())
        return [a.event.event_id for a in done]

    def retract(self, conn: Connection, ledger: Ledger, event_pk: int) -> None:
        """Retract an event: its regions, and every live candidate (flag ``event_retracted``).

        The retraction is sticky: the event keeps status ``retracted``, and later
        notices of it activate no region (:mod:`mma.ingest`).
        """
        active = self.active.get(event_pk)
        store.retract_event(conn, event_pk)
        for row in rows.live_of_event(conn, event_pk):
            retract(conn, ledger, row, "event_retracted", "retraction",
                    active.key if active else (row.region_pk, 0))
        self.regions.deactivate(event_pk)

