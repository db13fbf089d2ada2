"""RegionIndex against looping Region.lookup per region, on real and synthetic maps."""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path

import numpy as np
import pytest

from mma.skymaps.decode import read_multiorder
from mma.skymaps.index import RegionIndex
from mma.skymaps.region import Region, build_region, hpx29
from mma.skymaps.shapes import circle_map

CORPUS = Path("/work/shared/corpus")
FITS = [
    "skymaps/gw/G1028259_cwb_rrt_small_area.multiorder.fits",
    "skymaps/gw/GW190814_PublicationSamples.multiorder.fits",
    "skymaps/gw/MS181101ab_bayestar.multiorder.fits",
]
EMBEDDED = [
    "gcn-json/igwn-gwalert/O4-2024-01/S240114aj-preliminary-1.json",
    "gcn-json/igwn-gwalert/O4-2024-01/S240112e-preliminary-1.json",
    "gcn-json/igwn-gwalert/O4-2024-01/S240115n-preliminary-1.json",
]
# Overlapping circles (one inside another, partly overlapping, one across RA 0).
CIRCLES = [(30.0, 30.0, 2.0), (31.0, 30.5, 4.0), (30.0, 31.0, 12.0), (359.5, -5.0, 6.0)]

Triple = np.ndarray  # (n, 3) int64 rows (point, key, tile), sorted


@functools.cache
def _regions() -> dict[int, Region]:
    maps = [read_multiorder((CORPUS / path).read_bytes()) for path in FITS]
    for path in EMBEDDED:
        alert = json.loads((CORPUS / path).read_text())
        maps.append(read_multiorder(base64.b64decode(alert["event"]["skymap"])))
    maps += [circle_map(ra, dec, r, 0.9) for ra, dec, r in CIRCLES]
    # Keys need not be dense or ordered.
    return {1000 - 7 * i: build_region(table) for i, table in enumerate(maps)}


def _points(regions: dict[int, Region], seed: int = 0) -> np.ndarray:
    """Random points on the sphere and near the circles, plus every tile's exact edges."""
    rng = np.random.default_rng(seed)
    n = 100_000
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    near = rng.integers(0, len(CIRCLES), 20_000)
    centre = np.array(CIRCLES)[near]
    ra_n = (centre[:, 0] + rng.normal(0, 1, len(near)) * centre[:, 2]) % 360.0
    dec_n = np.clip(centre[:, 1] + rng.normal(0, 1, len(near)) * centre[:, 2], -90, 90)
    # Edges of a sample of tiles per map (all of them would only slow the test).
    pick = [rng.choice(r.n_tiles, min(r.n_tiles, 2000), replace=False) for r in regions.values()]
    edges = [np.concatenate([r.lo[i], r.hi[i], r.hi[i] - 1, r.lo[i] - 1])
             for r, i in zip(regions.values(), pick, strict=True)]
    ipix = np.concatenate([hpx29(ra, dec), hpx29(ra_n, dec_n), *edges])
    return ipix[(ipix >= 0) & (ipix < 12 << 58)]


def _reference(regions: dict[int, Region], ipix: np.ndarray, cut: float | None) -> Triple:
    parts = []
    for key, region in regions.items():
        tile = region.lookup(ipix)
        hit = tile >= 0
        if cut is not None:
            hit[hit] &= region.credible_level[tile[hit]] <= cut
        idx = np.flatnonzero(hit)
        parts.append(np.column_stack([idx, np.full(len(idx), key), tile[idx]]))
    return _as_set(*np.concatenate(parts).T)


def _as_set(point: np.ndarray, key: np.ndarray, tile: np.ndarray) -> Triple:
    rows = np.column_stack([point, key, tile]).astype(np.int64)
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize("cut", [0.9, 0.5, None])
def test_match_equals_lookup_per_region(cut: float | None) -> None:
    regions = _regions()
    index = RegionIndex(max_credible_level=cut)
    for k, region in regions.items():
        index.add(k, region)
    ipix = _points(regions)
    point, key, tile = index.match(ipix)
    assert point.dtype == key.dtype == tile.dtype == np.int64
    assert np.all(np.diff(point) >= 0)  # sorted by point
    got = _as_set(point, key, tile)
    reference = _reference(regions, ipix, cut)
    np.testing.assert_array_equal(got, reference)  # equal, duplicates included
    # The overlapping maps really overlap: some points match several regions.
    assert len(reference) > len(np.unique(reference[:, 0]))


def test_tile_boundaries_are_half_open() -> None:
    region = _regions()[1000 - 7 * len(FITS)]  # first embedded LVK map
    index = RegionIndex(max_credible_level=None)
    index.add(5, region)
    tile = int(region.density_order[0])
    lo, hi = int(region.lo[tile]), int(region.hi[tile])
    point, key, got = index.match([lo, hi - 1, hi])
    assert list(point[got == tile]) == [0, 1]
    assert set(key.tolist()) == {5}


def test_add_remove_replace_and_empty() -> None:
    regions = list(_regions().values())
    index = RegionIndex()
    empty = index.match(np.arange(10))
    assert all(len(a) == 0 for a in empty)
    ipix = _points(_regions(), seed=1)
    index.add(1, regions[-1])
    index.add(2, regions[-2])
    assert len(index) == 2 and 1 in index
    before = _as_set(*index.match(ipix))
    index.add(1, regions[-3])  # replaces key 1
    index.remove(2)
    index.remove(99)  # unknown: no error
    after = _as_set(*index.match(ipix))
    np.testing.assert_array_equal(after, _reference({1: regions[-3]}, ipix, 0.9))
    assert not np.array_equal(after, before)
    index.remove(1)
    assert all(len(a) == 0 for a in index.match(ipix))
    assert index.n_entries == 0


def test_points_outside_every_tile() -> None:
    index = RegionIndex()
    index.add(3, build_region(circle_map(120.0, 10.0, 1.0, 0.9)))
    point, _, _ = index.match(hpx29([300.0, 0.0, 120.0], [-60.0, 89.9, 10.0]))
    assert point.tolist() == [2]
