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
from mma.db import store
from mma.db.background import add_cells
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
    """Vetting rules per survey (ZTF and Rubin); other surveys are not vetted."""

    def __init__(self, config: Config) -> None:
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
    """Store and match alerts in one transaction; an outcome per alert."""
    ipix = hpx29(np.array([a.ra_deg for a in batch], dtype=float),
                 np.array([a.dec_deg for a in batch], dtype=float)).tolist()
    vetoes = [vet(alert) for alert in batch]
    outcomes = [Outcome("duplicate") for _ in batch]
    clock = max(now)
    with stage.engine.begin() as conn:
        stored = store.add_alerts(conn, batch, hpx29=ipix, vetoes=vetoes)
        # Another daemon may have stored, superseded or retracted a region since this
        # index was built: match against what the database holds now.
        stage.correlator.sync_active(conn)
        ledger = stage.correlator.ledger()
        events: set[int] = set()
        withdrawn: dict[int, set[str]] = {}
        fresh = [i for i, result in enumerate(stored) if result is not None]
        for i, alert in enumerate(batch):
            if stored[i] is None and "withdrawn" in vetoes[i]:
                # Rubin re-sends a source it withdrew: its object is judged again.
                by_event = stage.correlator.withdraw_alert(
                    conn, ledger, alert.survey, alert.alert_id, vetoes[i], clock)
                events |= set(by_event)
                withdrawn[i] = set(by_event.values())
                outcomes[i] = Outcome("alert")
        count_background(conn, batch, fresh, stored, ipix, vetoes)
        for i in fresh:
            outcomes[i] = Outcome("alert")
        objects = [result.object_pk for result in stored if result is not None]
        matched, matched_events = stage.correlator.on_alerts(
            conn, ledger, [ipix[i] for i in fresh], [batch[i].time for i in fresh],
            objects, clock)
        touched = stage.finish(conn, ledger, events | matched_events)
        for i, object_pk in zip(fresh, objects, strict=True):
            outcomes[i].touched |= matched.get(object_pk, set()) & touched
        for i, withdrawn_ids in withdrawn.items():
            outcomes[i].touched |= withdrawn_ids & touched
    return outcomes



def count_background(conn: Connection, batch: Sequence[Alert], fresh: list[int],
                     stored: Sequence[store.StoredAlert | None], ipix: Sequence[int],
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
