"""Background rate of optical sources, measured from the stream itself.

``R_bg`` [sr^-1 day^-1] is the number of distinct objects with at least one
alert passing vetting in a rolling window, divided by 4 pi sr (unrelated
transients are taken as uniform on the sky, as in ``B_sky``) and by the span
of time those alerts cover [days]. A span shorter than
``scoring.rate_min_span_days`` is raised to it, and the result never goes
below ``scoring.background_rate_floor_per_sr_per_day``, so one early alert
cannot make every later match look significant.

A single night replayed alone covers only the dark hours, so its per-day
rate is higher than a month-long average: P_chance errs on the conservative
(larger) side there.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from mma.config import Config
from mma.db.schema import alerts

log = logging.getLogger(__name__)

ROLLING_WINDOW = timedelta(days=30)
# Re-measure after this much stream time or this many new alerts, whichever first.
REFRESH_AFTER = timedelta(hours=1)
REFRESH_AFTER_ALERTS = 200


def measure_rate(conn: Connection, survey: str, at: datetime, *, min_span_days: float,
                 floor: float) -> float:
    """Measured background rate of *survey* at stream time *at* [sr^-1 day^-1]."""
    start = at - ROLLING_WINDOW
    row = conn.execute(
        select(func.count(func.distinct(alerts.c.object_pk)), func.min(alerts.c.time),
               func.max(alerts.c.time))
        .where(alerts.c.survey == survey, alerts.c.passes_vetting.is_(True),
               alerts.c.time >= start, alerts.c.time <= at)
    ).one()
    n_objects, first, last = row
    if not n_objects:
        return floor
    span_days = max((last - first).total_seconds() / 86400.0 if first and last else 0.0,
                    min_span_days)
    return max(n_objects / (4.0 * math.pi * span_days), floor)


@dataclass
class BackgroundRates:
    """Cached per-survey rates, re-measured as the stream moves on."""

    config: Config
    _cache: dict[str, tuple[datetime, int, float]] = field(default_factory=dict)
    _new_alerts: dict[str, int] = field(default_factory=dict)

    def note_alert(self, survey: str) -> None:
        """Count a newly stored alert towards the next re-measurement."""
        self._new_alerts[survey] = self._new_alerts.get(survey, 0) + 1

    def rate(self, conn: Connection, survey: str, at: datetime) -> float:
        """Background rate of *survey* at stream time *at* [sr^-1 day^-1]."""
        cached = self._cache.get(survey)
        fresh = self._new_alerts.get(survey, 0)
        if (cached is not None and abs(at - cached[0]) < REFRESH_AFTER
                and fresh < REFRESH_AFTER_ALERTS):
            return cached[2]
        scoring = self.config.section("scoring")
        value = measure_rate(conn, survey, at, min_span_days=scoring["rate_min_span_days"],
                             floor=scoring["background_rate_floor_per_sr_per_day"])
        self._cache[survey] = (at, 0, value)
        self._new_alerts[survey] = 0
        log.debug("background rate of %s at %s: %.4g /sr/day", survey, at.isoformat(), value)
        return value
