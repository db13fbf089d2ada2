"""The alert path offline: Rubin frames parsed, stored and matched, no Kafka, on SQLite.

Usage: ``python benchmarks/alert_path.py [N] [FRACTION_NEAR_LOBES] [--profile]``
(default 5,000 alerts, 3 % near the lobes).

The regions and frames of ``benchmarks/e2e_kafka.py`` (10 LVK-like notices, ~80 KB
LSSTCam frames passing vetting, each a new object): the frames are parsed first, then
``Pipeline.process_alerts`` runs in batches of 500 (``kafka.batch``), timed. Two runs in
one process, each on a fresh database, after a warm-up run, best of two: the match cut
at 0.9 (the baseline: the cut of the per-alert code before candidates) and at the
configured default (0.99), printed as alerts/s and their ratio. ``--profile`` prints
where the default run spends its time.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e_kafka as e2e

from mma.config import load_config
from mma.db.engine import make_engine, upgrade
from mma.handlers import lvk, rubin
from mma.ingest import Pipeline

BATCH = 500


def run(n: int, near: float, cut: str | None, profile: bool) -> float:
    """Alerts/s of the alert path with match cut *cut* (None: the default)."""
    rng = np.random.default_rng(1)
    t_unix = time.time() - 60
    t0 = datetime.fromtimestamp(t_unix, UTC) - timedelta(days=0.5)
    frames = e2e.Frames(t_unix)
    notice_raw, lobes = e2e.notices(rng, t0)
    positions = (e2e.uniform(rng, n - int(n * near))
                 + e2e.near_lobes(rng, lobes, int(n * near)))
    tmp = Path(tempfile.mkdtemp(prefix="mma-alert-path-"))
    env = {"MMA_PATHS__STATE_DIR": str(tmp)}
    if cut is not None:
        env["MMA_SCORING__MAX_CREDIBLE_LEVEL"] = cut
    config = load_config(environ=env, system_file=tmp / "none.toml")
    engine = make_engine(f"sqlite:///{tmp / 'bench.sqlite'}")
    upgrade(engine)
    pipeline = Pipeline(engine, config)
    for raw in notice_raw:
        item = lvk.parse(raw, topic="")
        pipeline.process(lvk, raw, origin="notice", item=item, now=item.issued_time)
    parsed = [pipeline.parse(rubin, frames.make(10**12 + i, ra, dec), origin=f"t:0:{i}",
                             topic="lsst-alerts-v9") for i, (ra, dec) in enumerate(positions)]
    prof = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if prof:
        prof.enable()
    for i in range(0, len(parsed), BATCH):
        pipeline.process_alerts(parsed[i:i + BATCH])
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(r"mma/", 30)
    engine.dispose()
    return n / (time.perf_counter() - start)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 5000
    near = float(args[1]) if len(args) > 1 else 0.03
    run(1000, near, None, False)  # warm-up: imports, first database, numpy's first calls
    base = max(run(n, near, "0.9", False) for _ in range(2))
    default = max(run(n, near, None, False) for _ in range(2))
    if "--profile" in sys.argv:
        run(n, near, None, True)
    print(f"{n} alerts, {near:.0%} near the lobes, batches of {BATCH}")
    print(f"  match cut 0.9 (baseline)   {base:8,.0f} alerts/s")
    print(f"  match cut default (0.99)   {default:8,.0f} alerts/s   ratio {default / base:.2f}")


if __name__ == "__main__":
    main()
