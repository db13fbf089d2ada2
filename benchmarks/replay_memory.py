"""Peak memory of ``mma replay`` as the input grows: it must not grow with it.

Writes N real-size ZTF alerts (corpus packets with new identities, ~65 kB each,
see ``tests/hostile/ztf_volume.py``) for each N given, replays each folder with
``mma replay`` in a subprocess, and prints its peak resident memory next to a
baseline measured in the same run: ``mma replay`` of an empty folder (the cost
of the imports). The ratio to the input's size is what the old replay, which
held every record, could not get below 1::

    .venv/bin/python benchmarks/replay_memory.py 1000 10000 100000

``--code DIR`` measures another checkout (e.g. a worktree of an older commit).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.hostile.ztf_volume import write_copies  # noqa: E402
from tests.memory import measure  # noqa: E402

MIB = 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10000])
    parser.add_argument("--code", type=Path, help="checkout whose mma to run")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mma-replay-memory-"))
    env = {**os.environ, "MMA_PATHS__STATE_DIR": str(tmp), "MMA_PATHS__CACHE_DIR": str(tmp)}
    if args.code:
        env["PYTHONPATH"] = str(args.code.resolve())
    command = [sys.executable, "-m", "mma", "--config", str(tmp / "none.toml"), "replay"]
    (tmp / "none.toml").write_text("")
    try:
        (tmp / "empty").mkdir()
        base = measure([*command, str(tmp / "empty")], env=env, cwd=str(tmp))
        print(f"baseline (empty folder): peak {base.peak_bytes / MIB:7.0f} MiB")
        print(f"{'alerts':>8} {'input MiB':>10} {'peak MiB':>9} {'above base':>11} "
              f"{'per alert':>10} {'peak/input':>11} {'seconds':>8}")
        for n in args.sizes:
            folder = tmp / f"ztf-{n}"
            size = write_copies(folder, n)
            run = measure([*command, str(folder)], env=env, cwd=str(tmp), timeout=7200)
            if run.returncode:
                print(run.stderr[-2000:])
                raise SystemExit(f"mma replay of {n} alerts exited {run.returncode}")
            above = run.peak_bytes - base.peak_bytes
            print(f"{n:8d} {size / MIB:10.0f} {run.peak_bytes / MIB:9.0f} "
                  f"{above / MIB:10.0f}M {above / n:9.0f}B {run.peak_bytes / size:11.3f} "
                  f"{run.seconds:8.1f}")
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
