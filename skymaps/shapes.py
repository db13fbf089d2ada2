"""Analytic localisations (circles, ellipses, Fisher mixtures) as multi-order probability maps.

Ellipses (:func:`ellipse_map`) are a 2-D Gaussian in the Lambert azimuthal
equal-area projection about the centre, which for a circle is exactly the Fisher
density below; asymmetric RA/Dec boxes live in :mod:`mma.skymaps.box` and
:func:`box_map` is re-exported here. The adaptive refinement is shared
(:func:`mma.skymaps.refine.adaptive_map`).

A circle of radius ``r`` at containment ``p`` becomes a 2-D Fisher (von
Mises-Fisher) density on the sphere, the spherical form of the circular Gaussian
(for small radii ``kappa = 1 / sigma**2`` with ``sigma = r / sqrt(-2 ln(1 - p))``):

    rho(theta) = kappa / (2 pi (1 - exp(-2 kappa))) exp(-kappa (1 - cos theta))  [sr^-1]
    P(< theta) = (1 - exp(-kappa (1 - cos theta))) / (1 - exp(-2 kappa))

with ``kappa`` [rad^-2] chosen so that ``P(< r) = p``.

Circle maps are refined adaptively from order 0: a tile is split while its
probability could exceed ``max_tile_prob`` (bounded by the density at the tile
point nearest the centre times the tile area), so tiles are small where the
density is high and the sky far away stays at order 0-3. Each tile's density is
the mean over its 16 sub-pixels two orders down. Accuracy (measured by
tests/skymaps/test_shapes.py for radii 3.5 arcsec to 30 deg, at the poles and
across RA 0, with the default ``max_tile_prob = 5e-5``: 40 000-50 000 tiles
whatever the radius, built in ~0.1 s):

* the credible level averaged over the points at one angular distance from the
  centre matches ``P(< theta)`` to < 1e-3 (typically 3e-4);
* at tile centres it matches to ~2e-3 (worst seen 4e-3, near a pole);
* at an arbitrary point the credible level is that of its whole tile, so it can
  differ from ``P(< theta)`` by up to the probability of the annulus the tile
  spans, < 1.5e-2 here. Reaching 1e-3 point by point would need ~1e6 tiles;
* densities inside the 90 % region are within 2e-3 of ``rho(theta)`` at the
  tile centre, and the area of the ``p`` credible region is the cap area
  ``2 pi (1 - cos r)`` to ~1e-4.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import healpy as hp
import numpy as np
from astropy.table import Table
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq

from mma.errors import InvalidValue
from mma.models import check_position
from mma.skymaps.box import box_map
from mma.skymaps.refine import adaptive_map, separation
from mma.skymaps.region import MAX_ORDER

__all__ = ("box_map", "circle_map", "ellipse_map", "ellipse_sigmas", "fisher_cdf", "fisher_kappa",
           "fisher_mixture_map", "fisher_pdf")

log = logging.getLogger(__name__)

# Above this, exp(-2 kappa) < 1e-17 is below float64 resolution against 1.
_KAPPA_CLOSED_FORM = 20.0


def _one_minus_cos(theta_rad: NDArray[np.float64]) -> NDArray[np.float64]:
    # 2 sin^2(theta/2) keeps full precision at milliarcsecond angles, 1 - cos does not.
    return np.asarray(2.0 * np.square(np.sin(0.5 * theta_rad)))


def fisher_cdf(theta_deg: ArrayLike, kappa: float) -> NDArray[np.float64]:
    """Probability within angular distance ``theta_deg`` [deg] of a Fisher centre."""
    a = _one_minus_cos(np.radians(np.asarray(theta_deg, dtype=np.float64)))
    return np.asarray(-np.expm1(-kappa * a) / -math.expm1(-2.0 * kappa))


def fisher_pdf(theta_deg: ArrayLike, kappa: float) -> NDArray[np.float64]:
    """Fisher density [sr^-1] at angular distance ``theta_deg`` [deg] from the centre."""
    a = _one_minus_cos(np.radians(np.asarray(theta_deg, dtype=np.float64)))
    return np.asarray(kappa / (2 * np.pi * -math.expm1(-2.0 * kappa)) * np.exp(-kappa * a))


def fisher_kappa(radius_deg: float, containment: float) -> float:
    """Concentration ``kappa`` [rad^-2] of the Fisher density with ``P(< r) = p``.

    Closed form ``kappa = -ln(1 - p) / (1 - cos r)`` when ``exp(-2 kappa)`` is
    negligible (every radius up to ~40 deg at 90 %); otherwise the exact equation
    is solved with Brent's method (very wide circles).

    Raises
    ------
    mma.errors.InvalidValue
        ``radius_deg`` outside (0, 180], ``containment`` outside (0, 1), or a
        containment no more than the uniform sky puts in the cap (no solution).
    """
    if not (math.isfinite(radius_deg) and 0.0 < radius_deg <= 180.0):
        raise InvalidValue(f"radius {radius_deg!r} deg outside (0, 180]")
    if not (0.0 < containment < 1.0):
        raise InvalidValue(f"containment {containment!r} outside (0, 1)")
    a = float(_one_minus_cos(np.radians(radius_deg)))
    # A uniform sky puts a/2 in the cap; at or barely above that there is no
    # (numerically) positive kappa.
    if containment - a / 2 <= 1e-9:
        raise InvalidValue(f"{containment:g} within {radius_deg:g} deg is not more "
                           "concentrated than a uniform sky")
    kappa = -math.log1p(-containment) / a
    if kappa >= _KAPPA_CLOSED_FORM:
        return kappa

    def excess(k: float) -> float:
        return -math.expm1(-k * a) / -math.expm1(-2.0 * k) - containment

    # P(< r) grows with kappa from a/2 (uniform) and P(kappa_closed) >= p: a bracket.
    return float(brentq(excess, 1e-12, kappa, xtol=1e-15, rtol=1e-15))


def _mixture_pdf(theta_rad: NDArray[np.float64], kappas: NDArray[np.float64],
                 weights: NDArray[np.float64]) -> NDArray[np.float64]:
    a = _one_minus_cos(theta_rad)
    total = np.zeros_like(a)
    for kappa, weight in zip(kappas, weights, strict=True):
        total += weight * kappa / (2 * np.pi * -math.expm1(-2.0 * kappa)) * np.exp(-kappa * a)
    return total


def fisher_mixture_map(
    ra_deg: float,
    dec_deg: float,
    kappas: Sequence[float],
    weights: Sequence[float],
    *,
    max_order: int = MAX_ORDER,
    max_tile_prob: float = 5e-5,
) -> Table:
    """Multi-order map of a weighted sum of concentric Fisher densities.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Centre [deg, ICRS].
    kappas : sequence of float
        Concentrations [rad^-2] (see :func:`fisher_kappa`), each > 0.
    weights : sequence of float
        Non-negative weights, normalised here (e.g. a core + tail systematic model).
    max_order : int
        Finest HEALPix order used (<= 29).
    max_tile_prob : float
        Largest probability of one tile; sets accuracy and tile count (~2/max_tile_prob).

    Returns
    -------
    astropy.table.Table
        UNIQ (int64) and PROBDENSITY [sr^-1], normalised, whole sky covered.
    """
    check_position(ra_deg, dec_deg)
    k = np.asarray(kappas, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if k.shape != w.shape or k.ndim != 1 or k.size == 0:
        raise InvalidValue("kappas and weights must be non-empty and of one length")
    if not (np.all(np.isfinite(k)) and np.all(k > 0) and np.all(w >= 0) and w.sum() > 0):
        raise InvalidValue("kappas must be positive and weights non-negative")
    w = w / w.sum()
    centre = _unit(ra_deg, dec_deg)

    def density(vec: NDArray[np.float64]) -> NDArray[np.float64]:
        return _mixture_pdf(separation(vec, centre), k, w)

    def bound(vec: NDArray[np.float64], radius: float) -> NDArray[np.float64]:
        # Largest density in the tile: at the point nearest the centre, no closer
        # than the tile centre minus the largest pixel radius at this order.
        return _mixture_pdf(np.maximum(separation(vec, centre) - radius, 0.0), k, w)

    return adaptive_map(density, bound, max_order=max_order, max_tile_prob=max_tile_prob,
                        label="Fisher", meta={"ra_deg": ra_deg, "dec_deg": dec_deg,
                                              "kappas": k.tolist(), "weights": w.tolist()})


def _unit(ra_deg: float, dec_deg: float) -> NDArray[np.float64]:
    return np.asarray(hp.ang2vec(ra_deg, dec_deg, lonlat=True), dtype=np.float64)


def circle_map(
    ra_deg: float,
    dec_deg: float,
    radius_deg: float,
    containment: float = 0.9,
    *,
    max_order: int = MAX_ORDER,
    max_tile_prob: float = 5e-5,
) -> Table:
    """Multi-order Fisher map of a circle holding probability ``containment``.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Centre [deg, ICRS].
    radius_deg : float
        Radius [deg] enclosing probability ``containment``.
    containment : float
        Probability inside ``radius_deg`` (0.9 for most 90 % error circles,
        0.3935 for a 2-D 1-sigma radius).
    max_order, max_tile_prob
        See :func:`fisher_mixture_map`.

    Returns
    -------
    astropy.table.Table
        UNIQ (int64) and PROBDENSITY [sr^-1]; ``meta['kappa']`` [rad^-2].

    Raises
    ------
    mma.errors.InvalidValue
        Bad centre, radius or containment (see :func:`fisher_kappa`).
    """
    kappa = fisher_kappa(radius_deg, containment)
    table = fisher_mixture_map(ra_deg, dec_deg, [kappa], [1.0], max_order=max_order,
                               max_tile_prob=max_tile_prob)
    table.meta.update(radius_deg=radius_deg, containment=containment, kappa=kappa)
    return table


def _ellipse_frame(ra_deg: float, dec_deg: float, pa_deg: float) -> NDArray[np.float64]:
    """Rows: centre, major-axis and minor-axis unit vectors [ICRS].

    North and east are the derivatives of the position along Dec and RA at the
    given RA, so they stay defined at the poles (north points along the meridian
    of ``ra_deg``); the major axis is ``pa_deg`` from north through east.
    """
    ra, dec, pa = np.radians([ra_deg, dec_deg, pa_deg])
    centre = np.array([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    north = np.array([-np.sin(dec) * np.cos(ra), -np.sin(dec) * np.sin(ra), np.cos(dec)])
    east = np.array([-np.sin(ra), np.cos(ra), 0.0])
    major = np.cos(pa) * north + np.sin(pa) * east
    minor = -np.sin(pa) * north + np.cos(pa) * east
    return np.vstack([centre, major, minor])


def _zea(vec: NDArray[np.float64], frame: NDArray[np.float64]) -> NDArray[np.float64]:
    """Lambert azimuthal equal-area coordinates (along major, along minor) of unit vectors.

    The projection keeps the direction from the centre and maps angular distance
    theta to ``2 sin(theta / 2)``: ``(v . e) * sqrt(2 / (1 + v . c))``. The
    antipode (a circle of radius 2) is clipped, where every density here is ~0.
    """
    z = vec @ frame[0]
    scale = np.sqrt(2.0 / np.maximum(1.0 + z, 1e-300))
    return np.column_stack([(vec @ frame[1]) * scale, (vec @ frame[2]) * scale])


def _disk_mass(sigma_a: float, sigma_b: float) -> float:
    """Mass of the plane Gaussian N(0, diag(sigma_a^2, sigma_b^2)) within radius 2.

    Radius 2 is the whole sphere in the equal-area projection. Integrated over
    the azimuth in closed form along each ray, then by the periodic trapezoid rule
    (spectrally accurate for this smooth integrand).
    """
    phi = np.linspace(0.0, 2 * np.pi, 4096, endpoint=False)
    q = np.square(np.cos(phi) / sigma_a) + np.square(np.sin(phi) / sigma_b)
    return float(np.mean(-np.expm1(-2.0 * q) / (q * sigma_a * sigma_b)))


def ellipse_sigmas(semi_major_deg: float, semi_minor_deg: float,
                   containment: float) -> tuple[float, float, float]:
    """Plane Gaussian widths for an ellipse holding probability ``containment``.

    Returns ``(sigma_major, sigma_minor, norm)``: widths in the equal-area
    projection (dimensionless, ~ radians for small ellipses) and the Gaussian's
    mass on the sphere (``norm`` <= 1), such that the projected ellipse with
    semi-axes ``2 sin(a / 2)``, ``2 sin(b / 2)`` holds ``containment`` after
    renormalisation. For small ellipses ``sigma = a / sqrt(-2 ln(1 - p))``.

    Raises
    ------
    mma.errors.InvalidValue
        Axes outside (0, 180] deg or not ordered, containment outside (0, 1), or a
        containment no more than the ellipse's share of a uniform sky.
    """
    a, b = semi_major_deg, semi_minor_deg
    if not (math.isfinite(a) and math.isfinite(b) and 0.0 < b <= a <= 180.0):
        raise InvalidValue(f"ellipse axes {a!r}, {b!r} deg not 0 < b <= a <= 180")
    if not (0.0 < containment < 1.0):
        raise InvalidValue(f"containment {containment!r} outside (0, 1)")
    big_a, big_b = 2 * math.sin(math.radians(a) / 2), 2 * math.sin(math.radians(b) / 2)
    # Equal-area projection: the ellipse covers big_a * big_b / 4 of the sphere.
    if containment - big_a * big_b / 4 <= 1e-9:
        raise InvalidValue(f"{containment:g} within a {a:g} x {b:g} deg ellipse is not "
                           "more concentrated than a uniform sky")

    def excess(c: float) -> float:
        # In-ellipse mass 1 - exp(-c^2/2) over the on-sphere mass, minus p.
        return -math.expm1(-c * c / 2) - containment * _disk_mass(big_a / c, big_b / c)

    c = math.sqrt(-2.0 * math.log1p(-containment))
    if excess(c) > 1e-15:
        c = float(brentq(excess, 1e-6, c, xtol=1e-15, rtol=1e-14))
    sigma_a, sigma_b = big_a / c, big_b / c
    return sigma_a, sigma_b, _disk_mass(sigma_a, sigma_b)


def ellipse_map(
    ra_deg: float,
    dec_deg: float,
    semi_major_deg: float,
    semi_minor_deg: float,
    position_angle_deg: float,
    containment: float = 0.9,
    *,
    max_order: int = MAX_ORDER,
    max_tile_prob: float = 5e-5,
) -> Table:
    """Multi-order map of an error ellipse holding probability ``containment``.

    The density is a 2-D Gaussian in the Lambert azimuthal equal-area projection
    centred on the position, with its axes along the ellipse's::

        rho = exp(-(x^2 / sigma_major^2 + y^2 / sigma_minor^2) / 2)
              / (2 pi sigma_major sigma_minor norm)                       [sr^-1]

    Because the projection is equal-area, no Jacobian appears, and for a circle
    (``a = b``) this *is* the Fisher density of :func:`circle_map`
    (``kappa = 1 / sigma^2``), so it stays a proper density on the sphere however
    large the ellipse. The stated ellipse is the projected ellipse with semi-axes
    ``2 sin(a / 2)`` and ``2 sin(b / 2)`` (exactly ``a`` and ``b`` of arc along the
    axes); it holds exactly ``containment`` (see :func:`ellipse_sigmas`).

    Parameters
    ----------
    ra_deg, dec_deg : float
        Centre [deg, ICRS].
    semi_major_deg, semi_minor_deg : float
        Semi-axes [deg of arc] at probability ``containment``.
    position_angle_deg : float
        Position angle of the major axis [deg], east of north (0 = north-south).
    containment : float
        Probability inside the stated ellipse.
    max_order, max_tile_prob
        See :func:`mma.skymaps.refine.adaptive_map`.

    Returns
    -------
    astropy.table.Table
        UNIQ (int64) and PROBDENSITY [sr^-1]; ``meta`` has the inputs and
        ``sigma_major``, ``sigma_minor`` (projected widths) and ``norm``.

    Raises
    ------
    mma.errors.InvalidValue
        Bad centre, axes, angle or containment.
    """
    check_position(ra_deg, dec_deg)
    if not math.isfinite(position_angle_deg):
        raise InvalidValue(f"position angle {position_angle_deg!r} is not finite")
    sigma_a, sigma_b, norm = ellipse_sigmas(semi_major_deg, semi_minor_deg, containment)
    frame = _ellipse_frame(ra_deg, dec_deg, position_angle_deg)
    peak = 1.0 / (2 * np.pi * sigma_a * sigma_b * norm)

    def mahalanobis2(vec: NDArray[np.float64]) -> NDArray[np.float64]:
        xy = _zea(vec, frame)
        return np.asarray(np.square(xy[:, 0] / sigma_a) + np.square(xy[:, 1] / sigma_b))

    def density(vec: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(peak * np.exp(-0.5 * mahalanobis2(vec)))

    def bound(vec: NDArray[np.float64], radius: float) -> NDArray[np.float64]:
        theta = separation(vec, frame[0])
        near = np.maximum(theta - radius, 0.0)
        # Isotropic bound: Q >= r^2 / sigma_major^2 with r the projected distance.
        q_iso = np.square(2 * np.sin(near / 2) / sigma_a)
        # Lipschitz bound: the projection stretches lengths by at most
        # 1 / cos(theta / 2) and sqrt(Q) grows by at most 1 / sigma_minor per unit.
        far = np.minimum(theta + radius, np.pi * (1 - 1e-9))
        reach = radius / np.cos(far / 2) / sigma_b
        q_lip = np.square(np.maximum(np.sqrt(mahalanobis2(vec)) - reach, 0.0))
        return np.asarray(peak * np.exp(-0.5 * np.maximum(q_iso, q_lip)))

    return adaptive_map(density, bound, max_order=max_order, max_tile_prob=max_tile_prob,
                        label="ellipse", meta={
                            "ra_deg": ra_deg, "dec_deg": dec_deg,
                            "semi_major_deg": semi_major_deg, "semi_minor_deg": semi_minor_deg,
                            "position_angle_deg": position_angle_deg,
                            "containment": containment, "sigma_major": sigma_a,
                            "sigma_minor": sigma_b, "norm": norm})
