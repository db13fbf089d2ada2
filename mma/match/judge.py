"""Judging objects against one active region: placed, scored, recorded.

An object is judged on all its detections in the region's window
(:func:`mma.match.candidate.summarise`): its combined position must lie inside the
region's credible-level cut, and it is scored there. Both match directions (a new
region against stored objects, new alerts against the active regions) and every
re-score come through :meth:`Judge.record`, so the result does not depend on which
came first. Rows are written with :mod:`mma.match.revisions` in the caller's
transaction, with the event's lock held (:mod:`mma.db.locks`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

import numpy as np
from sqlalchemy import Connection

from mma.db import candidates as rows
from mma.errors import InvalidValue
from mma.match.active import ActiveRegion
from mma.match.candidate import Summary, coincidence_id, payload_of, summarise
from mma.match.revisions import Ledger, record, retract
from mma.match.scorer import Scorer
from mma.models import StoredObject
from mma.skymaps.region import hpx29

log = logging.getLogger(__name__)


class Judge:
    """Candidates of objects in one region, by the scorer's statistic.

    Parameters
    ----------
    scorer
        The statistic and the survey backgrounds.
    max_cl
        The credible-level cut (``scoring.max_credible_level``): an object whose
        combined position lies in a tile of higher credible level is outside.
    """

    def __init__(self, scorer: Scorer, max_cl: float) -> None:
        self.scorer = scorer
        self.max_cl = max_cl

    def record(self, conn: Connection, ledger: Ledger, active: ActiveRegion,
               object_pks: Iterable[int], now: datetime, reason: str, *,
               live: set[int], skip_bad: bool = False) -> dict[int, str]:
        """Record the candidate of each object inside *active*; by object, their ids.

        Objects judged outside lose their live candidate (flag ``left_region``).
        *live* holds the region_pk of every active region (the scorer's background
        leaves their candidates out). A record refused for a non-finite number
        (:func:`payload_of`) raises, so the alert being processed is dead-lettered
        with the reason; with *skip_bad* (a region or a re-score: the message is the
        notice, or none) it is logged and that candidate left as it was, so one
        object cannot cost an event its notice.
        """
        event = active.event
        objects = rows.objects_until(conn, object_pks, active.end)
        ids = {pk: coincidence_id(event.event_id, obj.survey, obj.object_id)
               for pk, obj in objects.items()}
        stored = rows.lock_many(conn, ids.values())
        inside: dict[int, str] = {}
        for obj, summary, tile in self.placed(active, objects.values()):
            cid, existing = ids[obj.pk], stored.get(ids[obj.pk])
            if tile < 0:
                if existing is not None and existing.status != "retracted":
                    retract(conn, ledger, existing, "left_region", "left_region", active.key)
                continue
            inside[obj.pk] = cid
            score = self.scorer.score(conn, active, obj.survey, summary, tile, now, live)
            try:
                payload = payload_of(cid, event, active.version, obj, summary, score)
            except InvalidValue as exc:
                if not skip_bad:
                    raise
                log.error("event %s: %s: candidate not recorded: %s", event.event_id, reason,
                          exc)
                continue
            record(conn, ledger, existing, cid, payload, score, event_pk=event.pk,
                   object_pk=obj.pk, alert_pk=summary.latest_alert_pk, region=active.key,
                   vetoed=summary.vetoed, reason=reason,
                   event_retracted=event.status == "retracted")
        ledger.insert(conn)
        return inside

    def placed(self, active: ActiveRegion, objects: Iterable[StoredObject]
               ) -> list[tuple[StoredObject, Summary, int]]:
        """Each object with a detection in *active*'s window, by pk: its summary and tile.

        The tile is -1 where the summary's position lies outside the region's
        credible-level cut. The positions are looked up in one call: a back-match
        may judge a hundred thousand objects, and healpy's checks cost ~50 us a call.
        """
        t0 = active.event.event_time
        placed = [(obj, summary) for obj in sorted(objects, key=lambda o: o.pk)
                  if (summary := summarise(obj, t0, active.start, active.end)) is not None]
        if not placed:
            return []
        ra = np.array([s.ra_deg for _, s in placed], dtype=np.float64)
        dec = np.array([s.dec_deg for _, s in placed], dtype=np.float64)
        tiles = active.region.lookup(hpx29(ra, dec))
        cl = active.region.credible_level[np.maximum(tiles, 0)]
        tiles = np.where((tiles >= 0) & (cl <= self.max_cl), tiles, -1)
        return [(obj, summary, tile)
                for (obj, summary), tile in zip(placed, tiles.tolist(), strict=True)]
