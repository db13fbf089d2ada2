"""The score of an object at one tile of an event's region (:mod:`mma.match.scoring`).

:class:`Backgrounds` keeps each survey's :class:`~mma.match.background.SkyBackground`,
re-measured from the database's counters as the stream moves on;
:class:`Scorer` caches each region's local backgrounds per background version.

Which objects a candidate is compared with (docs/statistic.md): for GW, GRB
and X-ray events an object not seen before t0 is compared with the *new*
objects of the part of the window after t0; an object seen before
(``pre_existing``) ranks below every new one, so its chance is that of any new
object in the searched region plus that of any object at least as probable.
For neutrinos, where a flare may start before t0, every object is compared
with *all* objects of the whole window.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
from sqlalchemy import Connection

from mma.config import Config
from mma.db.background import load_cells
from mma.errors import ConfigError
from mma.match import priors
from mma.match.active import ActiveRegion
from mma.match.background import (
    LocalBackground,
    Prior,
    SkyBackground,
    build_background,
    local_background,
    night_of,
)
from mma.match.candidate import Summary, is_pre_existing
from mma.match.distance import DistanceSettings, host_association_probability, ln_b_distance
from mma.match.scoring import Score, score_match
from mma.models import EVENT_CLASSES, PRE_EXISTING_CLASSES

log = logging.getLogger(__name__)

# Re-measure after this much stream time, or when a night begins: the model rests on
# the nights before (tonight is predicted), so the alerts of one batch change it little,
# and a measurement reads the whole rolling span's counters.
REFRESH_AFTER = timedelta(hours=1)


@dataclass
class Backgrounds:
    """Per survey, the background last measured, re-measured as the stream moves on."""

    config: Config
    _cache: dict[str, tuple[datetime, SkyBackground]] = field(default_factory=dict)
    _version: int = 0

    def surveys(self) -> list[str]:
        """Surveys measured so far."""
        return sorted(self._cache)

    def span_days(self) -> float:
        """Days of counters read: the configured span, else the longest window in force."""
        span = float(self.config.section("background")["span_days"])
        if span > 0:
            return span
        return max(hi - lo for lo, hi in map(self.config.window_days, EVENT_CLASSES))

    def prior(self, survey: str) -> Prior:
        """The survey's prior rates and trust thresholds (``[background]``)."""
        section = self.config.section("background")

        def rate(key: str) -> float:
            return float(section.get(f"{key}.{survey}", section[key]))

        return Prior(rate("prior_new_per_sr_day"), rate("prior_all_per_sr_day"),
                     float(self.config.section("scoring")
                           ["background_rate_floor_per_sr_per_day"]),
                     int(section["min_nights"]), int(section["min_field_nights"]))

    def get(self, conn: Connection, survey: str, at: datetime, *,
            force: bool = False) -> SkyBackground:
        """The background of *survey* at stream time *at*."""
        cached = self._cache.get(survey)
        last = int(night_of(survey, at.timestamp()))
        if (not force and cached is not None and abs(at - cached[0]) < REFRESH_AFTER
                and cached[1].at_night == last):
            return cached[1]
        cells = load_cells(conn, survey, last - math.ceil(self.span_days()), last)
        self._version += 1
        model = build_background(survey, cells, at, self.prior(survey), self._version)
        self._cache[survey] = (at, model)
        log.debug("background of %s at %s: %d nights, %d alerts%s", survey, at.isoformat(),
                  len(model.nights), model.n_alerts, "" if model.measured else " (prior)")
        return model


