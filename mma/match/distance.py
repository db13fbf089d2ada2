"""The distance term ``B_D`` of the candidate score (see ``docs/distance.md``).

Pure functions, no I/O. A candidate whose catalogued host galaxy has a
luminosity distance ``D`` [Mpc] is scored with

``B_D = P_host * p(D | x) / p_bg(D) + (1 - P_host)``

* ``p(D | x)``: the GW map's conditional distance density at the candidate's
  tile [Mpc^-1] (ligo.skymap's ansatz, ``Region.distance_pdf``).
* ``p_bg(D)``: unrelated transients uniform in comoving volume, their rate
  diluted by ``1 / (1 + z)`` (time dilation), out to the *reach*
  (:func:`ln_p_background_distance`) [Mpc^-1].
* The reach: the ``q`` quantile (default 0.99) of the map's marginal distance
  posterior (:func:`distance_quantile_mpc`), extended to the host when the host
  lies beyond it.
* ``P_host``: the probability that the catalogued galaxy is the transient's
  host, from the projected offset (:func:`host_association_probability`);
  when it is small, ``B_D`` tends to 1 and the distance neither helps nor hurts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.cosmology import FLRW, Planck18
from ligo.skymap import distance as ansatz
from numpy.typing import NDArray
from scipy.optimize import brentq

from mma.errors import ConfigError
from mma.match.finite import LN_FLOOR, clamp_ln
from mma.skymaps.region import Region

__all__ = [
    "DistanceSettings",
    "distance_quantile_mpc",
    "host_association_probability",
    "ln_b_distance",
    "ln_p_background_distance",
    "redshift_at_distance",
]

ARCSEC_RAD = math.pi / (180.0 * 3600.0)
MPC_KPC = 1000.0
# Redshift grid of the background table: log-spaced, Euclidean below the first point.
_Z_MIN, _Z_MAX, _N_GRID = 1e-6, 20.0, 20000


@dataclass(frozen=True)
class DistanceSettings:
    """The ``[distance]`` configuration section, checked.

    Attributes
    ----------
    reach_quantile : float
        Quantile of the marginal distance posterior that bounds the background (0..1).
    host_offset_scale_kpc : float
        Scale ``r0`` [kpc] of the host association ``exp(-r / r0)``.
    host_probability_min, host_probability_max : float
        Floor and ceiling of the host association probability (0 < min <= max < 1).
    host_probability_no_offset : float
        Association probability of a catalogued host given without an offset.
    """

    reach_quantile: float = 0.99
    host_offset_scale_kpc: float = 20.0
    host_probability_min: float = 0.01
    host_probability_max: float = 0.99
    host_probability_no_offset: float = 0.5

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> DistanceSettings:
        """Build from ``config.section("distance")``; ConfigError on values out of range."""
        s = cls(**{k: float(section[k]) for k in cls.__dataclass_fields__ if k in section})
        if not 0.0 < s.reach_quantile < 1.0:
            raise ConfigError("[distance] reach_quantile must lie in (0, 1)")
        if not (math.isfinite(s.host_offset_scale_kpc) and s.host_offset_scale_kpc > 0.0):
            raise ConfigError("[distance] host_offset_scale_kpc must be positive")
        if not 0.0 < s.host_probability_min <= s.host_probability_max < 1.0:
            raise ConfigError("[distance] need 0 < host_probability_min <= "
                              "host_probability_max < 1")
        if not s.host_probability_min <= s.host_probability_no_offset <= s.host_probability_max:
            raise ConfigError("[distance] host_probability_no_offset must lie between "
                              "host_probability_min and host_probability_max")
        return s


def distance_quantile_mpc(region: Region, q: float = 0.99) -> float | None:
    """The ``q`` quantile of the map's marginal luminosity-distance posterior [Mpc].

    ``p(D) = sum_i prob_i p(D | i) / sum_i prob_i`` over the tiles whose distance
    layers are informative (``Region.distance_support``), ``prob_i`` the tile's
    probability and ``p(D | i)`` ligo.skymap's conditional ansatz. Each tile's
    conditional CDF is normalised by its value at infinity, so inconsistent
    DISTNORM values cannot push the CDF past 1. The root is found with Brent's
    method to a relative tolerance of 1e-9.

    Parameters
    ----------
    region : Region
        A sky map, with or without distance layers.
    q : float
        Quantile, strictly between 0 and 1.

    Returns
    -------
    float or None
        The distance [Mpc]; None without distance layers or informative tiles.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile {q!r} is not in (0, 1)")
    ok, _ = region.distance_support()
    if ok is None or region.distmu is None or region.distsigma is None \
            or region.distnorm is None:
        return None
    mu, sigma, norm = region.distmu[ok], region.distsigma[ok], region.distnorm[ok]
    total = np.asarray(ansatz.conditional_cdf(np.inf, mu, sigma, norm), dtype=np.float64)
    prob = (region.probdensity * region.area_sr)[ok]
    use = np.isfinite(total) & (total > 0.0) & (prob > 0.0)
    if not use.any():
        return None
    mu, sigma, norm = mu[use], sigma[use], norm[use]
    weight = prob[use] / total[use]
    weight /= float(np.dot(weight, total[use]))

    def excess(d: float) -> float:
        return float(np.dot(weight, ansatz.conditional_cdf(d, mu, sigma, norm))) - q

    hi = float(np.max(np.abs(mu) + 5.0 * sigma))
    for _ in range(64):
        if excess(hi) >= 0.0:
            break
        hi *= 2.0
    else:
        return None
    return float(brentq(excess, 0.0, hi, xtol=1e-12, rtol=1e-9))


