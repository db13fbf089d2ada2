"""The local background of unrelated optical sources, measured from the stream.

Per survey, the database keeps counters per night and HEALPix order-5 pixel
(:mod:`mma.db.background`): objects first seen (*new*), objects seen, once a
night (*all*), and alerts of any quality. From the counters over a rolling
span (at least the longest window in force) this module builds a
:class:`SkyBackground`:

* the **exposure**: on which nights each order-3 pixel (~7 deg, a survey
  field) was observed, i.e. held any alert;
* the **local rate** of each order-5 pixel: its objects per observed night,
  shrunk towards its order-3 field's rate, itself shrunk towards the survey's
  mean (:func:`_shrunk_rate`), so that a pixel or field with few counts
  borrows from its field or from the survey;
* the **expected observed nights** of each field in a time window: the nights
  it was observed, for the part of the window the stream has covered, and its
  observed fraction over the last :data:`RECENT_NIGHTS` nights for the rest.

The expected number of unrelated objects of a window at a pixel is then its
local rate times its field's expected observed nights: the survey's
footprint, cadence, season, lost nights and Galactic plane are all in it,
for the **full** window at the first message already.

Where history is short the statistic errs towards quiet (flag
``background_unmeasured``): a survey with fewer than ``min_nights`` nights of
counts is taken at its documented prior rate everywhere; a field observed on
fewer than ``min_field_nights`` nights gets at least the rate of the survey's
densest tenth of fields. A field the model expects no look at is expected to
stay empty, unless a candidate appears in it: the survey is then looking
somewhere new (a field rising with the season), and the candidate is judged
as if every such field were looked at like a typical one, at its own rate or,
never observed, at the prior.
docs/statistic.md writes the statistic out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from mma.db.background import Cells, merge_cells
from mma.skymaps.region import Region

ORDER = 5
NPIX = 12 * 4**ORDER
PIXEL_SR = 4.0 * math.pi / NPIX
FIELD_ORDER = 3  # ~7.3 deg: the size of a ZTF field; exposure is measured per field
CHILDREN = 4 ** (ORDER - FIELD_ORDER)
NFIELD = NPIX // CHILDREN
RECENT_NIGHTS = 28  # the observed fraction that predicts the rest of a window
SHRINK = 1.0  # pseudo-count of the parent's mean in a pixel's rate [parent shares]
FIELD_PSEUDO_NIGHTS = 3.0  # observed nights at the survey's mean in a field's rate
DENSE_QUANTILE = 0.9  # a field with a short history gets at least this quantile's rate
UNIX_MJD = 40587.0  # MJD of 1970-01-01
# Nights run from local noon to local noon at the survey's site (east longitude,
# degrees), so that one night of observing is one index; other surveys: UTC noon.
SITE_LONGITUDE_DEG = {"ZTF": -116.86, "LSST": -70.75}
KINDS = ("new", "all")


def night_of(survey: str, unix_seconds: np.ndarray | float) -> np.ndarray:
    """Night index (integer MJD of the local noon that starts it) of Unix times [s]."""
    shift = SITE_LONGITUDE_DEG.get(survey, 0.0) / 360.0 - 0.5
    mjd = np.asarray(unix_seconds, dtype=float) / 86400.0 + UNIX_MJD
    return np.floor(mjd + shift).astype(np.int64)


def night_start(survey: str, night: np.ndarray | int) -> np.ndarray:
    """Unix time [s] at which night *night* begins (local noon at the site)."""
    shift = SITE_LONGITUDE_DEG.get(survey, 0.0) / 360.0 - 0.5
    return (np.asarray(night, dtype=float) - shift - UNIX_MJD) * 86400.0


def cells_of(survey: str, unix_seconds: np.ndarray, ipix29: np.ndarray, vetted: np.ndarray,
             new: np.ndarray, first_tonight: np.ndarray) -> Cells:
    """Counter increments of a batch of stored alerts of one survey.

    Parameters
    ----------
    unix_seconds, ipix29
        Alert times [Unix s, UTC] and level-29 NESTED indices.
    vetted
        The alert passes vetting.
    new
        The alert is its object's first detection (a vetted one).
    first_tonight
        The alert is its object's first of the night (counts towards *all*).
    """
    night = night_of(survey, unix_seconds)
    pixel = np.asarray(ipix29, dtype=np.int64) >> (2 * (29 - ORDER))
    vetted = np.asarray(vetted, dtype=bool)
    one = np.ones(len(night), dtype=np.int64)
    cells = Cells(night, pixel, (vetted & np.asarray(new, dtype=bool)).astype(np.int64),
                  (vetted & np.asarray(first_tonight, dtype=bool)).astype(np.int64), one)
    return merge_cells([cells])


@dataclass(frozen=True)
class Prior:
    """Rates used where the survey's own are not measured [objects sr^-1 day^-1]."""

    new_per_sr_day: float
    all_per_sr_day: float
    floor_per_sr_day: float
    min_nights: int
    min_field_nights: int

    def per_sr_day(self, kind: str) -> float:
        """The prior rate of *kind* (``new`` or ``all``)."""
        return self.new_per_sr_day if kind == "new" else self.all_per_sr_day