class Scorer:
    """Scores candidates; caches local backgrounds per region and background version."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.max_cl = float(config.section("scoring")["max_credible_level"])
        self.backgrounds = Backgrounds(config)
        self.distance = DistanceSettings.from_section(config.section("distance"))
        problems = priors.check_priors(config) + check_rates(config)
        if problems:
            raise ConfigError("; ".join(problems))
        self._local: dict[tuple[int, str, int, str, datetime, datetime, bool],
                          LocalBackground] = {}

    def score(self, conn: Connection, active: ActiveRegion, survey: str, summary: Summary,
              tile: int, now: datetime, live: set[int]) -> Score:
        """Score *summary* at *tile* of *active* (*live*: the active region keys)."""
        region, event = active.region, active.event
        t0 = event.event_time
        background = self.backgrounds.get(conn, survey, now)
        n_bg, err, local = self._chance(active, background, summary, tile, live)
        dt_days = (summary.reference_time - t0).total_seconds() / 86400.0
        p_real, _source = priors.p_astro(event, self.config)
        ln_prior = (math.log(p_real)
                    + priors.ln_prior_history(event.event_class,
                                              is_pre_existing(event.event_class, summary),
                                              self.config)
                    + priors.ln_class_prior(event, self.config))
        return score_match(
            prob_density_sr=float(region.probdensity[tile]),
            credible_level=float(region.credible_level[tile]),
            searched_area_deg2=float(region.searched_area_deg2[tile]),
            dt_days=dt_days, window=active.window_days, n_background=n_bg, n_background_err=err,
            background_density_sr=float(local.density_sr[tile]),
            background_sky_total=local.sky_total,
            background_unmeasured=not bool(local.measured[tile]),
            ln_b_t=priors.ln_b_time(event.event_class, dt_days, active.window_days, self.config),
            ln_b_d=self._ln_b_distance(active, summary, tile), ln_prior=ln_prior,
            p_astro=p_real,
        )

    def _ln_b_distance(self, active: ActiveRegion, summary: Summary, tile: int) -> float:
        """The distance term: 0 without a host distance or informative distance layers."""
        distance = summary.distance_mpc
        if not (distance and active.distance_ok is not None and active.distance_ok[tile]
                and active.distance_reach_mpc):
            return 0.0
        pdf = float(active.region.distance_pdf(tile, float(distance)))
        # No broker gives a host offset mma reads yet: the catalogue match's own probability.
        p_host = host_association_probability(None, distance, settings=self.distance)
        return ln_b_distance(pdf, distance, active.distance_reach_mpc, p_host)

    def _chance(self, active: ActiveRegion, background: SkyBackground, summary: Summary,
                tile: int, live: set[int]) -> Chance:
        """Which background, N_bg(>= rho) and its error (:func:`chance_of`)."""
        def local(kind: str, start: datetime, new_field: bool) -> LocalBackground:
            return self._local_of(active, background, kind, start, live, new_field)

        event = active.event
        return chance_of(local, tile=tile, credible_level=active.region.credible_level,
                         max_cl=self.max_cl, t0=event.event_time, start=active.start,
                         ranks_new_first=event.event_class in PRE_EXISTING_CLASSES,
                         seen_before=bool(summary.n_prior))

    def _local_of(self, active: ActiveRegion, background: SkyBackground, kind: str,
                  start: datetime, live: set[int], new_field: bool) -> LocalBackground:
        key = (active.region_pk, background.survey, background.version, kind, start,
               active.end, new_field)
        cached = self._local.get(key)
        if cached is None:
            cached = local_background(active.region, background, kind, start, active.end,
                                      new_field=new_field)
            # Keep only current versions for regions still active.
            self._local = {k: v for k, v in self._local.items()
                           if k[0] in live and (k[1] != key[1] or k[2] == key[2])}
            self._local[key] = cached
        return cached


RATE_KEYS = ("prior_new_per_sr_day", "prior_all_per_sr_day")


def check_rates(config: Config) -> list[str]:
    """Problems of the background's rates, one sentence each; empty when usable.

    Each prior rate (``[background]``, per-survey overrides included) and the
    floor (``[scoring] background_rate_floor_per_sr_per_day``) must be a finite
    number >= 0 [objects sr^-1 day^-1]: TOML accepts ``inf`` and ``nan``, which
    would make N_bg, and with it P_chance and the record, not a number.
    """
    background = config.section("background")
    keys = [("background", k) for k in background if k.split(".", 1)[0] in RATE_KEYS]
    keys.append(("scoring", "background_rate_floor_per_sr_per_day"))
    problems = []
    for section, key in keys:
        value = config.section(section).get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not (math.isfinite(value) and value >= 0.0):
            problems.append(f"[{section}] {key} must be a finite rate >= 0 "
                            f"[per sr per day], not {value!r}")
    return problems


def _poisson_error(n_bg: float, local: LocalBackground, tile: int) -> float:
    """The Poisson error of *n_bg* from the counts its rates rest on."""
    return n_bg / math.sqrt(float(local.counts_at_least[tile]) + 1.0)


class Chance(NamedTuple):
    """The unrelated objects expected at least as good as a candidate."""

    n_background: float
    n_background_err: float
    local: LocalBackground  # the background its B_sky and flags use


def chance_of(local: Callable[[str, datetime, bool], LocalBackground], *, tile: int,
              credible_level: np.ndarray, max_cl: float, t0: datetime, start: datetime,
              ranks_new_first: bool, seen_before: bool) -> Chance:
    """N_bg(>= rho) of a candidate at *tile* (see the module docstring).

    Parameters
    ----------
    local
        ``local(kind, window_start, new_field)``: the region's background of
        *kind* from *window_start* to the window's end.
    ranks_new_first
        The event's class ranks new objects before those seen before t0 (GW,
        GRB, X-ray).
    seen_before
        The candidate has detections before t0 (``pre_existing``).
    """
    # A candidate where the model expects no look: the survey is looking somewhere new.
    new_field = not bool(local("all", start, False).looked[tile])
    if not ranks_new_first:
        every = local("all", start, new_field)
        n_bg = float(every.n_at_least[tile])
        return Chance(n_bg, _poisson_error(n_bg, every, tile), every)
    new = local("new", max(t0, start), new_field)
    if not seen_before:
        n_bg = float(new.n_at_least[tile])
        return Chance(n_bg, _poisson_error(n_bg, new, tile), new)
    # Ranked below every new object: any new one in the region, or any at least as probable.
    every = local("all", start, new_field)
    n_bg = new.total(credible_level, max_cl) + float(every.n_at_least[tile])
    return Chance(n_bg, _poisson_error(n_bg, every, tile), every)
