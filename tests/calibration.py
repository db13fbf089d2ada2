"""Machinery of the calibration tests: surveys as counters, candidates, best-match P_chance.

A region's *best match* is the candidate a user would look at first: a new
object (none before t0) before any ``pre_existing`` one, then the smallest
P_chance, exactly as :class:`mma.match.scorer.Scorer` ranks and scores them.
Under the null hypothesis (the survey's objects are unrelated to the region)
its P_chance must be uniform. A region with no candidate contributes a value
drawn uniformly from the gap its chance of having none leaves, [P_max, 1]
(the randomised probability integral transform of the discrete remainder).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from mma.db.background import Cells
from mma.match.background import (
    LocalBackground,
    Prior,
    SkyBackground,
    build_background,
    cells_of,
    local_background,
    night_of,
)
from mma.match.scorer import chance_of
from mma.skymaps.region import Region, hpx29

SURVEY = "ZTF"
PRIOR_MARGIN_S = 60.0  # mma.match.candidate.PRIOR_MARGIN


@dataclass(frozen=True)
class Detections:
    """Vetted detections, one row each: object, position [deg ICRS], time [Unix s]."""

    object_id: np.ndarray
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    unix: np.ndarray
    new: np.ndarray  # the object's first detection ever
    known_before: np.ndarray  # per row: its object was seen before the data begin

    def select(self, keep: np.ndarray) -> Detections:
        """The rows *keep* selects."""
        return Detections(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))


def counters(d: Detections) -> Cells:
    """The background counters of *d*, as the alert path would add them."""
    order = np.lexsort((d.unix, d.object_id))
    night = night_of(SURVEY, d.unix)
    first = np.ones(len(order), dtype=bool)
    same = (d.object_id[order][1:] == d.object_id[order][:-1]) & (
        night[order][1:] == night[order][:-1])
    first[1:] = ~same
    tonight = np.empty(len(order), dtype=bool)
    tonight[order] = first
    return cells_of(SURVEY, d.unix, hpx29(d.ra_deg, d.dec_deg), np.ones(len(d.unix), bool),
                    d.new, tonight)


class NightlyBackgrounds:
    """The backgrounds a live daemon would hold over a survey, one per night.

    At any time during night *n* the counters hold the nights before it (and
    tonight's so far, which the model treats as still to come).
    """

    def __init__(self, d: Detections | Cells, prior: Prior) -> None:
        self.cells = d if isinstance(d, Cells) else counters(d)
        self.prior = prior
        self._models: dict[int, SkyBackground] = {}

    def at(self, when: datetime) -> SkyBackground:
        """The background at *when*."""
        night = int(night_of(SURVEY, when.timestamp()))
        if night not in self._models:
            self._models[night] = build_background(
                SURVEY, self.cells.select(self.cells.night < night), when, self.prior)
        return self._models[night]


@dataclass(frozen=True)
class Trial:
    """One region at one t0 against one survey."""

    region: Region
    t0: datetime
    window: tuple[float, float]
    max_cl: float

    @property
    def start(self) -> datetime:
        return self.t0 + timedelta(days=self.window[0])

    @property
    def end(self) -> datetime:
        return self.t0 + timedelta(days=self.window[1])


@dataclass(frozen=True)
class Candidates:
    """Per candidate object of a trial: its tile, first time in the window, new or not."""

    tile: np.ndarray
    first_unix: np.ndarray
    new: np.ndarray
    object_id: np.ndarray

    def take(self, keep: np.ndarray) -> Candidates:
        """The candidates *keep* selects."""
        return Candidates(self.tile[keep], self.first_unix[keep], self.new[keep],
                          self.object_id[keep])


def candidates(trial: Trial, d: Detections) -> Candidates:
    """The objects with a detection in the window inside the region (CL <= max)."""
    t0, t1 = trial.start.timestamp(), trial.end.timestamp()
    inside = (d.unix >= t0) & (d.unix <= t1)
    tiles = trial.region.lookup(hpx29(d.ra_deg[inside], d.dec_deg[inside]))
    ok = tiles >= 0
    ok[ok] = trial.region.credible_level[tiles[ok]] <= trial.max_cl
    objects, first = np.unique(d.object_id[inside][ok], return_index=True)
    before = trial.t0.timestamp() - PRIOR_MARGIN_S
    earlier = np.unique(d.object_id[(d.unix < before)])
    known = np.unique(d.object_id[d.known_before])
    new = ~np.isin(objects, earlier) & ~np.isin(objects, known)
    times = d.unix[inside][ok]
    firsts = np.array([times[d.object_id[inside][ok] == o].min() for o in objects])
    return Candidates(tiles[ok][first], firsts.reshape(-1), new, objects)


def p_values(trial: Trial, cands: Candidates, background: SkyBackground) -> np.ndarray:
    """P_chance of each candidate, by the scorer's own rule (:func:`chance_of`)."""
    cache: dict[tuple[str, datetime, bool], LocalBackground] = {}

    def local(kind: str, start: datetime, new_field: bool) -> LocalBackground:
        key = (kind, start, new_field)
        if key not in cache:
            cache[key] = local_background(trial.region, background, kind, start, trial.end,
                                          new_field=new_field)
        return cache[key]

    n = [chance_of(local, tile=int(tile), credible_level=trial.region.credible_level,
                   max_cl=trial.max_cl, t0=trial.t0, start=trial.start, ranks_new_first=True,
                   seen_before=not new).n_background
         for tile, new in zip(cands.tile, cands.new, strict=True)]
    return -np.expm1(-np.array(n, dtype=float))


def locals_of(trial: Trial, background: SkyBackground) -> tuple[LocalBackground,
                                                                 LocalBackground]:
    """The new-object and all-object backgrounds of a GW-class trial."""
    after_t0 = max(trial.t0, trial.start)
    return (local_background(trial.region, background, "new", after_t0, trial.end),
            local_background(trial.region, background, "all", trial.start, trial.end))


def best_match(trial: Trial, cands: Candidates, background: SkyBackground,
               rng: np.random.Generator) -> float:
    """The best match's P_chance, or the randomised value of an empty region."""
    if len(cands.tile):
        p = p_values(trial, cands, background)
        return float(p[np.lexsort((p, ~cands.new))[0]])
    new_bg, all_bg = locals_of(trial, background)
    p_max = -math.expm1(-(new_bg.total(trial.region.credible_level, trial.max_cl)
                          + all_bg.total(trial.region.credible_level, trial.max_cl)))
    return float(rng.uniform(p_max, 1.0))


def utc(unix: float) -> datetime:
    """A Unix time as a timezone-aware UTC datetime."""
    return datetime.fromtimestamp(unix, UTC)
