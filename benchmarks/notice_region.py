"""Notice -> indexed Region: latency and peak memory against ligo.skymap's reader alone.

Usage: ``python benchmarks/notice_region.py [--repeat N] [--corpus DIR]``.

Finds the largest LVK multi-order map in the corpus (the base64 ``event.skymap``
of igwn.gwalert JSON notices and ``skymaps/gw/*.multiorder.fits``; the largest
decoded size, ties broken by tile count and then by preferring a real notice),
then measures in one run, median of ``N`` repeats after a warm-up:

* pipeline: base64 decode + :func:`mma.skymaps.decode.read_multiorder`
  (validation, normalisation) + :func:`mma.skymaps.region.build_region`
  (credible levels, level-29 ranges sorted for lookup);
* baseline: ``ligo.skymap.io.read_sky_map(BytesIO(fits), moc=True)`` alone.

Peak memory is the tracemalloc peak of one call (numpy allocations included),
measured separately from the timings so tracing does not slow them. Figures are
printed as absolute values and as ratios pipeline / baseline.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from ligo.skymap.io import read_sky_map

from mma.skymaps.decode import read_multiorder
from mma.skymaps.region import build_region

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def find_largest(corpus: Path) -> tuple[str, str | None, bytes]:
    """(name, base64 text if from a notice, FITS bytes) of the largest LVK map."""
    candidates: list[tuple[int, int, int, str, str | None, bytes]] = []
    for path in sorted((corpus / "gcn-json" / "igwn-gwalert").rglob("*.json")):
        try:
            event = json.loads(path.read_bytes()).get("event") or {}
        except ValueError:
            continue
        text = event.get("skymap") if isinstance(event, dict) else None
        if isinstance(text, str) and text:
            data = base64.b64decode(text)
            candidates.append((len(data), 0, 1, path.name, text, data))
    for path in sorted((corpus / "skymaps" / "gw").glob("*.multiorder.fits")):
        data = path.read_bytes()
        candidates.append((len(data), 0, 0, path.name, None, data))
    if not candidates:
        raise SystemExit(f"no LVK maps under {corpus}")
    top = max(c[0] for c in candidates)
    ties = [c for c in candidates if c[0] == top]
    ranked = sorted(((len(read_multiorder(c[5])), c[2], c[3], c) for c in ties),
                    key=lambda r: (r[0], r[1]), reverse=True)
    _, _, _, best = ranked[0]
    return best[3], best[4], best[5]


def median_ms(func: Callable[[], object], repeat: int) -> float:
    """Median wall time [ms] over ``repeat`` calls after one warm-up."""
    func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def peak_mib(func: Callable[[], object]) -> float:
    """tracemalloc peak [MiB] of one call."""
    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()

    name, text, data = find_largest(args.corpus)
    if text is None:  # a FITS file: benchmark it as if it had come in a notice
        text = base64.b64encode(data).decode()

    def pipeline() -> object:
        return build_region(read_multiorder(base64.b64decode(text)))

    def baseline() -> object:
        return read_sky_map(io.BytesIO(data), moc=True)

    region = build_region(read_multiorder(data))
    print(f"map: {name}: {len(data)} bytes FITS, {len(text)} bytes base64, "
          f"{region.n_tiles} tiles, 90 % area {region.area_deg2(0.9):.0f} deg2")
    table = read_multiorder(data)
    rows = [
        ("base64 + read_multiorder + build_region", pipeline),
        ("ligo.skymap read_sky_map(moc=True) alone", baseline),
        ("  of which base64 decode", lambda: base64.b64decode(text)),
        ("  of which read_multiorder", lambda: read_multiorder(data)),
        ("  of which build_region", lambda: build_region(table)),
    ]
    times = {label: median_ms(func, args.repeat) for label, func in rows}
    peaks = {label: peak_mib(func) for label, func in rows}
    print(f"{'step':44s} {'median ms':>10s} {'peak MiB':>9s} {'time / baseline':>15s}")
    for label, _ in rows:
        print(f"{label:44s} {times[label]:10.2f} {peaks[label]:9.2f} "
              f"{times[label] / times[rows[1][0]]:6.2f}x")
    (p_label, _), (b_label, _) = rows[:2]
    print(f"ratio pipeline / baseline: time {times[p_label] / times[b_label]:.2f}, "
          f"peak memory {peaks[p_label] / peaks[b_label]:.2f} (median of {args.repeat})")


if __name__ == "__main__":
    main()
