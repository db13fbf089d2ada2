"""Multi-order sky regions as sorted level-29 NESTED ranges with credible levels.

A :class:`Region` holds the tiles of a multi-order HEALPix probability map,
each tile as the half-open range ``[lo, hi)`` of the level-29 NESTED pixels it
covers (healpix-alchemy's representation), sorted by ``lo``. A tile of order
``o`` and NESTED index ``i`` is ``lo = i << 2*(29 - o)``, ``hi = (i + 1) << 2*(29 - o)``.
A position (ICRS) is reduced once to its level-29 index with :func:`hpx29`; it lies
in a tile when ``lo <= ipix < hi``, so matching needs no HEALPix call per tile.

Credible levels and searched areas follow ``ligo.skymap.postprocess.crossmatch``
exactly: tiles are ranked by descending probability density [sr^-1] (ties by
descending NUNIQ index, as crossmatch's structured sort leaves them), and a tile's
credible level (searched probability) and searched area are the cumulative
probability and area of all tiles up to *and including* itself.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import healpy as hp
import numpy as np
from ligo.skymap import distance, moc
from numpy.typing import ArrayLike, NDArray

from mma.errors import BadSkymap, InvalidValue
from mma.skymaps.limits import DEFAULT_MAX_TILES, check_tiles

__all__ = ("DEFAULT_MAX_TILES", "MAX_ORDER", "NORMALISATION_TOLERANCE", "Region",
           "build_region", "hpx29", "tile_ranges")

log = logging.getLogger(__name__)

MAX_ORDER = 29
"""Finest HEALPix order: the resolution of the ``[lo, hi)`` ranges (~0.4 mas)."""

NORMALISATION_TOLERANCE = 1e-2
"""Largest accepted ``|total probability - 1|``; maps inside it are rescaled to 1."""

_NSIDE29 = 1 << MAX_ORDER
_NPIX29 = 12 << (2 * MAX_ORDER)
_RESCALE_ABOVE = 1e-12
_SR_TO_DEG2 = np.square(180 / np.pi)
# Area [sr] of one level-29 pixel: pi/3 scaled by a power of two, so span * this
# is exact for every order and equals 4*pi / (12 * 4**order) to rounding.
_AREA29_SR = np.pi / 3 / float(1 << (2 * MAX_ORDER))
# Bits at even positions: a power of two is a power of four iff it has one there.
_EVEN_BITS = np.int64(0x1555555555555555)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def hpx29(ra_deg: ArrayLike, dec_deg: ArrayLike) -> IntArray:
    """Level-29 NESTED HEALPix index of ICRS positions.

    The angles are converted exactly as ``crossmatch`` converts a SkyCoord
    (``theta = pi/2 - radians(dec)``, ``phi = radians(ra)``) and healpy's
    ``ang2pix`` scales by a power of two, so ``hpx29(...) >> 2*(29 - o)`` equals
    ``ang2pix(2**o, ...)`` at every order ``o``, even for points on tile edges.

    Parameters
    ----------
    ra_deg, dec_deg : array_like
        Right ascension and declination [deg, ICRS], broadcastable.

    Returns
    -------
    numpy.ndarray of int64
        Level-29 NESTED pixel index, shape of the broadcast inputs.

    Raises
    ------
    mma.errors.InvalidValue
        A coordinate is not finite or ``|dec| > 90``.
    """
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        raise InvalidValue("non-finite RA or Dec")
    if np.any(np.abs(dec) > 90.0):
        raise InvalidValue("Dec outside [-90, 90] deg")
    theta = 0.5 * np.pi - np.deg2rad(dec)
    phi = np.deg2rad(ra)
    return np.asarray(hp.ang2pix(_NSIDE29, theta, phi, nest=True), dtype=np.int64)


def tile_ranges(uniq: ArrayLike) -> tuple[IntArray, IntArray]:
    """Level-29 ``[lo, hi)`` ranges of NUNIQ pixel indices.

    Raises
    ------
    mma.errors.BadSkymap
        An index is not a valid NUNIQ index of order 0 to 29.
    """
    uniq = np.asarray(uniq, dtype=np.int64)
    # uniq = 4 * 4**order + ipix with ipix < 12 * 4**order, so valid orders 0..29
    # are exactly 4 <= uniq < 4**31.
    if uniq.size and (uniq.min() < 4 or uniq.max() >= 1 << (2 * (MAX_ORDER + 2))):
        raise BadSkymap("NUNIQ index outside orders 0 to 29")
    order, ipix = moc.uniq2nest(uniq)
    shift = 2 * (MAX_ORDER - order.astype(np.int64))
    return ipix << shift, (ipix + 1) << shift


def _range_orders(lo: IntArray, hi: IntArray) -> IntArray:
    """Order of each ``[lo, hi)`` tile; BadSkymap unless every range is a HEALPix tile."""
    span = hi - lo
    ok = (
        (span > 0)
        & ((span & (span - 1)) == 0)
        & ((span & _EVEN_BITS) != 0)
        & ((lo & (span - 1)) == 0)
        & (lo >= 0)
        & (hi <= _NPIX29)
    )
    if not np.all(ok):
        raise BadSkymap(f"{np.count_nonzero(~ok)} ranges are not level-29 HEALPix tiles")
    # span = 2**k exactly, and float64 holds powers of two exactly: frexp gives k + 1.
    log2_span = np.frexp(span.astype(np.float64))[1].astype(np.int64) - 1
    return MAX_ORDER - log2_span // 2


def _density_order(probdensity: FloatArray, uniq: IntArray) -> NDArray[np.intp]:
    """Tile indices by descending density, ties by descending NUNIQ (crossmatch's order).

    crossmatch flips ``np.sort(sky_map, order='PROBDENSITY')``, whose ties fall back
    on UNIQ. A full lexsort costs about twice a plain argsort, so only runs of
    equal densities (zero tails, derasterized plateaus) are re-sorted by UNIQ.
    """
    idx = np.argsort(probdensity)
    ranked = probdensity[idx]
    tied = ranked[1:] == ranked[:-1]
    if tied.any():
        member = np.zeros(len(idx), dtype=bool)
        member[1:] |= tied
        member[:-1] |= tied
        pos = np.flatnonzero(member)
        run = np.cumsum(~np.concatenate(([False], tied))[pos])
        sub = idx[pos]
        idx[pos] = sub[np.lexsort((uniq[sub], run))]
    return idx[::-1]


def _readonly(array: NDArray[Any]) -> NDArray[Any]:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Region:
    """A normalised multi-order probability map, tiles sorted by level-29 range.

    Build it with :func:`build_region` or :meth:`Region.from_tiles`; all arrays have
    one entry per tile and are read-only.

    Attributes
    ----------
    lo, hi : numpy.ndarray of int64
        Level-29 NESTED range ``[lo, hi)`` of each tile; sorted, disjoint.
    probdensity : numpy.ndarray of float64
        Probability density [sr^-1], normalised so the map sums to 1.
    area_sr : numpy.ndarray of float64
        Tile area [sr].
    credible_level : numpy.ndarray of float64
        Searched probability of the tile: probability of all tiles ranked before it
        by descending density, plus its own (crossmatch ``searched_prob``).
    searched_area_deg2 : numpy.ndarray of float64
        Area of those same tiles [deg^2] (crossmatch ``searched_area``).
    density_order : numpy.ndarray of intp
        Tile indices by descending density (crossmatch's ranking).
    distmu, distsigma, distnorm : numpy.ndarray of float64 or None
        Conditional distance ansatz parameters [Mpc, Mpc, Mpc^-2] of 3-D maps.
    """

    lo: IntArray
    hi: IntArray
    probdensity: FloatArray
    area_sr: FloatArray
    credible_level: FloatArray
    searched_area_deg2: FloatArray
    density_order: NDArray[np.intp]
    distmu: FloatArray | None = None
    distsigma: FloatArray | None = None
    distnorm: FloatArray | None = None

    @classmethod
    def from_tiles(
        cls,
        lo: ArrayLike,
        hi: ArrayLike,
        probdensity: ArrayLike,
        distmu: ArrayLike | None = None,
        distsigma: ArrayLike | None = None,
        distnorm: ArrayLike | None = None,
    ) -> Region:
        """Build a Region from stored tiles, recomputing areas and credible levels.

        Parameters
        ----------
        lo, hi : array_like of int
            Level-29 NESTED ranges, in any order (they are sorted by ``lo``).
        probdensity : array_like of float
            Density [sr^-1]; rescaled to total probability 1.
        distmu, distsigma, distnorm : array_like of float, optional
            Distance layers [Mpc, Mpc, Mpc^-2]: all three or none.

        Raises
        ------
        mma.errors.BadSkymap
            Ranges that are not HEALPix tiles or overlap; a negative or non-finite
            density; total probability off 1 by more than ``NORMALISATION_TOLERANCE``.
        """
        # Copies: the Region makes its arrays read-only and must not freeze the caller's.
        lo_a = np.array(lo, dtype=np.int64)
        hi_a = np.array(hi, dtype=np.int64)
        order = _range_orders(lo_a, hi_a)
        uniq = (np.int64(4) << (2 * order)) + (lo_a >> (2 * (MAX_ORDER - order)))
        return cls._build(lo_a, hi_a, uniq, probdensity, (distmu, distsigma, distnorm))

    @classmethod
    def _build(
        cls,
        lo: IntArray,
        hi: IntArray,
        uniq: IntArray,
        probdensity: ArrayLike,
        dist: tuple[ArrayLike | None, ArrayLike | None, ArrayLike | None],
    ) -> Region:
        # +0.0 turns -0.0 into 0.0 so that it ties with 0.0 as crossmatch's sort does.
        dens = np.asarray(probdensity, dtype=np.float64) + 0.0
        n = len(lo)
        if n == 0:
            raise BadSkymap("region has no tiles")
        if hi.shape != (n,) or dens.shape != (n,) or uniq.shape != (n,):
            raise ValueError("lo, hi and probdensity must be 1-D arrays of one length")
        if not np.all(np.isfinite(dens)) or np.any(dens < 0):
            raise BadSkymap("probability density is negative or not finite")
        layers = [None if d is None else np.array(d, dtype=np.float64) for d in dist]
        n_given = sum(d is not None for d in layers)
        if n_given not in (0, 3):
            raise ValueError("give all of distmu, distsigma, distnorm or none")
        if any(d is not None and d.shape != (n,) for d in layers):
            raise ValueError("distance layers must have one value per tile")

        # Maps read from FITS come in NUNIQ order; a stable (tim)sort of lo is then a
        # merge of one sorted run per order, much cheaper than a quicksort.
        if np.any(lo[1:] <= lo[:-1]):
            by_lo = np.argsort(lo, kind="stable")
            lo, hi, uniq, dens = lo[by_lo], hi[by_lo], uniq[by_lo], dens[by_lo]
            layers = [None if d is None else d[by_lo] for d in layers]
        if np.any(hi[:-1] > lo[1:]):
            raise BadSkymap("tiles overlap")

        area = (hi - lo) * _AREA29_SR
        ranked = _density_order(dens, uniq)
        d_area = area[ranked]
        cum_prob = np.cumsum(dens[ranked] * d_area)
        total = cum_prob[-1]
        if not abs(total - 1.0) <= NORMALISATION_TOLERANCE:
            raise BadSkymap(f"total probability {total:.6g} is not 1")
        # Rescale only when it matters, so that rebuilding a Region from its own
        # stored tiles (Region.from_tiles) reproduces it bit for bit.
        if abs(total - 1.0) > _RESCALE_ABOVE:
            dens = dens / total
            cum_prob /= total
        credible = np.empty(n)
        credible[ranked] = cum_prob
        searched = np.empty(n)
        searched[ranked] = np.cumsum(d_area) * _SR_TO_DEG2
        mu, sigma, norm = (None if d is None else _readonly(d) for d in layers)
        return cls(
            lo=_readonly(lo), hi=_readonly(hi), probdensity=_readonly(dens),
            area_sr=_readonly(area), credible_level=_readonly(credible),
            searched_area_deg2=_readonly(searched), density_order=_readonly(ranked),
            distmu=mu, distsigma=sigma, distnorm=norm,
        )

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return len(self.lo)

    @property
    def total_probability(self) -> float:
        """Sum of density x area over tiles (1 to rounding, by construction)."""
        return float(self.credible_level[self.density_order[-1]])

    @property
    def has_distance(self) -> bool:
        """True if the map carries DISTMU/DISTSIGMA/DISTNORM layers."""
        return self.distmu is not None

    def lookup(self, ipix29: ArrayLike) -> IntArray:
        """Tile index of each level-29 NESTED pixel, or -1 where no tile covers it.

        Parameters
        ----------
        ipix29 : array_like of int
            Level-29 NESTED indices, e.g. from :func:`hpx29`.

        Returns
        -------
        numpy.ndarray of int64
            Index into this Region's arrays, or -1.
        """
        ipix = np.asarray(ipix29, dtype=np.int64)
        idx = np.searchsorted(self.lo, ipix, side="right") - 1
        inside = (idx >= 0) & (ipix < self.hi[np.maximum(idx, 0)])
        return np.where(inside, idx, -1).astype(np.int64)

    def locate(self, ra_deg: ArrayLike, dec_deg: ArrayLike) -> IntArray:
        """Tile index of ICRS positions [deg], or -1 outside the map."""
        return self.lookup(hpx29(ra_deg, dec_deg))

    def area_deg2(self, p: float) -> float:
        """Area [deg^2] of the smallest region holding probability ``p``.

        Exactly crossmatch's ``contour_areas``: linear interpolation of cumulative
        area against cumulative probability over the tiles ranked by density, from
        (0, 0), so a threshold falling inside a tile takes the matching fraction of
        its area; ``p`` beyond the total gives the whole sky.
        """
        ranked = self.density_order
        prob = np.concatenate(([0.0], self.credible_level[ranked]))
        area = np.concatenate(([0.0], self.searched_area_deg2[ranked]))
        return float(np.interp(p, prob, area, right=4 * 180**2 / np.pi))

    def without_distance(self) -> Region:
        """The same region without distance layers (for maps of other messengers)."""
        if not self.has_distance:
            return self
        return dataclasses.replace(self, distmu=None, distsigma=None, distnorm=None)

    def distance_support(self) -> tuple[NDArray[np.bool_] | None, float | None]:
        """Tiles whose distance layers carry information, and the map's reach [Mpc].

        LVK maps mark tiles without distance information with DISTMU = +inf (or
        DISTSIGMA/DISTNORM of 0). The reach, the farthest informative tile's
        DISTMU + 4 DISTSIGMA, bounds a volume-uniform distance background.

        Returns
        -------
        (mask or None, reach_mpc or None)
            None, None without distance layers; reach None when no tile informs.
        """
        if self.distmu is None or self.distsigma is None or self.distnorm is None:
            return None, None
        ok = (np.isfinite(self.distmu) & np.isfinite(self.distsigma) & (self.distsigma > 0)
              & np.isfinite(self.distnorm) & (self.distnorm > 0))
        if not ok.any():
            return ok, None
        return ok, float(np.max(self.distmu[ok] + 4.0 * self.distsigma[ok]))

    def distance_pdf(self, tile_idx: ArrayLike, distance_mpc: ArrayLike) -> FloatArray:
        """Conditional distance density p(D | tile) [Mpc^-1] of the distance ansatz.

        Parameters
        ----------
        tile_idx : array_like of int
            Tile indices (e.g. from :meth:`lookup`); -1 gives NaN.
        distance_mpc : array_like of float
            Luminosity distance [Mpc], broadcast against ``tile_idx``.

        Raises
        ------
        ValueError
            The map has no distance layers.
        """
        if self.distmu is None or self.distsigma is None or self.distnorm is None:
            raise ValueError("this sky map has no distance layers")
        idx = np.asarray(tile_idx, dtype=np.int64)
        safe = np.where(idx >= 0, idx, 0)
        pdf = distance.conditional_pdf(
            np.asarray(distance_mpc, dtype=np.float64),
            self.distmu[safe], self.distsigma[safe], self.distnorm[safe],
        )
        return np.asarray(np.where(idx >= 0, pdf, np.nan), dtype=np.float64)


def build_region(table: Any, *, max_tiles: int = DEFAULT_MAX_TILES) -> Region:
    """Build a :class:`Region` from a multi-order table.

    Parameters
    ----------
    table : astropy.table.Table
        Columns UNIQ and PROBDENSITY [sr^-1], optionally DISTMU, DISTSIGMA,
        DISTNORM, as returned by :func:`mma.skymaps.decode.read_multiorder` or
        :func:`mma.skymaps.shapes.circle_map`.
    max_tiles : int
        Largest accepted number of tiles (rows of *table*).

    Raises
    ------
    mma.errors.HostileMessage
        More than *max_tiles* tiles.
    mma.errors.BadSkymap
        Invalid NUNIQ indices, overlapping tiles, bad or unnormalised densities.
    """
    check_tiles(len(table), max_tiles)
    uniq = np.asarray(table["UNIQ"], dtype=np.int64)
    lo, hi = tile_ranges(uniq)
    names = ("DISTMU", "DISTSIGMA", "DISTNORM")
    has_dist = all(name in table.colnames for name in names)
    dist = tuple(table[name] if has_dist else None for name in names)
    return Region._build(lo, hi, uniq, table["PROBDENSITY"], (dist[0], dist[1], dist[2]))
