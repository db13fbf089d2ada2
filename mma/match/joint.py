"""Event x event coincidences: sky overlap and joint false alarm rates, as RAVEN computes them.

Pure functions on :class:`mma.skymaps.region.Region` (numpy only, no SQL, no I/O).
The formulas are those of RAVEN (``ligo-raven``, ``ligo.raven.search``, version
3.3), the LVK's GW x external-trigger search (Urban 2016, PhD thesis, UW-Milwaukee),
with the sky overlap integral of Ashkar et al. 2021 (ApJ 915, 68):

* sky overlap ``I = 4 pi * integral rho_a rho_b dOmega`` (dimensionless; 1 for two
  uniform all-sky maps, larger when both maps agree on a small area);
* untargeted temporal FAR ``(t_hi - t_lo) * R_ext * FAR_gw`` [Hz];
* targeted (sub-threshold) temporal FAR ``z (1 - ln(z / z_max))`` [Hz];
* space-time FAR ``temporal FAR / I`` [Hz].

The intersection of two maps is exact: two HEALPix tiles are either nested or
disjoint, so the tiles where both maps are defined are, for each overlapping
pair, the smaller of the two; they are found by a vectorised merge of the sorted
level-29 ranges, never by rasterising to a fixed resolution.

``docs/joint.md`` gives the defaults (rates, windows) with their sources and what
the validation against RAVEN itself found.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mma.errors import InvalidValue
from mma.skymaps.region import Region

__all__ = ("DEFAULT_WINDOWS_S", "GRB_RATE_HZ", "ICECUBE_GOLD_RATE_HZ", "TARGETED_THRESHOLDS_HZ",
           "YEAR_S", "JointFar", "joint_far", "overlap_integral", "point_overlap",
           "product_region", "space_time_far", "temporal_far_targeted",
           "temporal_far_untargeted")

log = logging.getLogger(__name__)

YEAR_S = 365.0 * 86400.0
"""The year [s] RAVEN and gwcelery divide their yearly rates by (365 days)."""

GRB_RATE_HZ = 325.0 / YEAR_S
"""Rate of independently detected GRBs (Fermi, Swift, INTEGRAL, AGILE) [Hz]: 325/yr."""

ICECUBE_GOLD_RATE_HZ = 13.91 / YEAR_S
"""Rate of IceCube Gold track alerts [Hz]: 13.91/yr."""

DEFAULT_WINDOWS_S: dict[str, tuple[float, float]] = {
    "gw_cbc_grb": (-1.0, 5.0),
    "gw_burst_grb": (-60.0, 600.0),
    "gw_neutrino": (-500.0, 500.0),
}
"""Coincidence windows [s]: external event time minus GW time (docs/joint.md)."""

TARGETED_THRESHOLDS_HZ: dict[str, tuple[float, float]] = {
    "Fermi": (1.0 / 10000.0, 1.0 / 86400.0),
    "Swift": (1.0 / 1000.0, 2.0 / 86400.0),
}
"""RAVEN's default ``(FAR_ext, FAR_gw)`` thresholds [Hz] of the targeted sub-threshold search."""

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _intersection(a: Region, b: Region) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Pairs of overlapping tiles of *a* and *b*, and their common level-29 ranges.

    Tiles of one map are sorted and disjoint, so the tiles of *b* meeting tile ``i``
    of *a* are a contiguous run: from the first with ``hi > a.lo[i]`` to the last
    with ``lo < a.hi[i]``. Each pair's intersection is the smaller tile, and each
    tile is the smaller of at most one pair: at most ``n_a + n_b`` pairs.

    Returns
    -------
    ia, ib : numpy.ndarray of int64
        Tile indices into *a* and *b*, one entry per overlapping pair.
    lo, hi : numpy.ndarray of int64
        The pair's common range ``[lo, hi)`` (sorted, disjoint).
    """
    start = np.searchsorted(b.hi, a.lo, side="right")
    stop = np.searchsorted(b.lo, a.hi, side="left")
    count = np.maximum(stop - start, 0)
    ia = np.repeat(np.arange(a.n_tiles, dtype=np.int64), count)
    first = np.cumsum(count) - count
    ib = (np.repeat(start, count) + np.arange(ia.size) - np.repeat(first, count)).astype(np.int64)
    lo = np.maximum(a.lo[ia], b.lo[ib])
    hi = np.minimum(a.hi[ia], b.hi[ib])
    return ia, ib, lo, hi


def _pair_probability(a: Region, b: Region) -> tuple[IntArray, IntArray, IntArray, IntArray,
                                                       FloatArray]:
    """Intersection tiles and ``rho_a * rho_b * dOmega`` [sr^-1] on each."""
    ia, ib, lo, hi = _intersection(a, b)
    area = np.minimum(a.area_sr[ia], b.area_sr[ib])
    return ia, ib, lo, hi, a.probdensity[ia] * b.probdensity[ib] * area


def overlap_integral(a: Region, b: Region) -> float:
    """Sky-map overlap integral of two normalised maps (dimensionless).

    ``I = 4 pi * sum over the intersection tiles of rho_a * rho_b * dOmega``, which
    in pixel-probability form is ``4 pi * sum p_a p_b / dOmega``. Identical uniform
    all-sky maps give 1; two identical Fisher densities of concentration ``kappa``
    give ``kappa coth(kappa)``; disjoint maps give 0. It is the Bayes factor of a
    common sky position against independent ones (isotropic prior ``1/4pi``).

    Parameters
    ----------
    a, b : mma.skymaps.region.Region
        Normalised maps, densities [sr^-1].

    Returns
    -------
    float
        ``I`` >= 0; 0.0 when no tile of *a* overlaps a tile of *b*.

    References
    ----------
    Ashkar et al. 2021, ApJ 915, 68 (spatial overlap); RAVEN
    ``ligo.raven.search.skymap_overlap_integral``: flat maps are brought to the finer
    NSIDE (the same value here), a multi-order map against a flat one is sampled at
    its tile centres (the same), two multi-order maps are paired by nearest tile
    centre (an approximation: 0.2 % off for GW170817 x GRB 170817A).
    """
    *_, prob = _pair_probability(a, b)
    return float(4.0 * np.pi * prob.sum()) if prob.size else 0.0


def point_overlap(region: Region, ra_deg: float, dec_deg: float) -> float:
    """Overlap integral of a map with a point position: ``4 pi * rho(x)``.

    The limit of :func:`overlap_integral` when the other map is a delta function,
    for externally well localised events (Swift/XRT, arcsec positions).

    Parameters
    ----------
    region : mma.skymaps.region.Region
        Normalised map, density [sr^-1].
    ra_deg, dec_deg : float
        Position [deg, ICRS].

    Returns
    -------
    float
        ``4 pi rho`` at the position's tile; 0.0 outside the map's tiles.

    Raises
    ------
    mma.errors.InvalidValue
        Non-finite coordinates or ``|dec| > 90``.

    References
    ----------
    RAVEN ``skymap_overlap_integral(..., ra=, dec=)``: ``se_skymap[ind] * npix / sum``
    for a flat map, ``rho / (1 / 4 pi)`` for a multi-order one (nearest tile centre).
    """
    idx = int(region.locate(ra_deg, dec_deg))
    return 0.0 if idx < 0 else float(4.0 * np.pi * region.probdensity[idx])


def product_region(a: Region, b: Region) -> Region | None:
    """Normalised product map ``rho_a rho_b / integral(rho_a rho_b)`` on the intersection tiles.

    The posterior sky position of one source seen by both messengers. The sky prior
    does not change the distance posterior along a line of sight, so the distance
    layers of *a* (or of *b* when *a* has none) are carried onto the intersection
    tiles unchanged.

    Parameters
    ----------
    a, b : mma.skymaps.region.Region
        Normalised maps, densities [sr^-1]; put the GW map first.

    Returns
    -------
    mma.skymaps.region.Region or None
        Density [sr^-1] on the tiles common to both maps; None when the product
        holds no probability (disjoint or zero-density overlap).
    """
    ia, ib, lo, hi, prob = _pair_probability(a, b)
    total = float(prob.sum()) if prob.size else 0.0
    if not (total > 0.0 and math.isfinite(total)):
        return None
    density = a.probdensity[ia] * b.probdensity[ib] / total
    source, idx = (a, ia) if a.has_distance else (b, ib)
    if source.distmu is None or source.distsigma is None or source.distnorm is None:
        return Region.from_tiles(lo, hi, density)
    return Region.from_tiles(lo, hi, density, source.distmu[idx], source.distsigma[idx],
                             source.distnorm[idx])


def _width(window_s: tuple[float, float]) -> float:
    """``t_hi - t_lo`` [s] of a coincidence window, checked."""
    t_lo, t_hi = (float(t) for t in window_s)
    if not (math.isfinite(t_lo) and math.isfinite(t_hi) and t_lo < t_hi):
        raise InvalidValue(f"coincidence window {window_s!r} s needs finite t_lo < t_hi")
    return t_hi - t_lo


def _rate(value: float, name: str, *, positive: bool = False) -> float:
    """A rate [Hz] that is finite and >= 0 (> 0 with *positive*)."""
    rate = float(value)
    if not math.isfinite(rate) or rate < 0.0 or (positive and rate == 0.0):
        raise InvalidValue(f"{name} {value!r} Hz must be finite and "
                           f"{'positive' if positive else 'non-negative'}")
    return rate


def temporal_far_untargeted(window_s: tuple[float, float], rate_ext_hz: float,
                            far_gw_hz: float) -> float:
    """Temporal coincidence FAR of an untargeted search [Hz].

    ``FAR_c = (t_hi - t_lo) * R_ext * FAR_gw``: the rate at which GW candidates at
    least this significant meet an unrelated external trigger inside the window.

    Parameters
    ----------
    window_s : (float, float)
        Coincidence window ``(t_lo, t_hi)`` [s], external time minus GW time.
    rate_ext_hz : float
        Rate of external triggers [Hz] (e.g. :data:`GRB_RATE_HZ`).
    far_gw_hz : float
        False alarm rate of the GW candidate [Hz].

    Raises
    ------
    mma.errors.InvalidValue
        An empty or non-finite window; a negative or non-finite rate.

    References
    ----------
    Urban 2016; RAVEN ``coinc_far`` for ``grb_search`` "GRB"/"SubGRB"/"MDC".
    """
    return (_width(window_s) * _rate(rate_ext_hz, "external trigger rate")
            * _rate(far_gw_hz, "GW FAR"))


def temporal_far_targeted(window_s: tuple[float, float], far_ext_hz: float, far_gw_hz: float,
                          far_ext_thresh_hz: float, far_gw_thresh_hz: float) -> float:
    """Temporal coincidence FAR of the targeted sub-threshold search [Hz].

    With ``z = (t_hi - t_lo) FAR_ext FAR_gw`` and ``z_max = (t_hi - t_lo)
    FAR_ext,thresh FAR_gw,thresh``, both FARs uniform below their thresholds for
    background, ``P(product <= z) = u (1 - ln u)`` with ``u = z / z_max``, so

    ``FAR_c = z_max * u (1 - ln u) = z (1 - ln(z / z_max))``  for ``z <= z_max``.

    RAVEN 3.3 computes exactly ``z * (1 - np.log(z / z_max))`` with no division by
    the window and no other normalisation, and applies it whatever ``z``: above
    ``z_max`` its value falls again and turns negative beyond ``e * z_max``; at
    ``z = 0`` it gives NaN. Here ``z >= z_max`` gives ``z_max`` (the distribution
    function saturates: the pair is outside the search's thresholds) and ``z = 0``
    gives 0 (the limit); in between the value is RAVEN's to rounding.

    Parameters
    ----------
    window_s : (float, float)
        Coincidence window ``(t_lo, t_hi)`` [s].
    far_ext_hz, far_gw_hz : float
        FARs of the external trigger and the GW candidate [Hz].
    far_ext_thresh_hz, far_gw_thresh_hz : float
        The search's FAR thresholds [Hz] (:data:`TARGETED_THRESHOLDS_HZ`).

    Raises
    ------
    mma.errors.InvalidValue
        An empty window, a negative or non-finite FAR, a threshold not > 0.

    References
    ----------
    RAVEN ``coinc_far`` with ``grb_search="SubGRBTargeted"``; product distribution
    of two uniform variables.
    """
    width = _width(window_s)
    z = width * _rate(far_ext_hz, "external FAR") * _rate(far_gw_hz, "GW FAR")
    z_max = (width * _rate(far_ext_thresh_hz, "external FAR threshold", positive=True)
             * _rate(far_gw_thresh_hz, "GW FAR threshold", positive=True))
    if z >= z_max:
        return z_max
    if z == 0.0:
        return 0.0
    return z * (1.0 - math.log(z / z_max))


def space_time_far(temporal_far_hz: float, overlap: float) -> float:
    """Space-time coincidence FAR [Hz]: ``FAR_c / I``.

    Parameters
    ----------
    temporal_far_hz : float
        Temporal coincidence FAR [Hz].
    overlap : float
        Sky overlap integral ``I`` (:func:`overlap_integral`, :func:`point_overlap`).

    Returns
    -------
    float
        ``temporal / I``; ``math.inf`` when ``I == 0`` (no common sky: the pair is
        not a coincidence), as RAVEN's numpy division gives. Callers serialising
        it to strict JSON must map ``inf`` themselves.

    Raises
    ------
    mma.errors.InvalidValue
        A negative or non-finite input.

    References
    ----------
    Ashkar et al. 2021; RAVEN ``coinc_far(..., incl_sky=True)``.
    """
    far = _rate(temporal_far_hz, "temporal FAR")
    i = _rate(overlap, "overlap integral")
    return math.inf if i == 0.0 else far / i


@dataclass(frozen=True)
class JointFar:
    """Joint FARs of one GW x external event pair (RAVEN's ``coinc_far`` output).

    Attributes
    ----------
    temporal_far_hz : float
        Temporal coincidence FAR [Hz].
    space_time_far_hz : float or None
        Space-time FAR [Hz] (inf for disjoint maps); None without sky information.
    overlap : float or None
        Sky overlap integral (dimensionless); None without sky information.
    window_s : (float, float)
        The coincidence window [s], external time minus GW time.
    targeted : bool
        True for the targeted sub-threshold formula.
    """

    temporal_far_hz: float
    space_time_far_hz: float | None
    overlap: float | None
    window_s: tuple[float, float]
    targeted: bool


def joint_far(window_s: tuple[float, float], far_gw_hz: float, *,
              rate_ext_hz: float | None = None, far_ext_hz: float | None = None,
              far_ext_thresh_hz: float | None = None, far_gw_thresh_hz: float | None = None,
              gw_region: Region | None = None, ext_region: Region | None = None,
              ext_position_deg: tuple[float, float] | None = None) -> JointFar:
    """Temporal and space-time FARs of a GW x external pair, as RAVEN's ``coinc_far``.

    The targeted formula is used when both thresholds are given (then *far_ext_hz*
    is required), the untargeted one when neither is (then *rate_ext_hz* is required).
    The overlap is the two maps' (:func:`overlap_integral`), or the GW map's at
    the external position (:func:`point_overlap`); without either, no sky term.

    Parameters
    ----------
    window_s : (float, float)
        Coincidence window [s], external time minus GW time.
    far_gw_hz : float
        GW candidate's FAR [Hz].
    rate_ext_hz : float, optional
        External trigger rate [Hz] (untargeted).
    far_ext_hz, far_ext_thresh_hz, far_gw_thresh_hz : float, optional
        External FAR and the two thresholds [Hz] (targeted).
    gw_region, ext_region : mma.skymaps.region.Region, optional
        The two sky maps.
    ext_position_deg : (float, float), optional
        External (RA, Dec) [deg, ICRS] when it has no map.

    Raises
    ------
    mma.errors.InvalidValue
        Missing inputs for the chosen formula, or invalid values (see the formulas).
    """
    if (far_ext_thresh_hz is None) != (far_gw_thresh_hz is None):
        raise InvalidValue("the targeted search needs both FAR thresholds")
    targeted = far_ext_thresh_hz is not None and far_gw_thresh_hz is not None
    if far_ext_thresh_hz is not None and far_gw_thresh_hz is not None:
        if far_ext_hz is None:
            raise InvalidValue("the targeted search needs the external FAR")
        temporal = temporal_far_targeted(window_s, far_ext_hz, far_gw_hz,
                                         far_ext_thresh_hz, far_gw_thresh_hz)
    else:
        if rate_ext_hz is None:
            raise InvalidValue("the untargeted search needs the external trigger rate")
        temporal = temporal_far_untargeted(window_s, rate_ext_hz, far_gw_hz)
    overlap: float | None = None
    if gw_region is not None and ext_region is not None:
        overlap = overlap_integral(gw_region, ext_region)
    elif gw_region is not None and ext_position_deg is not None:
        overlap = point_overlap(gw_region, *ext_position_deg)
    spatial = None if overlap is None else space_time_far(temporal, overlap)
    log.debug("joint FAR: window %s s, temporal %.3g Hz, overlap %s, space-time %s Hz",
              window_s, temporal, overlap, spatial)
    return JointFar(temporal_far_hz=temporal, space_time_far_hz=spatial, overlap=overlap,
                    window_s=(float(window_s[0]), float(window_s[1])), targeted=targeted)
