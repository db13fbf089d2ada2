"""The alert path: a batch of alerts stored with their objects, matched, in one transaction.

Each stored alert is matched against the active regions; every object it
makes a candidate of an event is judged on all its detections in the window
(:mod:`mma.match.correlator`). A source the survey withdraws is vetoed and its
object judged again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection

from mma.config import Config
from mma.db import alert_store, candidates, locks
from mma.db.background import add_cells
from mma.db.bulk import add_cutouts
from mma.ingest.stage import Outcome, Stage
from mma.match.background import cells_of, night_of
from mma.match.scoring import vet_rubin, vet_ztf
from mma.models import Alert
from mma.skymaps.region import hpx29

log = logging.getLogger(__name__)

# An object whose first detection is this close before an alert is new at that alert
# (the packet's own first-detection time is the alert's, to rounding).
NEW_MARGIN = timedelta(seconds=60)


class Vetters:
    """Vetting rules per survey (ZTF and Rubin); other surveys are not vetted.

    Also holds what else is decided per alert before storing: the cap on a stored
    cutout [bytes] (``limits.max_cutout_bytes``; only alerts that pass keep theirs).
    """

    def __init__(self, config: Config) -> None:
        self.max_cutout_bytes = int(config.section("limits")["max_cutout_bytes"])
        self.rules: dict[str, tuple[Callable[..., list[str]], Mapping[str, Any]]] = {
            "ZTF": (vet_ztf, config.section("vetting.ztf")),
            "LSST": (vet_rubin, config.section("vetting.rubin")),
        }

    def __call__(self, alert: Alert) -> list[str]:
        """Why *alert* fails vetting; empty when it passes (or its survey has no rules)."""
        vetter = self.rules.get(alert.survey)
        return vetter[0](alert.quality, vetter[1]) if vetter else []


def store_alerts(stage: Stage, vet: Vetters, batch: Sequence[Alert],
                 now: Sequence[datetime]) -> list[Outcome]:
    """Store and match alerts in one transaction; an outcome per alert.

    The transaction holds the regions lock shared and then the lock of every
    event it writes candidates of (:mod:`mma.db.locks`): the alerts are matched
    against the regions active at its commit, and no other writer touches
    those events' candidates meanwhile.
    """
    ipix = hpx29(np.array([a.ra_deg for a in batch], dtype=float),
                 np.array([a.dec_deg for a in batch], dtype=float)).tolist()
    vetoes = [vet(alert) for alert in batch]
    outcomes = [Outcome("duplicate") for _ in batch]
    clock = max(now)
    correlator = stage.correlator
    with stage.engine.begin() as conn:
        locks.share_regions(conn)
        stored = alert_store.add_alerts(conn, batch, hpx29=ipix, vetoes=vetoes)
        # Another daemon may have stored, superseded or retracted a region since this
        # index was built: match against what the database holds now (and until commit).
        correlator.sync_active(conn)
        fresh = [i for i, result in enumerate(stored) if result is not None]
        # Rubin re-sends a source it withdrew: its object is judged again.
        withdrawn = {i: withdraw_alert(conn, alert.survey, alert.alert_id, vetoes[i])
                     for i, alert in enumerate(batch)
                     if stored[i] is None and "withdrawn" in vetoes[i]}
        count_background(conn, batch, fresh, stored, ipix, vetoes)
        objects = [result.object_pk for result in stored if result is not None]
        wanted = correlator.match([ipix[i] for i in fresh], [batch[i].time for i in fresh],
                                  objects)
        events = set(wanted) | {pk for found in withdrawn.values() if found
                                for pk in found[1]}
        locks.lock_events(conn, events)
        ledger = correlator.ledger()
        for i, found in withdrawn.items():
            outcomes[i] = Outcome("alert")
            if found is not None:
                correlator.rejudge(conn, ledger, found[0], found[1], clock)
        matched = correlator.on_alerts(conn, ledger, wanted, clock)
        keep_cutouts(conn, vet, batch, stored, vetoes, matched)
        touched = stage.finish(conn, ledger, events)
        for i, object_pk in zip(fresh, objects, strict=True):
            outcomes[i] = Outcome("alert", matched.get(object_pk, set()) & touched)
        for i, found in withdrawn.items():
            if found is not None:
                outcomes[i].touched |= set(found[1].values()) & touched
    return outcomes


def withdraw_alert(conn: Connection, survey: str, alert_id: str,
                   vetoes: list[str]) -> tuple[int, dict[int, str]] | None:
    """A survey withdrew a source: veto the stored alert.

    Returns its object and the object's live candidates before, by event (to be
    re-judged with :meth:`mma.match.correlator.Correlator.rejudge`); None if the
    alert is not stored.
    """
    found = candidates.object_of_alert(conn, survey, alert_id)
    if found is None:
        return None
    alert_pk, object_pk = found
    candidates.veto_alert(conn, alert_pk, vetoes)
    events = {row.event_pk: row.coincidence_id
              for row in candidates.live_of_object(conn, object_pk)}
    log.warning("%s alert %s withdrawn by the survey: its object's candidates of %d "
                "events to be re-judged", survey, alert_id, len(events))
    return object_pk, events


def keep_cutouts(conn: Connection, vet: Vetters, batch: Sequence[Alert],
                 stored: Sequence[alert_store.StoredAlert | None], vetoes: Sequence[Sequence[str]],
                 matched: Mapping[int, set[str]]) -> None:
    """Store the stamps of the fresh alerts that pass vetting and whose object is a candidate.

    Only those: a human sees the stamps of candidates, and Rubin's (~80 kB of FITS
    an alert) stored for every vetted alert made the alert path 2.4-4.4 times slower
    on SQLite (``benchmarks/alert_path.py``) and would grow the database by ~1 TB a
    night. An object matched later by a new region (back-matching) gets stamps with
    its next alert.
    """
    add_cutouts(conn, [(result.alert_pk, alert) for alert, result, why
                       in zip(batch, stored, vetoes, strict=True)
                       if result is not None and not why and alert.cutouts
                       and result.object_pk in matched], max_bytes=vet.max_cutout_bytes)


def count_background(conn: Connection, batch: Sequence[Alert], fresh: list[int],
                     stored: Sequence[alert_store.StoredAlert | None], ipix: Sequence[int],
                     vetoes: Sequence[Sequence[str]]) -> None:
    """Add the freshly stored alerts to their surveys' background counters.

    In the batch's transaction: a batch redelivered after a crash stores no
    alert again, so it counts nothing twice.
    """
    by_survey: dict[str, list[int]] = {}
    for i in fresh:
        by_survey.setdefault(batch[i].survey, []).append(i)
    for survey, idx in by_survey.items():
        rows = [stored[i] for i in idx]
        times = np.array([batch[i].time.timestamp() for i in idx])
        last = np.array([np.nan if r is None or r.object_last is None
                         else r.object_last.timestamp() for r in rows])
        new = np.array([r is not None and r.object_first >= batch[i].time - NEW_MARGIN
                        for i, r in zip(idx, rows, strict=True)])
        # NaN (no earlier alert) never equals a night: the object's first of the night.
        tonight = np.isnan(last) | (night_of(survey, np.nan_to_num(last)) != night_of(
            survey, times))
        add_cells(conn, survey, cells_of(survey, times, np.array([ipix[i] for i in idx]),
                                         np.array([not vetoes[i] for i in idx]), new, tonight))
