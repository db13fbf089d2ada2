"""The alert path offline: Rubin frames parsed, stored and matched, no Kafka, both databases.

Usage: ``python benchmarks/alert_path.py [N] [FRACTION_NEAR_LOBES] [--profile]``
(default 10,000 alerts, 3 % near the lobes; starts its own PostgreSQL through the test
harness, :func:`tests.services.postgres.postgres_from_env`).

The regions and frames of ``benchmarks/e2e_kafka.py`` (10 LVK-like notices, ~80 KB
LSSTCam frames passing vetting, each a new object). Per database, on a fresh database
each time, after a warm-up run, best of two: ``Pipeline.process_alerts`` in batches of
500 (the baseline: ``kafka.batch`` before it was raised) and of the configured
``kafka.batch``, timed from the frames' bytes (parsing included) to the last commit,
printed as alerts/s, per-alert cost of parsing and of storing and matching, and the
ratio. ``--profile`` prints where the configured run on PostgreSQL spends its time.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import e2e_kafka as e2e  # noqa: E402

from mma.config import load_config  # noqa: E402
from mma.db.engine import make_engine, upgrade  # noqa: E402
from mma.handlers import lvk, rubin  # noqa: E402
from mma.ingest import Pipeline  # noqa: E402
from tests.services.postgres import postgres_from_env  # noqa: E402

BASELINE_BATCH = 500


def frames(n: int, near: float) -> tuple[list[bytes], list[bytes]]:
    """The 10 notices and *n* frames, a fraction *near* inside the regions."""
    rng = np.random.default_rng(1)
    t_unix = time.time() - 60
    made = e2e.Frames(t_unix)
    notice_raw, lobes = e2e.notices(rng, datetime.fromtimestamp(t_unix, UTC)
                                    - timedelta(days=0.5))
    positions = (e2e.uniform(rng, n - int(n * near))
                 + e2e.near_lobes(rng, lobes, int(n * near)))
    return notice_raw, [made.make(10**12 + i, ra, dec) for i, (ra, dec) in enumerate(positions)]


def run(url: str, notices: list[bytes], raws: list[bytes], batch: int,
        profile: bool = False) -> tuple[float, float]:
    """(parse, store and match) time per alert [s] on a fresh database at *url*."""
    tmp = Path(tempfile.mkdtemp(prefix="mma-alert-path-"))
    config = load_config(environ={"MMA_PATHS__STATE_DIR": str(tmp)},
                         system_file=tmp / "none.toml")
    engine = make_engine(url)
    upgrade(engine)
    pipeline = Pipeline(engine, config)
    for raw in notices:
        item = lvk.parse(raw, topic="")
        pipeline.process(lvk, raw, origin="notice", item=item, now=item.issued_time)
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    start = time.perf_counter()
    parsed = [pipeline.parse(rubin, raw, origin=f"t:0:{i}", topic="lsst-alerts-v9")
              for i, raw in enumerate(raws)]
    parsed_at = time.perf_counter()
    for i in range(0, len(parsed), batch):
        pipeline.process_alerts(parsed[i:i + batch])
    end = time.perf_counter()
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(r"mma/", 30)
    engine.dispose()
    return (parsed_at - start) / len(raws), (end - parsed_at) / len(raws)


def compare(db: str, url_of: Callable[[], str], notices: list[bytes], raws: list[bytes],
            batch: int, profile: bool) -> None:
    """Print the baseline batch against the configured one on one database."""
    run(url_of(), notices, raws[:1000], batch)  # warm-up: imports, numpy's first calls
    got = {}
    for size in (BASELINE_BATCH, batch):
        got[size] = min((run(url_of(), notices, raws, size) for _ in range(2)), key=sum)
    print(f"{db}: {len(raws):,} alerts")
    for size, (parse, store) in got.items():
        rate = 1 / (parse + store)
        ratio = rate * sum(got[BASELINE_BATCH])
        print(f"  batch {size:5d}  {rate:8,.0f} alerts/s   parse {parse * 1e6:4.0f} us"
              f"   store+match {store * 1e6:4.0f} us   ratio {ratio:.2f}")
    if profile:
        run(url_of(), notices, raws, batch, profile=True)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 10_000
    near = float(args[1]) if len(args) > 1 else 0.03
    notices, raws = frames(n, near)
    batch = int(load_config(environ={}).section("kafka")["batch"])
    tmp = Path(tempfile.mkdtemp(prefix="mma-alert-path-"))
    count = iter(range(10**6))
    compare("SQLite", lambda: f"sqlite:///{tmp / str(next(count))}.sqlite", notices, raws,
            batch, profile=False)
    server = postgres_from_env()
    server.start()
    try:
        compare("PostgreSQL", server.create_database, notices, raws, batch,
                profile="--profile" in sys.argv)
    finally:
        server.stop()
        server.cleanup()


if __name__ == "__main__":
    main()