@dataclass(frozen=True)
class SkyBackground:
    """One survey's background at one stream time (see the module docstring).

    Attributes
    ----------
    at_night
        The night of the measurement: it and later nights are predicted.
    nights
        Sorted nights with any counts, and ``observed[i, field]`` whether the
        field held an alert on ``nights[i]``.
    rate
        Per kind, per order-5 pixel: objects per observed night of its field.
    count
        Per kind, per pixel: the raw counts over the span (their Poisson error).
    exposure, recent
        Per field: observed nights over the span, and the observed fraction of
        the last :data:`RECENT_NIGHTS` nights.
    """

    survey: str
    version: int
    at_night: int
    nights: np.ndarray
    observed: np.ndarray
    rate: dict[str, np.ndarray]
    count: dict[str, np.ndarray]
    exposure: np.ndarray
    recent: np.ndarray
    prior: Prior
    n_alerts: int

    @property
    def measured(self) -> bool:
        """The survey has counts on at least ``prior.min_nights`` nights."""
        return len(self.nights) >= self.prior.min_nights

    def field_measured(self) -> np.ndarray:
        """Per order-5 pixel: its own rate stands (else the prior does)."""
        ok = self.exposure >= self.prior.min_field_nights
        return np.repeat(ok & self.measured, CHILDREN)

    def expected_nights(self, start: datetime, end: datetime) -> np.ndarray:
        """Per field: expected observed nights in [start, end] (fractional at the ends)."""
        t0, t1 = start.timestamp(), end.timestamp()
        if t1 <= t0:
            return np.zeros(NFIELD)
        n = np.arange(int(night_of(self.survey, t0)), int(night_of(self.survey, t1)) + 1)
        lo = night_start(self.survey, n)
        weight = (np.minimum(lo + 86400.0, t1) - np.maximum(lo, t0)) / 86400.0
        first = int(self.nights[0]) if len(self.nights) else self.at_night
        past = (n < self.at_night) & (n >= first)
        seen = np.zeros((len(n), NFIELD))
        idx = np.searchsorted(self.nights, n[past])
        hit = (idx < len(self.nights)) & (self.nights[np.minimum(idx, len(self.nights) - 1)]
                                          == n[past])
        rows = np.zeros((past.sum(), NFIELD))
        rows[hit] = self.observed[idx[hit]]
        seen[past] = rows
        seen[~past] = self.recent
        return np.asarray(weight @ seen)

    def expected(self, kind: str, start: datetime, end: datetime, *,
                 new_field: bool = False) -> np.ndarray:
        """Per order-5 pixel: unrelated objects of *kind* expected in [start, end].

        The prior everywhere while the survey is unmeasured. With *new_field*
        (a candidate in a field the model expects no look at), every such field
        is taken as looked at like the survey's typical field, at its own rate
        or, never observed, at the prior. Observed pixels never fall below the
        floor rate.
        """
        days = max((end - start).total_seconds() / 86400.0, 0.0)
        prior = self.prior.per_sr_day(kind) * PIXEL_SR * days
        if not self.measured:
            return np.full(NPIX, max(prior, self.prior.floor_per_sr_day * PIXEL_SR * days))
        field_nights = self.expected_nights(start, end)
        nights = np.repeat(field_nights, CHILDREN)
        out = self.rate[kind] * nights
        out = np.where(nights > 0, np.maximum(out, self.prior.floor_per_sr_day * PIXEL_SR
                                              * days), out)
        if new_field:
            looked = self.recent > 0
            typical = float(self.recent[looked].mean()) if looked.any() else 1.0
            dormant = np.repeat(field_nights == 0, CHILDREN)
            never = np.repeat(self.exposure == 0, CHILDREN)
            out = np.where(dormant, np.where(never, prior, self.rate[kind] * typical * days),
                           out)
        return out


def build_background(survey: str, cells: Cells, at: datetime, prior: Prior,
                     version: int = 0) -> SkyBackground:
    """The background of *survey* from its counters, measured at stream time *at*."""
    at_night = int(night_of(survey, at.timestamp()))
    nights, inverse = np.unique(cells.night, return_inverse=True)
    field = cells.pixel // CHILDREN
    observed = np.zeros((len(nights), NFIELD), dtype=bool)
    observed[inverse.ravel(), field] = cells.n_alerts > 0
    exposure = observed.sum(axis=0)
    short = np.repeat((exposure > 0) & (exposure < prior.min_field_nights), CHILDREN)
    rate, count = {}, {}
    for kind in KINDS:
        n = np.bincount(cells.pixel, weights=getattr(cells, f"n_{kind}"), minlength=NPIX)
        rate[kind] = _shrunk_rate(n, exposure)
        field_rate = rate[kind].reshape(NFIELD, CHILDREN).mean(axis=1)
        trusted = exposure >= prior.min_field_nights
        if trusted.any():  # a short history borrows the densest tenth's rate
            high = float(np.quantile(field_rate[trusted], DENSE_QUANTILE))
            rate[kind] = np.where(short, np.maximum(rate[kind], high), rate[kind])
        count[kind] = n
    return SkyBackground(survey, version, at_night, nights, observed, rate, count, exposure,
                         _recent_fraction(nights, observed, at_night), prior,
                         int(cells.n_alerts.sum()))


