"""Background of unrelated optical sources, measured from the stream itself.

For each survey, over a rolling window (30 days), the model holds:

* ``rate_per_day``: distinct objects with an alert passing vetting per day
  over the whole sky (their number over the span of their alerts, the span
  raised to ``scoring.rate_min_span_days``), never below the configured floor
  ``scoring.background_rate_floor_per_sr_per_day`` x 4 pi;
* ``band_density_sr``: where on the sky those objects are, as a density [sr^-1]
  in 36 bands of equal solid angle in sin(Dec), estimated from their
  declinations with half a pseudo-object per band (no band is ever empty). A
  survey sees only part of the sky (ZTF: Dec > -30 deg); treating its
  background as uniform over 4 pi sr would understate it where it observes.
* ``start``, ``end``: the stream time the alerts cover.

The expected number of unrelated sources in the part of a region at least as
probable as a candidate's tile is then
``N_bg = rate_per_day * T_eff * sum(area_tile * band_density(dec_tile))``, with
``T_eff`` the overlap of the event's window with the covered time: the full
window once the stream has run through it, less while it is still open or when
a replay holds only part of it (a single night).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import healpy
import numpy as np
from sqlalchemy import Connection

from mma.config import Config
from mma.db.candidates import vetted_objects
from mma.skymaps.region import Region

log = logging.getLogger(__name__)

ROLLING_WINDOW = timedelta(days=30)
N_DEC_BANDS = 36
BAND_SR = 4.0 * math.pi / N_DEC_BANDS
PSEUDO_COUNT = 0.5
# Re-measure after this much stream time, or once the new alerts exceed both
# REFRESH_AFTER_ALERTS and REFRESH_FRACTION of the objects last measured: the
# measurement scans the rolling window, so at Rubin's rate (a visit of ~10,000
# alerts every ~35 s) a fixed count would re-scan it every few batches while the
# model changes little; the periodic re-score re-measures anyway.
REFRESH_AFTER = timedelta(hours=1)
REFRESH_AFTER_ALERTS = 200
REFRESH_FRACTION = 0.25


@dataclass(frozen=True)
class Background:
    """One survey's background model (see the module docstring)."""

    survey: str
    n_objects: int
    rate_per_day: float
    band_density_sr: np.ndarray
    start: datetime | None
    end: datetime | None
    version: int

    def density_sr(self, dec_deg: np.ndarray) -> np.ndarray:
        """Sky density [sr^-1] of a background object at declinations *dec_deg*."""
        band = np.floor((np.sin(np.radians(dec_deg)) + 1.0) / 2.0 * N_DEC_BANDS)
        return np.asarray(self.band_density_sr[np.clip(band.astype(int), 0, N_DEC_BANDS - 1)])

    def covered_days(self, start: datetime, end: datetime, min_days: float) -> float:
        """Days of [start, end] the stream has covered (at least *min_days*)."""
        if self.start is None or self.end is None:
            return min_days
        lo, hi = max(start, self.start), min(end, self.end)
        return max((hi - lo).total_seconds() / 86400.0, min_days)


def measure_background(conn: Connection, survey: str, at: datetime, *, min_span_days: float,
                       floor_per_sr_per_day: float, version: int = 0) -> Background:
    """The background of *survey* at stream time *at* from the stored alerts."""
    rows = vetted_objects(conn, survey, at - ROLLING_WINDOW, at)
    return background_from_objects(
        survey, np.fromiter((r.dec_deg for r in rows), dtype=float, count=len(rows)),
        min((r.first for r in rows), default=None), max((r.last for r in rows), default=None),
        min_span_days=min_span_days, floor_per_sr_per_day=floor_per_sr_per_day,
        version=version)


def background_from_objects(survey: str, dec_deg: np.ndarray, start: datetime | None,
                            end: datetime | None, *, min_span_days: float,
                            floor_per_sr_per_day: float, version: int = 0) -> Background:
    """The background model of objects at declinations *dec_deg* seen in [start, end]."""
    floor_per_day = floor_per_sr_per_day * 4.0 * math.pi
    if len(dec_deg) == 0 or start is None or end is None:
        uniform = np.full(N_DEC_BANDS, 1.0 / (4.0 * math.pi))
        return Background(survey, 0, floor_per_day, uniform, None, None, version)
    span_days = max((end - start).total_seconds() / 86400.0, min_span_days)
    rate = max(len(dec_deg) / span_days, floor_per_day)
    band = np.clip(np.floor((np.sin(np.radians(dec_deg)) + 1.0) / 2.0 * N_DEC_BANDS)
                   .astype(int), 0, N_DEC_BANDS - 1)
    counts = np.bincount(band, minlength=N_DEC_BANDS) + PSEUDO_COUNT
    density = counts / counts.sum() / BAND_SR
    return Background(survey, len(dec_deg), rate, density, start, end, version)


def tile_dec(region: Region) -> np.ndarray:
    """Declination of each tile's centre [deg, ICRS]."""
    centre = region.lo + (region.hi - region.lo) // 2
    return np.asarray(healpy.pix2ang(2**29, centre, nest=True, lonlat=True)[1])


def background_cdf(region: Region, dec_deg: np.ndarray, background: Background) -> np.ndarray:
    """Per tile: the fraction of background sources expected in the tiles at least as
    dense as it (crossmatch's density order, like the searched area).

    Parameters
    ----------
    region
        The region.
    dec_deg
        :func:`tile_dec` of the region.
    background
        The survey's background model.
    """
    weight = region.area_sr * background.density_sr(dec_deg)
    order = region.density_order
    cdf = np.empty_like(weight)
    cdf[order] = np.cumsum(weight[order])
    return cdf


@dataclass
class BackgroundRates:
    """Cached per-survey background models, re-measured as the stream moves on."""

    config: Config
    _cache: dict[str, tuple[datetime, Background]] = field(default_factory=dict)
    _new_alerts: dict[str, int] = field(default_factory=dict)
    _version: int = 0

    def surveys(self) -> list[str]:
        """Surveys seen so far."""
        return sorted(set(self._cache) | set(self._new_alerts))

    def note_alert(self, survey: str) -> None:
        """Count a newly stored alert towards the next re-measurement."""
        self._new_alerts[survey] = self._new_alerts.get(survey, 0) + 1

    def background(self, conn: Connection, survey: str, at: datetime, *,
                   force: bool = False) -> Background:
        """Background model of *survey* at stream time *at*."""
        cached = self._cache.get(survey)
        fresh = self._new_alerts.get(survey, 0)
        if (not force and cached is not None and abs(at - cached[0]) < REFRESH_AFTER
                and fresh < max(REFRESH_AFTER_ALERTS, REFRESH_FRACTION * cached[1].n_objects)):
            return cached[1]
        scoring = self.config.section("scoring")
        self._version += 1
        model = measure_background(
            conn, survey, at, min_span_days=scoring["rate_min_span_days"],
            floor_per_sr_per_day=scoring["background_rate_floor_per_sr_per_day"],
            version=self._version)
        self._cache[survey] = (at, model)
        self._new_alerts[survey] = 0
        log.debug("background of %s at %s: %d objects, %.4g /day", survey, at.isoformat(),
                  model.n_objects, model.rate_per_day)
        return model
