"""Flat (RING or NESTED) HEALPix maps to multi-order tiles, in bounded memory.

ligo.skymap's ``derasterize`` walks the pixel tree with one Python object per
final tile: a flat NSIDE-1024 map whose siblings never merge becomes 12.6
million objects, about 6 GB. Here the map is merged with numpy, one block of
``4**BLOCK_LEVELS`` NESTED pixels at a time, read straight from the file's
buffer (:meth:`FlatMap.values`). Memory beyond that buffer is one block's values
plus the tiles kept so far. A tile that failed to merge inside a block never
merges later, so the count of such tiles is a lower bound of the final count:
a map with more tiles than ``max_tiles`` is refused as soon as the bound passes
the cap, after reading a few blocks, not the whole map.

Merging rule, as ``derasterize``: four sibling pixels merge into their parent
when each is whole (merged all the way down) and their values are equal in
every column (NaN equal to NaN). PROB [pix^-1] is first turned into PROBDENSITY
[sr^-1] (times ``npix / 4 pi``) the same way, so the tiles are the same.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import healpy as hp
import numpy as np
from numpy.typing import NDArray

from mma.errors import BadSkymap, HostileMessage
from mma.skymaps.fits_table import Column

__all__ = ("BLOCK_LEVELS", "FlatMap", "merge_flat")

log = logging.getLogger(__name__)

BLOCK_LEVELS = 9
"""Blocks of ``4**9 = 262144`` NESTED pixels (8 MB of values for four columns)."""

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class FlatMap:
    """A flat map's columns as views over the file buffer.

    Attributes
    ----------
    nside : int
        HEALPix resolution; ``npix = 12 * nside**2``.
    nest : bool
        NESTED (True) or RING (False) pixel order in the file.
    views : list of numpy.ndarray
        (rows, repeat) views of the columns (PROB first), in file byte order.
    columns : list of Column
        Their descriptions (scale and zero).
    """

    nside: int
    nest: bool
    views: list[NDArray[Any]]
    columns: list[Column]

    @property
    def npix(self) -> int:
        """Number of pixels."""
        return 12 * self.nside * self.nside

    def values(self, start: int, stop: int) -> FloatArray:
        """Values of NESTED pixels ``start..stop-1``: shape (n, columns), float64.

        The first column is PROBDENSITY [sr^-1] (PROB times ``npix / 4 pi``).
        """
        pix = np.arange(start, stop, dtype=np.int64)
        if not self.nest:
            pix = np.asarray(hp.nest2ring(self.nside, pix), dtype=np.int64)
        out = np.empty((stop - start, len(self.views)))
        for j, (view, col) in enumerate(zip(self.views, self.columns, strict=True)):
            repeat = view.shape[1]
            if self.nest and repeat == 1:
                raw = view[start:stop, 0]
            else:
                raw = view[pix // repeat, pix % repeat]
            out[:, j] = raw
            if col.scale != 1.0 or col.zero != 0:
                out[:, j] = out[:, j] * col.scale + col.zero
        out[:, 0] *= self.npix / (4 * np.pi)
        return out


@dataclass
class _Tiles:
    """The tiles kept so far (NUNIQ index and values), and the cap on their number."""

    max_tiles: int
    uniq: list[IntArray] = field(default_factory=list)
    values: list[FloatArray] = field(default_factory=list)
    count: int = 0

    def add(self, order: int, ipix: IntArray, values: FloatArray) -> None:
        self.uniq.append((np.int64(4) << np.int64(2 * order)) + ipix)
        self.values.append(values)
        self.count += len(ipix)
        if self.count > self.max_tiles:
            raise HostileMessage(f"flat sky map has more than {self.max_tiles} tiles after "
                                 f"merging equal siblings (at least {self.count}; cap "
                                 "max_tiles)")


def _merge_levels(values: FloatArray, whole: NDArray[np.bool_], order: int, first: int,
                  levels: int, tiles: _Tiles) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Merge *levels* times NESTED nodes ``first..`` of *order*; keep the nodes that stop.

    Returns the values and wholeness of the nodes left at ``order - levels``.
    """
    for level in range(levels):
        groups = values.reshape(-1, 4, values.shape[1])
        head = groups[:, :1, :]
        same = ((groups == head) | (np.isnan(groups) & np.isnan(head))).all(axis=(1, 2))
        whole4 = whole.reshape(-1, 4)
        merged = same & whole4.all(axis=1)
        stops = np.flatnonzero(whole4 & ~merged[:, None])
        if stops.size:
            tiles.add(order - level, (first >> (2 * level)) + stops, values[stops])
        values = np.ascontiguousarray(groups[:, 0, :])
        whole = merged
    return values, whole


def merge_flat(flat: FlatMap, *, max_tiles: int) -> tuple[IntArray, FloatArray]:
    """Multi-order tiles of a flat map, sorted by NUNIQ index.

    Parameters
    ----------
    flat : FlatMap
        The map.
    max_tiles : int
        Largest accepted number of tiles after merging.

    Returns
    -------
    (uniq, values)
        NUNIQ indices (int64) and values (n, columns): PROBDENSITY [sr^-1] first.

    Raises
    ------
    mma.errors.HostileMessage
        More than ``max_tiles`` tiles (refused as soon as the count is certain).
    """
    order = int(math.log2(flat.nside))
    levels = min(order, BLOCK_LEVELS)
    block = 4**levels
    n_blocks = flat.npix // block
    tiles = _Tiles(max_tiles)
    tops = np.empty((n_blocks, len(flat.views)))
    whole = np.empty(n_blocks, dtype=bool)
    for b in range(n_blocks):
        values, ok = _merge_levels(flat.values(b * block, (b + 1) * block),
                                   np.ones(block, dtype=bool), order, b * block, levels, tiles)
        tops[b], whole[b] = values[0], ok[0]
    # The whole blocks merge further up, to order 0 at most.
    values, ok = _merge_levels(tops, whole, order - levels, 0, order - levels, tiles)
    base = np.flatnonzero(ok)
    if base.size:
        tiles.add(0, base, values[base])
    uniq = np.concatenate(tiles.uniq)
    by_uniq = np.argsort(uniq, kind="stable")
    log.debug("flat NSIDE-%d map merged to %d tiles", flat.nside, len(uniq))
    return uniq[by_uniq], np.concatenate(tiles.values)[by_uniq]


def flat_map(nside: int, nest: bool, views: list[NDArray[Any]],
             columns: list[Column]) -> FlatMap:
    """A :class:`FlatMap` after checking that the columns hold ``12 * nside**2`` pixels.

    Raises
    ------
    mma.errors.BadSkymap
        A column's pixel count differs, or is not that of a HEALPix map.
    """
    counts = {view.shape[0] * view.shape[1] for view in views}
    if len(counts) != 1:
        raise BadSkymap(f"flat sky map columns hold different pixel counts {sorted(counts)}")
    npix = counts.pop()
    if npix != 12 * nside * nside:
        raise BadSkymap(f"flat sky map has {npix} pixels, not 12 * NSIDE^2 for NSIDE {nside}")
    return FlatMap(nside=nside, nest=nest, views=views, columns=columns)