@dataclass(frozen=True)
class _Table:
    """Background table of one cosmology, on a log grid of redshift."""

    ln_dl: NDArray[np.float64]  # ln D_L [Mpc]
    ln_z: NDArray[np.float64]
    ln_f: NDArray[np.float64]  # ln f, f = dN/dD_L [Mpc^2] (unnormalised density)
    ln_n: NDArray[np.float64]  # ln N(< D_L) [Mpc^3], N = integral of f


# Astropy cosmologies are unhashable: tables by repr, and by id for speed (the object is
# kept, so its id cannot be reused).
_TABLES: dict[str, _Table] = {}
_BY_ID: dict[int, tuple[FLRW, _Table]] = {}


def _table(cosmology: FLRW) -> _Table:
    """The cached table of ``cosmology`` (built once, ~0.2 s)."""
    known = _BY_ID.get(id(cosmology))
    if known is not None and known[0] is cosmology:
        return known[1]
    key = repr(cosmology)  # slow (~0.1 ms): only on a new cosmology object
    table = _TABLES.get(key)
    if table is not None:
        _BY_ID[id(cosmology)] = (cosmology, table)
        return table
    z = np.geomspace(_Z_MIN, _Z_MAX, _N_GRID)
    d_m = cosmology.comoving_transverse_distance(z).to_value("Mpc")
    d_h = cosmology.hubble_distance.to_value("Mpc")
    dc_dz = d_h / cosmology.efunc(z)  # d(comoving line-of-sight distance)/dz
    dm_dz = dc_dz * np.sqrt(1.0 + cosmology.Ok0 * (d_m / d_h) ** 2)
    ddl_dz = d_m + (1.0 + z) * dm_dz
    # dN/dz = (dVc/dz) / (1+z) / 4pi = D_M^2 dD_C/dz / (1+z); f = dN/dz / (dD_L/dz).
    dn_dz = d_m**2 * dc_dz / (1.0 + z)
    # Cumulative integral in ln z (trapezoid; exact for the Euclidean start).
    g = dn_dz * z
    steps = 0.5 * (g[1:] + g[:-1]) * np.diff(np.log(z))
    d_l = d_m * (1.0 + z)
    n = d_l[0] ** 3 / 3.0 + np.concatenate(([0.0], np.cumsum(steps)))
    table = _Table(ln_dl=np.log(d_l), ln_z=np.log(z), ln_f=np.log(dn_dz / ddl_dz),
                   ln_n=np.log(n))
    _TABLES[key] = table
    _BY_ID[id(cosmology)] = (cosmology, table)
    return table


