"""The alert path: a batch of alerts stored with their objects, matched, in one transaction.

Each stored alert is matched against the active regions; every object it
makes a candidate of an event is judged on all its detections in the window
(:mod:`mma.match.correlator`). A source the survey withdraws is vetoed and its
object judged again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from mma.config import Config
from mma.db import store
from mma.ingest.stage import Outcome, Stage
from mma.match.scoring import vet_rubin, vet_ztf
from mma.models import Alert
from mma.skymaps.region import hpx29

log = logging.getLogger(__name__)


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
        for i in fresh:
            stage.correlator.rates.note_alert(batch[i].survey)
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

