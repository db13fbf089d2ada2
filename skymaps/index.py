"""One vectorised level-29 range index over every active region.

Each :class:`~mma.skymaps.region.Region` stores its tiles as disjoint level-29
NESTED ranges ``[lo, hi)`` sorted by ``lo``, so one region answers a batch of
points with one :func:`numpy.searchsorted`. With many active regions, looping
over them costs one search per region per batch; :class:`RegionIndex` instead
merges the tile boundaries of all regions into one sorted breakpoint array.
Between two consecutive breakpoints lies an *elementary segment* on which the
set of covering tiles is constant; a CSR table lists, per segment, the
``(region key, tile index)`` pairs covering it. A batch of points then needs one
search over all regions, and the matches come out as flat arrays.

Only tiles with credible level at most ``max_credible_level`` (default 0.9, the
correlator's cut) are indexed: an LVK map's 90 % region is usually a small
fraction of its tiles and of its sky, which shrinks the index and the number of
segments shared between overlapping maps. Passing ``None`` indexes every tile.

The index is purely spatial: each region's time window is for the caller to
check on the matches (the correlator knows the windows; the index only knows
integer keys). It is rebuilt lazily on the first :meth:`RegionIndex.match`
after :meth:`RegionIndex.add` or :meth:`RegionIndex.remove` -- cheap enough
(tens of ms for 100 LVK-like maps) to rebuild whenever a notice arrives, far
too dear to rebuild per alert.

Memory is one breakpoint and one CSR pointer per segment (at most twice the
indexed tiles) plus one entry per (segment, covering tile): ``sum over
segments of the overlap depth``, which stays close to the tile count unless
many maps pile up on the same patch of sky.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mma.skymaps.region import Region

__all__ = ("RegionIndex",)

log = logging.getLogger(__name__)

IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class _Tiles:
    """The indexed tiles of one region: ranges and their index into the Region."""

    lo: IntArray
    hi: IntArray
    tile: IntArray


def _ragged_arange(starts: NDArray[np.integer], counts: NDArray[np.integer],
                   dtype: type[np.integer] = np.int64) -> NDArray[np.integer]:
    """Concatenation of ``arange(s, s + c)`` for each start and count, without a loop."""
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=dtype)
    ends = np.cumsum(counts)
    # Step +1 everywhere, then at the first element of each non-empty run jump from the
    # previous run's last value to this run's start.
    step = np.ones(total, dtype=dtype)
    nonempty = counts > 0
    firsts = (ends - counts)[nonempty]
    run_starts = starts[nonempty]
    step[0] = run_starts[0]
    prev_last = (run_starts + counts[nonempty] - 1)[:-1]
    step[firsts[1:]] = run_starts[1:] - prev_last
    return np.cumsum(step, out=step)


class RegionIndex:
    """Level-29 range index over many regions at once (elementary intervals + CSR).

    Parameters
    ----------
    max_credible_level : float or None
        Index only tiles whose credible level (searched probability) is at most
        this; ``None`` indexes every tile. A point in a tile above the cut is
        reported as no match, exactly as the correlator's per-region cut did.

    Examples
    --------
    >>> index = RegionIndex(0.9)
    >>> index.add(event_pk, region)                              # doctest: +SKIP
    >>> point, key, tile = index.match(hpx29(ra_deg, dec_deg))   # doctest: +SKIP
    >>> region.probdensity[tile]                                 # doctest: +SKIP
    """

    def __init__(self, max_credible_level: float | None = 0.9) -> None:
        self.max_credible_level = max_credible_level
        self._tiles: dict[int, _Tiles] = {}
        self._dirty = True
        self._breaks = np.empty(0, dtype=np.int64)  # sorted segment boundaries
        self._ptr = np.zeros(1, dtype=np.int64)  # CSR: entries of segment j at ptr[j]:ptr[j+1]
        # Per entry: the region's slot in _keys and the tile index into the Region.
        # int32 halves the largest arrays (entries, ~4 M for 100 overlapping maps).
        self._keys = np.empty(0, dtype=np.int64)
        self._slot = np.empty(0, dtype=np.int32)
        self._tile = np.empty(0, dtype=np.int32)

    def __len__(self) -> int:
        return len(self._tiles)

    def __contains__(self, key: object) -> bool:
        return key in self._tiles

    @property
    def n_entries(self) -> int:
        """Number of (segment, tile) entries of the built index (0 before the first match)."""
        return len(self._slot)

    @property
    def nbytes(self) -> int:
        """Memory held by the built index and the per-region tile copies [bytes]."""
        own = sum(t.lo.nbytes + t.hi.nbytes + t.tile.nbytes for t in self._tiles.values())
        arrays = (self._breaks, self._ptr, self._keys, self._slot, self._tile)
        return own + sum(a.nbytes for a in arrays)

    def add(self, key: int, region: Region) -> None:
        """Index *region* under the integer *key*, replacing any region of that key.

        Parameters
        ----------
        key : int
            Caller's identifier (e.g. the event's or the region's primary key);
            returned by :meth:`match` for matches in this region.
        region : Region
            The map; its credible levels select the tiles to index.
        """
        if self.max_credible_level is None:
            keep = np.arange(region.n_tiles, dtype=np.int64)
        else:
            keep = np.flatnonzero(region.credible_level <= self.max_credible_level)
        # Region tiles are sorted by lo, so the kept subset is too.
        self._tiles[int(key)] = _Tiles(region.lo[keep], region.hi[keep],
                                       keep.astype(np.int64, copy=False))
        self._dirty = True

    def remove(self, key: int) -> None:
        """Forget the region of *key* (no error if it is not indexed)."""
        if self._tiles.pop(int(key), None) is not None:
            self._dirty = True

    def match(self, ipix29: ArrayLike) -> tuple[IntArray, IntArray, IntArray]:
        """Every (point, region, tile) such that the point lies in the indexed tile.

        Parameters
        ----------
        ipix29 : array_like of int
            Level-29 NESTED indices of the points, e.g. from
            :func:`mma.skymaps.region.hpx29` of RA/Dec [deg].

        Returns
        -------
        point, key, tile : numpy.ndarray of int64
            One entry per match: index into ``ipix29``, region key, and tile
            index into that region's arrays (``region.probdensity[tile]``...).
            Sorted by point; a point in several regions appears once per region.
        """
        if self._dirty:
            self._rebuild()
        ipix = np.asarray(ipix29, dtype=np.int64).ravel()
        # Segment j is [breaks[j], breaks[j + 1]); points outside all of them find
        # j = -1 or j = len(breaks) - 1, both clipped to an empty CSR slice.
        seg = np.searchsorted(self._breaks, ipix, side="right") - 1
        n_seg = len(self._ptr) - 1
        seg = np.where((seg >= 0) & (seg < n_seg), seg, n_seg)
        ptr = np.append(self._ptr, self._ptr[-1])  # segment n_seg: empty
        start = ptr[seg]
        count = ptr[seg + 1] - start
        hits = np.flatnonzero(count)
        if hits.size == 0:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty.copy(), empty.copy()
        count_hit = count[hits]
        entries = _ragged_arange(start[hits], count_hit)
        point = np.repeat(hits.astype(np.int64), count_hit)
        return (point, self._keys[self._slot[entries]],
                self._tile[entries].astype(np.int64))

    def _rebuild(self) -> None:
        """Merge every region's boundaries into segments and fill the CSR table."""
        self._dirty = False
        parts = list(self._tiles.values())
        self._keys = np.array(list(self._tiles), dtype=np.int64)
        sizes = np.array([len(t.lo) for t in parts], dtype=np.int64)
        n_tiles = int(sizes.sum())
        if n_tiles == 0:
            self._breaks = np.empty(0, dtype=np.int64)
            self._ptr = np.zeros(1, dtype=np.int64)
            self._slot = np.empty(0, dtype=np.int32)
            self._tile = np.empty(0, dtype=np.int32)
            return
        if 2 * n_tiles >= 1 << 31:
            raise ValueError(f"{n_tiles} indexed tiles: more than the int32 index holds")
        tile = np.concatenate([t.tile for t in parts]).astype(np.int32)
        slot = np.repeat(np.arange(len(parts), dtype=np.int32), sizes)
        # Each region contributes two sorted runs (lo, hi): a stable sort (timsort)
        # merges runs, much cheaper than sorting 2 n values from scratch.
        bounds = np.concatenate([t.lo for t in parts] + [t.hi for t in parts])
        order = np.argsort(bounds, kind="stable")
        ranked = bounds[order]
        del bounds
        new = np.empty(len(ranked), dtype=bool)
        new[0] = True
        np.not_equal(ranked[1:], ranked[:-1], out=new[1:])
        breaks = ranked[new]
        del ranked
        # Rank of each boundary among the distinct breakpoints, scattered back.
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.cumsum(new, dtype=np.int32) - 1
        del order, new
        first_seg, end_seg = rank[:n_tiles], rank[n_tiles:]
        span = end_seg - first_seg  # segments covered by each tile, >= 1
        entry_seg: NDArray[np.integer]
        if np.all(span == 1):
            # No tile is cut by another map's boundary: one entry per tile.
            entry_seg = first_seg
            entry_of = np.arange(n_tiles, dtype=np.int32)
        else:
            entry_seg = _ragged_arange(first_seg, span, np.int32)
            entry_of = np.repeat(np.arange(n_tiles, dtype=np.int32), span)
        del rank, span
        # Each region's entries come in segment order: timsort merges one run per region.
        by_seg = np.argsort(entry_seg, kind="stable")
        counts = np.bincount(entry_seg, minlength=len(breaks) - 1)
        del entry_seg
        entry_of = entry_of[by_seg]
        del by_seg
        self._breaks = breaks
        self._ptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        self._slot = slot[entry_of]
        self._tile = tile[entry_of]
        log.debug("region index: %d regions, %d tiles, %d segments, %d entries",
                  len(parts), n_tiles, len(breaks) - 1, len(self._slot))