def redshift_at_distance(distance_mpc: float, cosmology: FLRW = Planck18) -> float:
    """Redshift at luminosity distance ``distance_mpc`` [Mpc] (table, rel. error < 1e-6).

    Below the table (z < 1e-6) the Hubble law ``z = D H0 / c``; clipped at z = 20.
    Non-finite or non-positive distances give 0.
    """
    if not (math.isfinite(distance_mpc) and distance_mpc > 0.0):
        return 0.0
    t = _table(cosmology)
    ln_d = math.log(distance_mpc)
    if ln_d < t.ln_dl[0]:
        return distance_mpc / cosmology.hubble_distance.to_value("Mpc")
    return math.exp(float(np.interp(ln_d, t.ln_dl, t.ln_z)))


def _ln_f_and_n(ln_d: float, t: _Table) -> tuple[float, float]:
    """``ln f(D)`` and ``ln N(< D)`` at ``ln D`` [ln Mpc]; Euclidean below the table."""
    if ln_d < t.ln_dl[0]:
        return 2.0 * ln_d, 3.0 * ln_d - math.log(3.0)
    return (float(np.interp(ln_d, t.ln_dl, t.ln_f)), float(np.interp(ln_d, t.ln_dl, t.ln_n)))


def ln_p_background_distance(distance_mpc: float, reach_mpc: float | None,
                             cosmology: FLRW = Planck18) -> float:
    """Log density [ln Mpc^-1] of unrelated transients at luminosity distance D.

    ``p_bg(D) = f(D) / N(R)``, ``f = (dV_c / dD_L) / (1 + z)`` (rate uniform in
    comoving volume, diluted by time dilation), ``N(R)`` its integral over
    ``[0, R]``. At small distances ``p_bg -> 3 D^2 / R^3``.

    Parameters
    ----------
    distance_mpc : float
        Luminosity distance of the host [Mpc].
    reach_mpc : float or None
        Reach ``R`` of the background [Mpc] (luminosity distance); raised to
        ``distance_mpc`` when the host lies beyond it or when it is unusable.
    cosmology : astropy.cosmology.FLRW
        Cosmology of the distance-redshift relation (default Planck18).

    Returns
    -------
    float
        ``ln p_bg(D)``; ``-inf`` for a non-finite or non-positive distance.
        Distances beyond z = 20 are clipped to the table's end.
    """
    if not (math.isfinite(distance_mpc) and distance_mpc > 0.0):
        return -math.inf
    reach = distance_mpc
    if reach_mpc is not None and math.isfinite(reach_mpc) and reach_mpc > distance_mpc:
        reach = reach_mpc
    t = _table(cosmology)
    ln_f, _ = _ln_f_and_n(math.log(distance_mpc), t)
    _, ln_n = _ln_f_and_n(math.log(reach), t)
    return ln_f - ln_n


