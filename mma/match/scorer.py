"""The score of an object at one tile of an event's region (:mod:`mma.match.scoring`).

Holds what scoring caches between calls: the survey backgrounds
(:class:`~mma.match.rates.BackgroundRates`), each region's tile declinations and
its background CDF per background version.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from sqlalchemy import Connection

from mma.config import Config
from mma.match.active import ActiveRegion
from mma.match.candidate import Summary
from mma.match.rates import Background, BackgroundRates, background_cdf, tile_dec
from mma.match.scoring import Score, ln_b_distance, score_match


class Scorer:
    """Scores candidates; caches per region and background version."""

    def __init__(self, config: Config) -> None:
        self.min_covered_days = float(config.section("scoring")["rate_min_span_days"])
        self.rates = BackgroundRates(config)
        self._tile_dec: dict[int, np.ndarray] = {}  # tile-centre Dec [deg] by region_pk
        self._bg_cache: dict[tuple[int, str, int], np.ndarray] = {}

    def score(self, conn: Connection, active: ActiveRegion, survey: str, summary: Summary,
              tile: int, now: datetime, live: set[int]) -> Score:
        """Score *summary* at *tile* of *active* (*live*: the active region keys)."""
        region = active.region
        dt_days = (summary.reference_time - active.event.event_time).total_seconds() / 86400.0
        ln_b_d = 0.0
        distance = summary.distance_mpc
        if (distance and active.distance_ok is not None and active.distance_ok[tile]
                and active.distance_reach_mpc):
            pdf = float(region.distance_pdf(tile, float(distance)))
            ln_b_d = ln_b_distance(pdf, float(distance), active.distance_reach_mpc)
        background = self.rates.background(conn, survey, now)
        covered = background.covered_days(active.start, active.end, self.min_covered_days)
        return score_match(
            prob_density_sr=float(region.probdensity[tile]),
            credible_level=float(region.credible_level[tile]),
            searched_area_deg2=float(region.searched_area_deg2[tile]),
            dt_days=dt_days, window=active.window_days,
            rate_per_day=background.rate_per_day,
            background_fraction=float(self._background_cdf(active, background, live)[tile]),
            covered_days=covered, ln_b_d=ln_b_d,
        )

    def _background_cdf(self, active: ActiveRegion, background: Background,
                        live: set[int]) -> np.ndarray:
        """Per tile: the background fraction in the tiles at least as dense as it.

        Ordered like the searched area (crossmatch's density order), weighted by
        where the survey observes; cached per region and background version.
        """
        key = (active.region_pk, background.survey, background.version)
        cached = self._bg_cache.get(key)
        if cached is not None:
            return cached
        dec = self._tile_dec.get(active.region_pk)
        if dec is None:
            dec = tile_dec(active.region)
            self._tile_dec = {k: v for k, v in self._tile_dec.items() if k in live}
            self._tile_dec[active.region_pk] = dec
        cdf = background_cdf(active.region, dec, background)
        # Keep only current versions for regions still active.
        self._bg_cache = {k: v for k, v in self._bg_cache.items()
                          if k[0] in live and k[:2] != key[:2]}
        self._bg_cache[key] = cdf
        return cdf
