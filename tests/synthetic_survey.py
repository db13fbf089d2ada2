"""A synthetic optical survey with the structure of a real one (ZTF-like), for calibration tests.

The vetted detections of a wide-field survey are not a Poisson field on the sky:
the survey observes fixed ~7° fields, only part of the sky is visible on a given
night and that part moves with the season, about half of the visible fields are
observed each night, nights are lost to weather, the Galactic plane is denser,
transients alert on several nights and variables (AGN, CVs, variable stars)
alert again and again at fixed positions. :func:`generate_survey` builds such a
survey deterministically from a :class:`numpy.random.Generator`;
:func:`rotate` moves every position by one RA offset (a block rotation, which
keeps the cadence and the field structure but moves the Galactic plane relative
to a fixed sky region).

Fields are HEALPix pixels of order :attr:`SurveyParams.field_order` (order 3:
768 pixels of ≈ 53.7 deg², ≈ 7.3° across, nested numbering). Positions are ICRS
degrees; times are MJD (UTC) floats, see :func:`mjd_to_datetimes`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta

import healpy
import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord

MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)
"""MJD 0 as a timezone-aware UTC datetime."""

DAYS_PER_YEAR = 365.25
_POSITION_ORDER = 19
"""HEALPix order of the object positions (≈ 0.4″ pixels): positions are pixel centres."""


@dataclass(frozen=True)
class SurveyParams:
    """All the knobs of the synthetic survey, with ZTF-like defaults.

    Attributes
    ----------
    n_nights : int
        Nights returned, numbered 0 … ``n_nights - 1``.
    burn_in_nights : int
        Nights simulated before night 0 and dropped, so that night 0 already
        sees transients discovered earlier (a steady state).
    mjd0 : float
        MJD (UTC) of the start of night 0's calendar day (default 2024-01-01).
    night_window : tuple of float
        Observing window of night ``n``: ``mjd0 + n + night_window`` [d].
    ra0_deg : float
        Centre of the visible RA range on night 0 [deg, ICRS]; default: the
        anti-solar RA on 2024-01-01. It moves by 360° per 365.25 d.
    visible_width_deg : float
        Full width of the visible RA range [deg]; a field is visible when its
        centre's RA is within half of it from the centre.
    dec_limit_deg : float
        No detection south of this declination [deg].
    field_order : int
        HEALPix order of the fields (3: ≈ 7.3°).
    weight_order : int
        HEALPix order at which the Galactic density boost is evaluated.
    observed_fraction : float
        Probability that a visible field is observed on a night that is not lost.
    p_lost_night : float
        Probability that a night is lost (weather, maintenance).
    p_lost_run : float
        Probability per night that a run of lost nights starts there.
    lost_run_nights : tuple of int
        Inclusive range of the length of such a run [nights].
    exposure_probs : tuple of float
        Probabilities of 1, 2, 3 … exposures of an observed field in a night.
    revisit_gap_days : tuple of float
        Range of the gap between successive exposures of a field [d].
    time_jitter_days : float
        Scatter of a field's first exposure around its slot in the night [d]
        (fields are observed roughly in RA order, as they cross the meridian).
    galactic_amplitude, galactic_sigma_deg : float
        Object density × ``1 + A exp(-b² / 2σ²)``, ``b`` the Galactic latitude.
    transient_rate_per_deg2 : float
        New transients per deg² per observed field-night, before the Galactic
        boost. The default gives ≈ 1 distinct object (transients and variables)
        detected per observed night in a 3°-radius circle at high latitude.
    transient_lifetime_days : float
        Mean of the exponential time over which a transient keeps being
        detected after its first detection [d].
    detection_probability : float
        Probability that a live transient is detected in an exposure of its field.
    variable_fraction : float
        Target fraction of all detections (nights ≥ 0) that come from variables.
    variable_alert_probability : float
        Probability that a variable alerts in an exposure of its field.
    """

    n_nights: int = 90
    burn_in_nights: int = 30
    mjd0: float = 60310.0
    night_window: tuple[float, float] = (0.15, 0.5)
    ra0_deg: float = 101.0
    visible_width_deg: float = 140.0
    dec_limit_deg: float = -30.0
    field_order: int = 3
    weight_order: int = 6
    observed_fraction: float = 0.5
    p_lost_night: float = 0.15
    p_lost_run: float = 0.01
    lost_run_nights: tuple[int, int] = (3, 7)
    exposure_probs: tuple[float, ...] = (0.3, 0.5, 0.2)
    revisit_gap_days: tuple[float, float] = (0.02, 0.08)
    time_jitter_days: float = 0.02
    galactic_amplitude: float = 4.5
    galactic_sigma_deg: float = 10.0
    transient_rate_per_deg2: float = 0.0055
    transient_lifetime_days: float = 10.0
    detection_probability: float = 0.8
    variable_fraction: float = 0.35
    variable_alert_probability: float = 0.07


@dataclass(frozen=True, eq=False)
class FieldGrid:
    """The survey fields: HEALPix pixels, possibly rotated in RA.

    Attributes
    ----------
    order : int
        HEALPix order of the fields (nested numbering).
    pixels : numpy.ndarray
        HEALPix pixel of each field (int64); the field id is the index in it.
    ra_deg, dec_deg : numpy.ndarray
        Centre of each field [deg, ICRS], rotation included.
    ra_offset_deg : float
        RA rotation applied to the grid [deg]: the footprint of field ``i`` is
        its pixel moved by this offset.
    """

    order: int
    pixels: np.ndarray
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    ra_offset_deg: float = 0.0

    @property
    def n_fields(self) -> int:
        """Number of fields."""
        return len(self.pixels)

    def field_of(self, ra_deg: np.ndarray | float, dec_deg: np.ndarray | float) -> np.ndarray:
        """Field id whose footprint contains each position, -1 outside the survey.

        Parameters
        ----------
        ra_deg, dec_deg : array_like
            ICRS position [deg].

        Returns
        -------
        numpy.ndarray
            int64 field ids, the shape of the broadcast inputs.
        """
        ra = np.mod(np.asarray(ra_deg, dtype=float) - self.ra_offset_deg, 360.0)
        pix = healpy.ang2pix(2**self.order, ra, np.asarray(dec_deg, dtype=float),
                             nest=True, lonlat=True)
        lookup = np.full(12 * 4**self.order, -1, dtype=np.int64)
        lookup[self.pixels] = np.arange(self.n_fields)
        return np.asarray(lookup[pix], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Survey:
    """The vetted detections of a synthetic survey, one row per detection, in time order.

    Attributes
    ----------
    params : SurveyParams
        The parameters it was generated with.
    fields : FieldGrid
        The field geometry.
    object_id : numpy.ndarray
        int64 object of each detection; indexes the ``object_*`` arrays.
    ra_deg, dec_deg : numpy.ndarray
        ICRS position of the detection (its object's fixed position) [deg].
    time : numpy.ndarray
        Exposure time, MJD (UTC) [d].
    night : numpy.ndarray
        int64 night number, 0 … ``n_nights - 1``.
    field : numpy.ndarray
        int64 field id of the exposure.
    new : numpy.ndarray
        bool: the object is a transient (a new source), not a pre-existing variable.
    first_of_object : numpy.ndarray
        bool: this row is the object's first detection ever (False for
        variables, and for transients first detected during the burn-in).
    observed : numpy.ndarray
        bool [n_nights, n_fields]: the field was observed that night.
    lost : numpy.ndarray
        bool [n_nights]: the night was lost.
    visible_center_deg : numpy.ndarray
        Centre of each night's visible RA range [deg], rotation included.
    exposure_field, exposure_time, exposure_night : numpy.ndarray
        Every exposure of nights ≥ 0: field id, MJD (UTC), night; by time.
    object_ra_deg, object_dec_deg : numpy.ndarray
        Position of every generated object [deg, ICRS].
    object_is_transient : numpy.ndarray
        bool per object.
    """

    params: SurveyParams
    fields: FieldGrid
    object_id: np.ndarray
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    time: np.ndarray
    night: np.ndarray
    field: np.ndarray
    new: np.ndarray
    first_of_object: np.ndarray
    observed: np.ndarray
    lost: np.ndarray
    visible_center_deg: np.ndarray
    exposure_field: np.ndarray
    exposure_time: np.ndarray
    exposure_night: np.ndarray
    object_ra_deg: np.ndarray
    object_dec_deg: np.ndarray
    object_is_transient: np.ndarray

    @property
    def n_nights(self) -> int:
        """Number of nights."""
        return len(self.lost)

    @property
    def n_detections(self) -> int:
        """Number of detections (rows)."""
        return len(self.object_id)

    def field_of(self, ra_deg: np.ndarray | float, dec_deg: np.ndarray | float) -> np.ndarray:
        """Field ids of positions [deg, ICRS], -1 outside (see :meth:`FieldGrid.field_of`)."""
        return self.fields.field_of(ra_deg, dec_deg)

    def datetimes(self) -> list[datetime]:
        """Detection times as timezone-aware UTC datetimes."""
        return mjd_to_datetimes(self.time)


def mjd_to_datetimes(mjd: np.ndarray) -> list[datetime]:
    """Convert MJD (UTC) [d] to timezone-aware UTC datetimes (microsecond precision)."""
    return [MJD_EPOCH + timedelta(days=float(m)) for m in np.asarray(mjd, dtype=float)]


def visible_center_deg(params: SurveyParams, nights: np.ndarray) -> np.ndarray:
    """Centre of the visible RA range on each night [deg]: it moves 360° per 365.25 d."""
    return np.mod(params.ra0_deg + 360.0 * np.asarray(nights, dtype=float) / DAYS_PER_YEAR, 360.0)


def _wrap180(deg: np.ndarray) -> np.ndarray:
    """Angles folded into [-180, 180) [deg]."""
    return np.mod(np.asarray(deg) + 180.0, 360.0) - 180.0


def _frozen(survey: Survey) -> Survey:
    """The survey with its arrays (and its grid's) made read-only."""
    for holder in (survey, survey.fields):
        for item in fields(holder):
            value = getattr(holder, item.name)
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
    return survey


@dataclass(frozen=True)
class _Sky:
    """Fields and the Galactic-boosted density weights of their sub-pixels."""

    grid: FieldGrid
    sub_weight: np.ndarray  # boosted area [deg²] of each weight_order pixel (all sky, nested)
    field_weight: np.ndarray  # boosted area [deg²] of each field (north of the limit)


def _sky(params: SurveyParams) -> _Sky:
    """Fields north of the declination limit and their Galactic density weights."""
    nside = 2**params.weight_order
    ra, dec = healpy.pix2ang(nside, np.arange(12 * nside**2), nest=True, lonlat=True)
    b = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").galactic.b.deg
    boost = 1.0 + params.galactic_amplitude * np.exp(-0.5 * (b / params.galactic_sigma_deg) ** 2)
    area = healpy.nside2pixarea(nside, degrees=True)
    sub_weight = np.where(dec >= params.dec_limit_deg, boost * area, 0.0)
    per_field = 4 ** (params.weight_order - params.field_order)
    all_weight = sub_weight.reshape(-1, per_field).sum(axis=1)
    pixels = np.flatnonzero(all_weight > 0).astype(np.int64)
    f_ra, f_dec = healpy.pix2ang(2**params.field_order, pixels, nest=True, lonlat=True)
    grid = FieldGrid(params.field_order, pixels, np.asarray(f_ra), np.asarray(f_dec))
    return _Sky(grid, sub_weight, all_weight[pixels])


def _sample_positions(sky: _Sky, params: SurveyParams, fields: np.ndarray,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random positions [deg] in the given fields, with density ∝ the Galactic boost."""
    per_field = 4 ** (params.weight_order - params.field_order)
    cum = np.cumsum(sky.sub_weight)
    pix = sky.grid.pixels[fields]
    start = np.where(pix > 0, cum[np.maximum(pix * per_field - 1, 0)], 0.0)  # weight before
    target = start + rng.random(len(fields)) * sky.field_weight[fields]
    sub = np.minimum(np.searchsorted(cum, target, side="right"), len(cum) - 1)
    depth = 4 ** (_POSITION_ORDER - params.weight_order)
    fine = sub.astype(np.int64) * depth + rng.integers(0, depth, len(fields))
    ra, dec = healpy.pix2ang(2**_POSITION_ORDER, fine, nest=True, lonlat=True)
    return np.asarray(ra), np.asarray(dec)


def _lost_nights(params: SurveyParams, n_total: int, rng: np.random.Generator) -> np.ndarray:
    """bool per simulated night: lost to weather or maintenance (single nights and runs)."""
    lost = rng.random(n_total) < params.p_lost_night
    starts = np.flatnonzero(rng.random(n_total) < params.p_lost_run)
    lengths = rng.integers(params.lost_run_nights[0], params.lost_run_nights[1] + 1, len(starts))
    for start, length in zip(starts, lengths, strict=True):  # a few runs, not per detection
        lost[start:start + length] = True
    return lost


@dataclass(frozen=True)
class _Exposures:
    """Exposures sorted by (field, time), with the (night, field) visit of each."""

    field: np.ndarray
    time: np.ndarray
    night: np.ndarray
    key: np.ndarray  # field * _KEY_SCALE + time - t_origin: sorted
    visit_field: np.ndarray
    visit_night: np.ndarray
    visit_last: np.ndarray  # time of the last exposure of each visit


_KEY_SCALE = 1.0e4


def _exposures(params: SurveyParams, sky: _Sky, observed: np.ndarray, nights: np.ndarray,
               rng: np.random.Generator) -> _Exposures:
    """Exposure times of every observed (night, field): roughly in RA order through the night."""
    v_night_idx, v_field = np.nonzero(observed)
    v_night = nights[v_night_idx]
    start, end = params.night_window
    width = params.visible_width_deg
    offset = _wrap180(sky.grid.ra_deg[v_field] - visible_center_deg(params, v_night))
    slot = (offset / width + 0.5) * (end - start)
    probs = np.asarray(params.exposure_probs, dtype=float)
    n_exp = rng.choice(len(probs), size=len(v_field), p=probs / probs.sum()) + 1
    max_n = len(probs)
    gaps = rng.uniform(*params.revisit_gap_days, size=(len(v_field), max_n))
    gaps[:, 0] = 0.0
    gaps[np.arange(max_n)[None, :] >= n_exp[:, None]] = 0.0
    cum_gaps = np.cumsum(gaps, axis=1)
    latest = end - cum_gaps[:, -1]
    first = np.clip(slot + rng.normal(0.0, params.time_jitter_days, len(v_field)), start, latest)
    first = params.mjd0 + v_night + first
    visit = np.repeat(np.arange(len(v_field)), n_exp)
    within = np.arange(len(visit)) - np.repeat(np.cumsum(n_exp) - n_exp, n_exp)
    time = first[visit] + cum_gaps[visit, within]
    fld, night = v_field[visit], v_night[visit]
    key = _key(params, fld, time)
    order = np.argsort(key, kind="stable")
    return _Exposures(fld[order], time[order], night[order], key[order], v_field, v_night,
                      first + cum_gaps[:, -1])


def _key(params: SurveyParams, fld: np.ndarray, time: np.ndarray) -> np.ndarray:
    return fld * _KEY_SCALE + (time - params.mjd0 + params.burn_in_nights + 1.0)


def _expand(first: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each i, the ``counts[i]`` consecutive integers from ``first[i]``: (owner, value)."""
    owner = np.repeat(np.arange(len(first)), counts)
    within = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, np.repeat(first, counts) + within


def _transients(params: SurveyParams, sky: _Sky, exp: _Exposures,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Transient objects and their detections.

    Returns (ra, dec, row_object, row_exposure) with rows' exposures indexing ``exp``;
    each object's first row is its discovery.
    """
    n_new = rng.poisson(params.transient_rate_per_deg2 * sky.field_weight[exp.visit_field])
    visit = np.repeat(np.arange(len(n_new)), n_new)
    fld = exp.visit_field[visit]
    ra, dec = _sample_positions(sky, params, fld, rng)
    keep = dec >= params.dec_limit_deg
    visit, fld, ra, dec = visit[keep], fld[keep], ra[keep], dec[keep]
    # explosion after the previous night's end: discovered at the first exposure that follows
    earliest = params.mjd0 + exp.visit_night[visit] - 1.0 + params.night_window[1]
    t_explode = rng.uniform(earliest, exp.visit_last[visit])
    e0 = np.searchsorted(exp.key, _key(params, fld, t_explode), side="left")
    t_end = exp.time[e0] + rng.exponential(params.transient_lifetime_days, len(e0))
    e_end = np.searchsorted(exp.key, _key(params, fld, t_end), side="right")
    owner, later = _expand(e0 + 1, e_end - e0 - 1)
    seen = rng.random(len(later)) < params.detection_probability
    row_obj = np.concatenate([np.arange(len(e0)), owner[seen]])
    row_exp = np.concatenate([e0, later[seen]])
    return ra, dec, row_obj, row_exp


def _variables(params: SurveyParams, sky: _Sky, exp: _Exposures, n_transient_rows: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Variables at fixed positions, with the density that gives ``variable_fraction``.

    Only exposures of nights ≥ 0 are used. Returns (ra, dec, row_object, row_exposure).
    """
    n_fields = sky.grid.n_fields
    use = exp.night >= 0
    per_field = np.bincount(exp.field[use], minlength=n_fields)
    expected_per_density = params.variable_alert_probability * np.sum(sky.field_weight * per_field)
    frac = params.variable_fraction
    density = frac / (1.0 - frac) * n_transient_rows / max(expected_per_density, 1e-12)
    n_var = rng.poisson(density * sky.field_weight)
    fld = np.repeat(np.arange(n_fields), n_var)
    ra, dec = _sample_positions(sky, params, fld, rng)
    keep = dec >= params.dec_limit_deg
    fld, ra, dec = fld[keep], ra[keep], dec[keep]
    idx = np.flatnonzero(use)  # exposures sorted by field: each field's are contiguous here
    field_start = np.searchsorted(exp.field[idx], np.arange(n_fields), side="left")
    owner, pos = _expand(field_start[fld], per_field[fld])
    alert = rng.random(len(pos)) < params.variable_alert_probability
    return ra, dec, owner[alert], idx[pos[alert]]


def _observed(params: SurveyParams, sky: _Sky, nights: np.ndarray, lost: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """bool [night, field]: visible, the night not lost, and picked for the night."""
    offset = _wrap180(sky.grid.ra_deg[None, :] - visible_center_deg(params, nights)[:, None])
    visible = np.abs(offset) <= params.visible_width_deg / 2.0
    picked = rng.random((len(nights), sky.grid.n_fields)) < params.observed_fraction
    return np.asarray(visible & picked & ~lost[:, None])


def generate_survey(rng: np.random.Generator, params: SurveyParams | None = None) -> Survey:
    """Generate the survey's vetted detections, deterministically from ``rng``.

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness.
    params : SurveyParams, optional
        Defaults to ``SurveyParams()``.

    Returns
    -------
    Survey
        Detections of nights 0 … ``n_nights - 1`` in time order.
    """
    params = params or SurveyParams()
    sky = _sky(params)
    nights = np.arange(-params.burn_in_nights, params.n_nights)
    lost = _lost_nights(params, len(nights), rng)
    observed = _observed(params, sky, nights, lost, rng)
    exp = _exposures(params, sky, observed, nights, rng)
    t_ra, t_dec, t_obj, t_exp = _transients(params, sky, exp, rng)
    t_first = np.zeros(len(t_obj), dtype=bool)
    t_first[: len(t_ra)] = True
    t_keep = exp.night[t_exp] >= 0
    v_ra, v_dec, v_obj, v_exp = _variables(params, sky, exp, int(t_keep.sum()), rng)
    obj = np.concatenate([t_obj[t_keep], v_obj + len(t_ra)]).astype(np.int64)
    row_exp = np.concatenate([t_exp[t_keep], v_exp])
    first = np.concatenate([t_first[t_keep], np.zeros(len(v_obj), dtype=bool)])
    order = np.lexsort((obj, exp.time[row_exp]))
    obj, row_exp, first = obj[order], row_exp[order], first[order]
    o_ra, o_dec = np.concatenate([t_ra, v_ra]), np.concatenate([t_dec, v_dec])
    is_transient = np.arange(len(o_ra)) < len(t_ra)
    e_keep = np.flatnonzero(exp.night >= 0)
    e_keep = e_keep[np.argsort(exp.time[e_keep], kind="stable")]
    return _frozen(Survey(
        params=params, fields=sky.grid, object_id=obj, ra_deg=o_ra[obj], dec_deg=o_dec[obj],
        time=exp.time[row_exp],
        night=exp.night[row_exp].astype(np.int64), field=exp.field[row_exp].astype(np.int64),
        new=is_transient[obj], first_of_object=first,
        observed=observed[params.burn_in_nights:], lost=lost[params.burn_in_nights:],
        visible_center_deg=visible_center_deg(params, nights[params.burn_in_nights:]),
        exposure_field=exp.field[e_keep].astype(np.int64), exposure_time=exp.time[e_keep],
        exposure_night=exp.night[e_keep].astype(np.int64),
        object_ra_deg=o_ra, object_dec_deg=o_dec, object_is_transient=is_transient))


def rotate(survey: Survey, delta_ra_deg: float) -> Survey:
    """Rotate every position, field and visible range by ``delta_ra_deg`` in RA [deg].

    A block rotation: times, nights, cadence, field membership and object
    identities are unchanged, while the (unrotated) Galactic plane moves
    relative to any fixed sky region. Declinations are kept.
    """
    grid = survey.fields
    rotated = FieldGrid(grid.order, grid.pixels, np.mod(grid.ra_deg + delta_ra_deg, 360.0),
                        grid.dec_deg, float(np.mod(grid.ra_offset_deg + delta_ra_deg, 360.0)))
    return _frozen(replace(
        survey, fields=rotated, ra_deg=np.mod(survey.ra_deg + delta_ra_deg, 360.0),
        object_ra_deg=np.mod(survey.object_ra_deg + delta_ra_deg, 360.0),
        visible_center_deg=np.mod(survey.visible_center_deg + delta_ra_deg, 360.0)))


def iter_nights(survey: Survey) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(night, row indices)`` for every night in order (empty for nights without rows).

    Rows within a night are in time order, so concatenating them streams the survey.
    """
    bounds = np.searchsorted(survey.night, np.arange(survey.n_nights + 1), side="left")
    for night in range(survey.n_nights):
        yield night, np.arange(bounds[night], bounds[night + 1])


def separation_deg(ra1: np.ndarray | float, dec1: np.ndarray | float,
                   ra2: np.ndarray | float, dec2: np.ndarray | float) -> np.ndarray:
    """Great-circle separation [deg] between ICRS positions [deg] (haversine)."""
    r1, d1, r2, d2 = (np.radians(np.asarray(x, dtype=float)) for x in (ra1, dec1, ra2, dec2))
    h = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.asarray(np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))))


def counts_in_circle(survey: Survey, ra_deg: float, dec_deg: float, radius_deg: float = 3.0,
                     *, distinct: bool = False) -> np.ndarray:
    """Detections (or distinct objects) per night inside a circle.

    Parameters
    ----------
    survey : Survey
    ra_deg, dec_deg : float
        Circle centre [deg, ICRS].
    radius_deg : float
        Circle radius [deg].
    distinct : bool
        Count distinct objects per night instead of detections.

    Returns
    -------
    numpy.ndarray
        int64 counts, shape [n_nights].
    """
    inside = separation_deg(survey.ra_deg, survey.dec_deg, ra_deg, dec_deg) <= radius_deg
    night, obj = survey.night[inside], survey.object_id[inside]
    if distinct:
        pairs = np.unique(np.stack([night, obj]), axis=1)
        night = pairs[0]
    return np.bincount(night, minlength=survey.n_nights).astype(np.int64)


def observed_nights_at(survey: Survey, ra_deg: float, dec_deg: float) -> np.ndarray:
    """bool [n_nights]: the field containing the position was observed that night."""
    fid = int(survey.field_of(ra_deg, dec_deg))
    if fid < 0:
        return np.zeros(survey.n_nights, dtype=bool)
    return np.asarray(survey.observed[:, fid])