def _shrunk_rate(n: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """Per pixel: objects per observed night, shrunk twice (empirical Bayes).

    A field's rate is its count plus :data:`FIELD_PSEUDO_NIGHTS` nights at the
    survey's mean, over its observed nights plus those; a pixel's is its count
    plus :data:`SHRINK` shares of its field's rate. Sums over a field keep its
    estimate, and a field observed on few nights without an object is not
    taken as empty.
    """
    per_field = n.reshape(NFIELD, CHILDREN).sum(axis=1)
    seen = exposure > 0
    mean = float(per_field[seen].sum() / exposure[seen].sum()) if seen.any() else 0.0
    field_rate = (per_field + FIELD_PSEUDO_NIGHTS * mean) / (exposure + FIELD_PSEUDO_NIGHTS)
    share = np.repeat(field_rate * np.maximum(exposure, 1) / CHILDREN, CHILDREN)
    nights = np.repeat(np.maximum(exposure, 1), CHILDREN)
    return np.asarray((n + SHRINK * share) / ((1.0 + SHRINK) * nights))


def _recent_fraction(nights: np.ndarray, observed: np.ndarray, at_night: int) -> np.ndarray:
    """Per field: the observed fraction of the calendar nights before *at_night*.

    Over the last :data:`RECENT_NIGHTS` nights since the first with counts,
    lost nights included (they will be lost in the future too); with no
    earlier night, the nights up to *at_night* itself.
    """
    if not len(nights):
        return np.zeros(NFIELD)
    hi = at_night - 1 if at_night - 1 >= nights[0] else at_night
    lo = max(int(nights[0]), hi - RECENT_NIGHTS + 1)
    keep = (nights >= lo) & (nights <= hi)
    return np.asarray(observed[keep].sum(axis=0) / (hi - lo + 1))


@dataclass(frozen=True)
class LocalBackground:
    """A survey's background of one kind over one region and window.

    Attributes
    ----------
    n_at_least
        Per tile: objects expected in the tiles at least as probable (dense) as
        it, ties included: N_bg(>= rho).
    counts_at_least
        Per tile: the raw counts those expectations rest on (Poisson error).
    density_sr
        Per tile: objects expected per steradian there.
    sky_total
        Objects expected over the whole sky in the window.
    measured
        Per tile: the survey's own rate stands there (not the prior).
    looked
        Per tile: the survey is expected to look there in the window.
    """

    n_at_least: np.ndarray
    counts_at_least: np.ndarray
    density_sr: np.ndarray
    sky_total: float
    measured: np.ndarray
    looked: np.ndarray

    def total(self, credible_level: np.ndarray, max_cl: float) -> float:
        """Objects expected in the tiles within *max_cl* (the searched region)."""
        inside = credible_level <= max_cl
        return float(self.n_at_least[inside].max()) if inside.any() else 0.0


def local_background(region: Region, background: SkyBackground, kind: str, start: datetime,
                     end: datetime, *, new_field: bool = False) -> LocalBackground:
    """The background of *kind* over *region* in the window [start, end].

    *new_field*: for a candidate in a field never observed (see the module docstring).
    """
    expected = background.expected(kind, start, end, new_field=new_field)
    looked = np.repeat(background.expected_nights(start, end) > 0, CHILDREN)
    shift = 2 * (29 - ORDER)
    lo = region.lo >> shift
    hi = ((region.hi - 1) >> shift) + 1

    def per_tile(per_pixel: np.ndarray) -> np.ndarray:
        cum = np.concatenate([[0.0], np.cumsum(per_pixel, dtype=float)])
        return (cum[hi] - cum[lo]) / (hi - lo) / PIXEL_SR * region.area_sr

    in_tile = per_tile(expected)
    return LocalBackground(
        _at_least(region, in_tile), _at_least(region, per_tile(background.count[kind])),
        in_tile / region.area_sr, float(expected.sum()),
        per_tile(background.field_measured().astype(float)) / region.area_sr * PIXEL_SR
        >= 0.5,
        per_tile(looked.astype(float)) > 0)


def _at_least(region: Region, per_tile: np.ndarray) -> np.ndarray:
    """Per tile: the sum of *per_tile* over the tiles at least as dense as it."""
    order = region.density_order
    cum = np.cumsum(per_tile[order])
    dens = region.probdensity[order]
    # Tiles of equal density (a circle's) are all "at least as dense" as each other.
    ends = np.r_[np.nonzero(dens[1:] != dens[:-1])[0], len(order) - 1]
    group_end = ends[np.searchsorted(ends, np.arange(len(order)))]
    out = np.empty_like(cum)
    out[order] = cum[group_end]
    return out
