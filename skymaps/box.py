"""Asymmetric RA/Dec error boxes (IceCube circulars) as multi-order probability maps.

IceCube circulars give a best-fit position with asymmetric errors, e.g.
``RA 77.43 (+0.95, -0.65) deg, Dec 5.72 (+0.50, -0.30) deg (90 % containment)``.
The RA errors are angles of right ascension, so the box's on-sky width scales
with ``cos(dec)``, and the box may cross RA = 0.

Density convention (documented choice, no instrument publishes one): a product
of split normals in the RA offset and the Dec offset, as a density on the sphere:

    rho(ra, dec) = C g(dra) h(ddec)                                   [sr^-1]
    g(t) = exp(-t^2 / (2 s+^2)) for t >= 0, exp(-t^2 / (2 s-^2)) for t < 0

with ``dra`` the RA offset wrapped into (-180, 180] deg, ``ddec = dec - dec0``,
and each side's width the stated error over one common factor ``c``:
``s+ = ra_plus / c``, ``s- = ra_minus / c`` (and likewise for Dec). The
probability of the box ``[ra0 - ra_minus, ra0 + ra_plus] x [dec0 - dec_minus,
dec0 + dec_plus]`` factorises, because ``dOmega = cos(dec) dra ddec``, into an
RA part (closed form, erf) and a Dec part weighted by ``cos(dec)`` (quadrature),
and ``c`` is solved so that it equals ``containment`` exactly. For small boxes
away from the poles ``c = sqrt(2) erfinv(sqrt(p))`` (1.95 at 90 %).

The density is bounded and continuous, also at the poles (where ``cos(dec)``
makes the box's on-sky area vanish rather than its density blow up); the RA
split normal is cut at ``dra = +-180`` deg, which only matters for boxes many
tens of degrees wide.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray
from scipy.integrate import quad
from scipy.optimize import brentq

from mma.errors import InvalidValue
from mma.models import check_position
from mma.skymaps.refine import adaptive_map
from mma.skymaps.region import MAX_ORDER

__all__ = ("box_map", "box_widths")

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
_HALF_PI = 0.5 * np.pi
# Split-normal tails beyond this many widths hold < 1e-170: not integrated.
_TAIL = 28.0


def _half_mass(sigma: float, t: float) -> float:
    """Integral of exp(-x^2 / (2 sigma^2)) over [0, t] (t >= 0) [rad]."""
    return sigma * math.sqrt(math.pi / 2) * math.erf(t / (math.sqrt(2) * sigma))


def _ra_mass(s_plus: float, s_minus: float, lo: float, hi: float) -> float:
    """Integral of the RA split normal over offsets [lo, hi], lo <= 0 <= hi [rad]."""
    return _half_mass(s_plus, hi) + _half_mass(s_minus, -lo)


def _dec_mass(dec0: float, t_plus: float, t_minus: float, lo: float, hi: float) -> float:
    """Integral of h(dec - dec0) cos(dec) over [lo, hi] containing dec0 [rad]."""
    total = 0.0
    for sigma, end, sign in ((t_plus, hi, 1.0), (t_minus, lo, -1.0)):
        # Substitute x = |dec - dec0| / sigma: a smooth integrand on a bounded range,
        # accurate for arcsecond and tens-of-degrees widths alike.
        upper = min(abs(end - dec0) / sigma, _TAIL)
        value, _ = quad(lambda x, s=sigma, g=sign: math.exp(-0.5 * x * x)
                        * math.cos(dec0 + g * s * x), 0.0, upper, epsabs=1e-14, epsrel=1e-12,
                        limit=200)
        total += sigma * value
    return total


def _box_probability(c: float, dec0: float, errors: tuple[float, float, float, float]) -> float:
    ra_plus, ra_minus, dec_plus, dec_minus = errors
    s_p, s_m, t_p, t_m = ra_plus / c, ra_minus / c, dec_plus / c, dec_minus / c
    ra_part = _ra_mass(s_p, s_m, -ra_minus, ra_plus) / _ra_mass(s_p, s_m, -np.pi, np.pi)
    inner = _dec_mass(dec0, t_p, t_m, max(dec0 - dec_minus, -_HALF_PI),
                      min(dec0 + dec_plus, _HALF_PI))
    return ra_part * inner / _dec_mass(dec0, t_p, t_m, -_HALF_PI, _HALF_PI)


def box_widths(dec_deg: float, ra_plus_deg: float, ra_minus_deg: float, dec_plus_deg: float,
               dec_minus_deg: float, containment: float) -> float:
    """The factor ``c`` [dimensionless] with which the box holds ``containment``.

    Each split-normal width is the stated error divided by ``c``.

    Raises
    ------
    mma.errors.InvalidValue
        An error outside (0, 180] deg, containment outside (0, 1), or a box that a
        uniform sky already fills to ``containment``.
    """
    errors_deg = (ra_plus_deg, ra_minus_deg, dec_plus_deg, dec_minus_deg)
    if not all(math.isfinite(e) and 0.0 < e <= 180.0 for e in errors_deg):
        raise InvalidValue(f"box errors {errors_deg!r} deg outside (0, 180]")
    if not (0.0 < containment < 1.0):
        raise InvalidValue(f"containment {containment!r} outside (0, 1)")
    errors = (math.radians(ra_plus_deg), math.radians(ra_minus_deg),
              math.radians(dec_plus_deg), math.radians(dec_minus_deg))
    dec0 = math.radians(dec_deg)

    def excess(c: float) -> float:
        return _box_probability(c, dec0, errors) - containment

    # P(box) grows with c from the box's share of a flat density towards 1.
    low, high = 1e-3, 40.0
    if excess(low) >= 0:
        raise InvalidValue(f"a box of errors {errors_deg} deg at Dec {dec_deg:g} is not "
                           f"more concentrated than {containment:g}")
    return float(brentq(excess, low, high, xtol=1e-13, rtol=1e-13))


def _split_normal(t: FloatArray, s_plus: float, s_minus: float) -> FloatArray:
    sigma = np.where(t >= 0, s_plus, s_minus)
    return np.asarray(np.exp(-0.5 * np.square(t / sigma)))


def _wrap(dra: FloatArray) -> FloatArray:
    """RA offsets [rad] wrapped into [-pi, pi)."""
    return np.asarray(np.mod(dra + np.pi, 2 * np.pi) - np.pi)


def box_map(
    ra_deg: float,
    dec_deg: float,
    ra_plus_deg: float,
    ra_minus_deg: float,
    dec_plus_deg: float,
    dec_minus_deg: float,
    containment: float = 0.9,
    *,
    max_order: int = MAX_ORDER,
    max_tile_prob: float = 5e-5,
) -> Table:
    """Multi-order map of an asymmetric RA/Dec error box holding ``containment``.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Best-fit position [deg, ICRS].
    ra_plus_deg, ra_minus_deg : float
        RA errors [deg of RA, not of arc] towards larger and smaller RA.
    dec_plus_deg, dec_minus_deg : float
        Dec errors [deg] towards north and south.
    containment : float
        Probability inside the box (0.9 for IceCube circulars).
    max_order, max_tile_prob
        See :func:`mma.skymaps.refine.adaptive_map`.

    Returns
    -------
    astropy.table.Table
        UNIQ (int64) and PROBDENSITY [sr^-1]; ``meta`` has the inputs and the
        width factor ``c`` (see the module docstring for the density).

    Raises
    ------
    mma.errors.InvalidValue
        Bad centre, errors or containment.
    """
    check_position(ra_deg, dec_deg)
    c = box_widths(dec_deg, ra_plus_deg, ra_minus_deg, dec_plus_deg, dec_minus_deg,
                   containment)
    ra0, dec0 = math.radians(ra_deg), math.radians(dec_deg)
    s_p, s_m = math.radians(ra_plus_deg) / c, math.radians(ra_minus_deg) / c
    t_p, t_m = math.radians(dec_plus_deg) / c, math.radians(dec_minus_deg) / c
    # The normalisation of g(dra) h(ddec) over the sphere, so the density is in sr^-1.
    norm = _ra_mass(s_p, s_m, -np.pi, np.pi) * _dec_mass(dec0, t_p, t_m, -_HALF_PI, _HALF_PI)

    def density(vec: FloatArray) -> FloatArray:
        ra = np.arctan2(vec[:, 1], vec[:, 0])
        dec = np.arctan2(vec[:, 2], np.hypot(vec[:, 0], vec[:, 1]))
        return np.asarray(_split_normal(_wrap(ra - ra0), s_p, s_m)
                          * _split_normal(dec - dec0, t_p, t_m) / norm)

    def bound(vec: FloatArray, radius: float) -> FloatArray:
        ra = np.arctan2(vec[:, 1], vec[:, 0])
        dec = np.arctan2(vec[:, 2], np.hypot(vec[:, 0], vec[:, 1]))
        # Dec: the tile lies within dec +- radius; h peaks at ddec = 0.
        ddec = np.clip(dec0, dec - radius, dec + radius) - dec0
        h = _split_normal(ddec, t_p, t_m)
        # RA: a cap of this radius spans asin(sin r / cos dec) of RA, all of it
        # when it reaches a pole.
        polar = np.abs(dec) + radius >= _HALF_PI
        half = np.arcsin(np.minimum(np.sin(radius) / np.maximum(np.cos(dec), 1e-300), 1.0))
        d = _wrap(ra - ra0)
        lo, hi = d - half, d + half
        g = np.where((lo <= 0) & (hi >= 0), 1.0,
                     np.maximum(_split_normal(np.where(lo > 0, lo, hi), s_p, s_m),
                                # The far side of the wrap at +-180 deg.
                                np.where(hi > np.pi, _split_normal(hi - 2 * np.pi, s_p, s_m),
                                         np.where(lo < -np.pi,
                                                  _split_normal(lo + 2 * np.pi, s_p, s_m),
                                                  0.0))))
        g = np.where(polar | (half >= np.pi), 1.0, g)
        return np.asarray(g * h / norm)

    return adaptive_map(density, bound, max_order=max_order, max_tile_prob=max_tile_prob,
                        label="box", meta={
                            "ra_deg": ra_deg, "dec_deg": dec_deg, "ra_plus_deg": ra_plus_deg,
                            "ra_minus_deg": ra_minus_deg, "dec_plus_deg": dec_plus_deg,
                            "dec_minus_deg": dec_minus_deg, "containment": containment,
                            "width_factor": c})