def host_association_probability(
    separation_arcsec: float | None,
    distance_mpc: float | None,
    *,
    settings: DistanceSettings | None = None,
    cosmology: FLRW = Planck18,
) -> float:
    """Probability that the catalogued galaxy is the transient's host.

    ``P = clip(exp(-r / r0), min, max)`` with ``r`` the projected offset [kpc]:
    the separation times the angular-diameter distance ``D_A = D_L / (1 + z)^2``.
    ``exp(-r / r0)`` is the chance that a true host, with offsets distributed
    exponentially with scale ``r0``, lies at least ``r`` away: a compatibility
    score, not a full posterior (which would need the local galaxy density).

    Parameters
    ----------
    separation_arcsec : float or None
        Transient-galaxy separation [arcsec]; None (or negative, NaN) when the
        broker gives the match without an offset.
    distance_mpc : float or None
        Luminosity distance of the galaxy [Mpc].
    settings : DistanceSettings, optional
        ``r0``, floor, ceiling and the no-offset probability (defaults if None).
    cosmology : astropy.cosmology.FLRW
        For the redshift of ``distance_mpc``.

    Returns
    -------
    float
        In ``[host_probability_min, host_probability_max]``; the configured
        no-offset probability without a usable separation or distance.
    """
    s = settings or DistanceSettings()
    usable_sep = separation_arcsec is not None and not math.isnan(separation_arcsec) \
        and separation_arcsec >= 0.0
    usable_d = distance_mpc is not None and math.isfinite(distance_mpc) and distance_mpc > 0.0
    if not (usable_sep and usable_d):
        return s.host_probability_no_offset
    assert separation_arcsec is not None and distance_mpc is not None  # for mypy
    z = redshift_at_distance(distance_mpc, cosmology)
    offset_kpc = separation_arcsec * ARCSEC_RAD * distance_mpc / (1.0 + z) ** 2 * MPC_KPC
    p = math.exp(-offset_kpc / s.host_offset_scale_kpc) if math.isfinite(offset_kpc) else 0.0
    return min(max(p, s.host_probability_min), s.host_probability_max)


def ln_b_distance(p_signal_per_mpc: float, distance_mpc: float | None,
                  reach_mpc: float | None, p_host: float, *,
                  cosmology: FLRW = Planck18) -> float:
    """Distance log Bayes factor ``ln[P_host p(D|x) / p_bg(D) + (1 - P_host)]``.

    Parameters
    ----------
    p_signal_per_mpc : float
        Conditional distance density of the map at the candidate's tile [Mpc^-1];
        non-finite or negative values count as 0.
    distance_mpc : float or None
        Host luminosity distance [Mpc]; None, non-finite or non-positive gives 0.0.
    reach_mpc : float or None
        Reach of the background [Mpc] (see :func:`ln_p_background_distance`).
    p_host : float
        Host association probability, clipped to [0, 1]; NaN counts as 0.
    cosmology : astropy.cosmology.FLRW
        Cosmology of the background.

    Returns
    -------
    float
        Finite, in ``[LN_FLOOR, LN_CEILING]`` (:mod:`mma.match.finite`). 0.0
        (``B_D = 1``) without a distance or with ``p_host = 0``; ``ln(1 - p_host)``
        where the signal density is 0.

    Notes
    -----
    The density ratio ``p(D|x) / p_bg(D)`` is floored at ``exp(LN_FLOOR)``
    (≈ 2.2e-308, the smallest normal double): a host far outside the map's
    distance layers (its density underflows to 0 beyond ~38 sigma) is as strong
    evidence against the host as a double can hold, never -inf. With
    ``P_host < 1`` (always, from :class:`DistanceSettings`) the mixture's second
    term dominates long before the floor, and ``ln B_D -> ln(1 - P_host)``: the
    catalogued galaxy is then taken as a chance neighbour. Only ``P_host = 1``
    reaches the floor itself.
    """
    if distance_mpc is None or not (math.isfinite(distance_mpc) and distance_mpc > 0.0):
        return 0.0
    p_host = 0.0 if math.isnan(p_host) else min(max(p_host, 0.0), 1.0)
    if p_host == 0.0:
        return 0.0
    ln_ratio = LN_FLOOR
    if math.isfinite(p_signal_per_mpc) and p_signal_per_mpc > 0.0:
        ln_ratio = clamp_ln(math.log(p_signal_per_mpc)
                            - ln_p_background_distance(distance_mpc, reach_mpc, cosmology))
    ln_host = math.log(p_host) + ln_ratio
    if p_host == 1.0:
        return clamp_ln(ln_host)
    return clamp_ln(float(np.logaddexp(ln_host, math.log1p(-p_host))))
