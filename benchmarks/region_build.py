"""Time Region construction and point lookup against baselines measured in the same run.

Usage: ``python benchmarks/region_build.py [SKYMAP.fits ...]`` (default: the shared
corpus multi-order maps plus a ~50k-tile Fisher circle). FITS decoding is excluded.

Baselines: ``build_region`` against the structured-array sort that
``ligo.skymap.postprocess.crossmatch`` performs before it can answer anything;
``hpx29 + Region.lookup`` against healpy ``ang2pix`` at NSIDE 2**29 alone.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import healpy as hp
import numpy as np

from mma.skymaps.decode import read_multiorder
from mma.skymaps.region import build_region, hpx29
from mma.skymaps.shapes import circle_map

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "skymaps"
DEFAULT = [
    CORPUS / "gw" / "MS181101ab_bayestar.multiorder.fits",
    CORPUS / "gw" / "GW190814_PublicationSamples.multiorder.fits",
    CORPUS / "grb" / "swift_bat_guano_742338069.multiorder.fits",
]


def best_ms(func: Callable[[], object], repeat: int = 15) -> float:
    """Median wall time [ms] of ``func`` over ``repeat`` calls after one warm-up."""
    func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main(paths: list[Path]) -> None:
    tables = [(path.name, read_multiorder(path.read_bytes())) for path in paths]
    tables.append(("circle 2 deg 90 %", circle_map(30.0, 30.0, 2.0, 0.9, max_tile_prob=4e-5)))
    print(f"{'map':48s} {'tiles':>7s} {'build ms':>9s} {'sort ms':>8s} {'ratio':>6s}")
    for name, table in tables:
        build = best_ms(lambda t=table: build_region(t))
        records = np.asarray(table)
        baseline = best_ms(lambda r=records: np.sort(r, order="PROBDENSITY"))
        print(f"{name:48s} {len(table):7d} {build:9.2f} {baseline:8.2f} {build / baseline:6.2f}")

    region = build_region(tables[-1][1])
    rng = np.random.default_rng(0)
    n = 1_000_000
    ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lookup = best_ms(lambda: region.lookup(hpx29(ra, dec)), repeat=5)
    baseline = best_ms(lambda: hp.ang2pix(1 << 29, ra, dec, nest=True, lonlat=True), repeat=5)
    print(f"lookup of {n} points in {region.n_tiles} tiles: {lookup:.1f} ms "
          f"(ang2pix alone {baseline:.1f} ms, ratio {lookup / baseline:.2f})")


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]] or DEFAULT)
