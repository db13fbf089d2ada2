"""Matching throughput of RegionIndex against crossmatch and a loop over regions, one core.

Usage: ``python benchmarks/match_throughput.py`` (about a minute).

Regions: LVK-like multi-order maps (one or two Fisher lobes, 3-15 deg, random
centres) refined by ``ligo.skymap.moc.bayestar_adaptive_grid`` to 20-50k tiles,
as ``scripts/make_samples.py`` builds its BAYESTAR-style samples. Alerts: half
uniform on the sky, half scattered around the maps' lobes, so that many match.

Figures, all measured in this run:

* alerts/s of ``RegionIndex.match(hpx29(ra, dec))`` for 10,000 alerts (and
  1,000,000 for the index alone) against 1, 10 and 100 active regions;
* the same for a Python loop of ``Region.lookup`` + credible-level cut per region;
* ``ligo.skymap.postprocess.crossmatch`` called per alert (2-D), whose rate per
  region divides by the number of regions;
* build time per region (``build_region``, i.e. sort + credible levels, plus the
  index rebuild), full index rebuild for 10 and 100 regions, and peak memory
  (tracemalloc) of 100 regions plus their index.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from ligo.skymap.moc import bayestar_adaptive_grid
from ligo.skymap.postprocess.crossmatch import crossmatch

from mma.skymaps.index import RegionIndex
from mma.skymaps.region import Region, build_region, hpx29

CUT = 0.9
N_ALERTS = 10_000


def best(func: Callable[[], object], repeat: int = 7) -> float:
    """Median wall time [s] of ``func`` over ``repeat`` calls after one warm-up."""
    func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _xyz(ra_rad: np.ndarray, dec_rad: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(dec_rad) * np.cos(ra_rad), np.cos(dec_rad) * np.sin(ra_rad),
                     np.sin(dec_rad)], axis=-1)


def lvk_like(rng: np.random.Generator) -> tuple[Table, list[tuple[float, float, float]]]:
    """A multi-order map of one or two Fisher lobes; returns the table and its lobes."""
    lobes = [(rng.uniform(0, 360), np.degrees(np.arcsin(rng.uniform(-1, 1))),
              rng.uniform(3, 15)) for _ in range(rng.integers(1, 3))]
    weights = rng.uniform(0.3, 1.0, len(lobes))

    def density(radec: np.ndarray) -> np.ndarray:
        xyz = _xyz(radec[:, 0], radec[:, 1])
        out = np.zeros(len(radec))
        for (ra, dec, sigma), w in zip(lobes, weights, strict=True):
            kappa = 1.0 / np.radians(sigma) ** 2
            centre = _xyz(np.radians(ra), np.radians(dec))
            out += w * kappa / (2 * np.pi) * np.exp(kappa * (xyz @ centre - 1))
        return out

    table = bayestar_adaptive_grid(density, top_nside=16, rounds=int(rng.integers(8, 11)))
    order = np.log2(np.sqrt(table["UNIQ"] // 4)).astype(int)
    area = 4 * np.pi / (12 * 4.0 ** order)
    table["PROBDENSITY"] /= np.sum(table["PROBDENSITY"] * area)
    return Table(table), lobes


def alerts(rng: np.random.Generator, lobes: list[tuple[float, float, float]],
           n: int) -> tuple[np.ndarray, np.ndarray]:
    """Half uniform on the sky, half Gaussian around random lobes [deg]."""
    half = n // 2
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    pick = rng.integers(0, len(lobes), n - half)
    centre = np.array(lobes)[pick]
    ra[half:] = (centre[:, 0] + rng.normal(0, 1, n - half) * centre[:, 2]) % 360
    dec[half:] = np.clip(centre[:, 1] + rng.normal(0, 1, n - half) * centre[:, 2], -90, 90)
    return ra, dec


def loop_lookup(regions: list[Region], ra: np.ndarray, dec: np.ndarray) -> int:
    """Baseline: one searchsorted per region, then the credible-level cut."""
    ipix = hpx29(ra, dec)
    n = 0
    for region in regions:
        tile = region.lookup(ipix)
        hit = tile >= 0
        n += int(np.count_nonzero(region.credible_level[tile[hit]] <= CUT))
    return n


def main() -> None:
    rng = np.random.default_rng(2024)
    t = time.perf_counter()
    maps = [lvk_like(rng) for _ in range(100)]
    tables = [m[0] for m in maps]
    lobes = [lobe for m in maps for lobe in m[1]]
    n_tiles = np.array([len(tab) for tab in tables])
    print(f"100 LVK-like maps made in {time.perf_counter() - t:.1f} s: tiles "
          f"{n_tiles.min()}-{n_tiles.max()} (median {np.median(n_tiles):.0f})")

    # Build cost per region: Region (sort, credible levels) and a one-region index.
    build_s = np.array([best(lambda tab=tab: build_region(tab), 3) for tab in tables[:10]])
    regions = [build_region(tab) for tab in tables]

    def index_of(regs: list[Region]) -> RegionIndex:
        index = RegionIndex(CUT)
        for key, region in enumerate(regs):
            index.add(key, region)
        index.match(np.zeros(1, dtype=np.int64))  # forces the (lazy) build
        return index

    one_s = np.array([best(lambda r=r: index_of([r]), 3) for r in regions[:10]])
    big = int(np.argmax(n_tiles))
    big_s = best(lambda: build_region(tables[big]), 3) + best(lambda: index_of([regions[big]]), 3)
    print(f"build per region: build_region {1e3 * np.median(build_s):.1f} ms + index "
          f"{1e3 * np.median(one_s):.1f} ms (median of 10 maps); largest map "
          f"({n_tiles[big]} tiles) {1e3 * big_s:.1f} ms in all")
    for n in (10, 100):
        rebuild_s = best(lambda n=n: index_of(regions[:n]), 3)
        print(f"full index rebuild, {n} regions: {1e3 * rebuild_s:.0f} ms")

    ra, dec = alerts(rng, lobes, N_ALERTS)
    ra_m, dec_m = alerts(rng, lobes, 1_000_000)
    ipix_m = hpx29(ra_m, dec_m)
    print(f"\n{'regions':>7s} {'index al/s':>12s} {'1M al/s':>12s} {'loop al/s':>12s} "
          f"{'index/loop':>10s} {'matches':>8s} {'entries':>9s}")
    for n in (1, 10, 100):
        index = index_of(regions[:n])
        matched = len(index.match(hpx29(ra, dec))[0])
        assert matched == loop_lookup(regions[:n], ra, dec)
        t_index = best(lambda index=index: index.match(hpx29(ra, dec)))
        t_million = best(lambda index=index: index.match(ipix_m), 3)
        t_loop = best(lambda n=n: loop_lookup(regions[:n], ra, dec))
        print(f"{n:7d} {N_ALERTS / t_index:12,.0f} {1e6 / t_million:12,.0f} "
              f"{N_ALERTS / t_loop:12,.0f} {t_loop / t_index:10.1f} {matched:8d} "
              f"{index.n_entries:9d}")
        if n == 10:
            rate10 = N_ALERTS / t_index

    # crossmatch per alert (2-D map, one coordinate per call), a few alerts only.
    n_cm = 20
    coords = SkyCoord(ra[-n_cm:] * u.deg, dec[-n_cm:] * u.deg)
    start = time.perf_counter()
    for i in range(n_cm):
        crossmatch(tables[0], coordinates=coords[i:i + 1])
    cm_rate = n_cm / (time.perf_counter() - start)
    print(f"\ncrossmatch per alert, 2-D, one region: {cm_rate:.0f} alerts/s "
          f"-> {cm_rate / 10:.1f} alerts/s against 10 regions; RegionIndex is "
          f"x{rate10 / (cm_rate / 10):,.0f} faster there (hpx29 included)")

    # Peak memory of 100 regions plus their index (the regions' own arrays included).
    del index
    tracemalloc.start()
    regs = [build_region(tab) for tab in tables]
    index = index_of(regs)
    index.match(hpx29(ra, dec))
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"100 regions + index: {current / 2**20:.0f} MB held, peak {peak / 2**20:.0f} MB "
          f"(index alone {index.nbytes / 2**20:.0f} MB); target < 500 MB")


if __name__ == "__main__":
    main()
