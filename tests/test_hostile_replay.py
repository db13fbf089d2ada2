"""Every hostile file of every area, replayed together beside valid data.

The generators of ``tests/hostile`` build the cases (nothing binary is kept in
the repository). ``mma replay`` of all of them at once must: exit 0; stay under
the documented memory bound (docs/limits.md); dead-letter each hostile file with
its precise reason; store the valid ones; and leave the valid coincidences
exactly as a replay without the hostile files gives them.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import tests.hostile
from mma.db.engine import make_engine
from mma.db.schema import dead_letters
from mma.errors import BadMessage
from tests.hostile import Case
from tests.memory import measure
from tests.test_replay_stream import SAMPLE

pytestmark = [pytest.mark.slow, pytest.mark.daemon]

#: The documented ceiling of ``mma replay``'s resident memory with default limits.
REPLAY_PEAK_BOUND = 1024 * 2**20

#: Fields that may differ between two replays of the same valid data.
VOLATILE = {"coincidence_id", "published_at", "created_at", "updated_at"}


def all_cases() -> list[Case]:
    """The cases of every generator module in :mod:`tests.hostile`."""
    cases: list[Case] = []
    for info in pkgutil.iter_modules(tests.hostile.__path__):
        module = importlib.import_module(f"tests.hostile.{info.name}")
        if hasattr(module, "cases"):
            cases += module.cases()
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    return cases


def _write(folder: Path, cases: list[Case]) -> None:
    for case in cases:
        (folder / case.name).mkdir(parents=True)
        (folder / case.name / case.filename).write_bytes(case.data)


def _replay(tmp: Path, url: str, folder: Path) -> tuple[list[dict[str, Any]], int]:
    out = tmp / f"{folder.name}.jsonl"
    env = {"MMA_PATHS__STATE_DIR": str(tmp), "MMA_PATHS__CACHE_DIR": str(tmp),
           "PATH": "/usr/bin:/bin"}
    (tmp / "none.toml").write_text("")
    run = measure([sys.executable, "-m", "mma", "--config", str(tmp / "none.toml"), "replay",
                   "--db", url, "--output", str(out), str(SAMPLE), str(folder)],
                  env=env, cwd=str(tmp), timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return rows, run.peak_bytes


def _comparable(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["event_id"], r["object_id"]): {k: v for k, v in r.items() if k not in VOLATILE}
            for r in rows}


def _bad_message_names() -> set[str]:
    names, todo = set(), [BadMessage]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return names


@pytest.fixture(scope="module")
def cases_and_baseline(tmp_path_factory: pytest.TempPathFactory,
                       ) -> tuple[list[Case], Path, list[dict[str, Any]]]:
    """Every case written out, and the output of a replay of the valid ones alone."""
    tmp = tmp_path_factory.mktemp("hostile")
    cases = all_cases()
    _write(tmp / "valid", [c for c in cases if c.outcome != "dead_letter"])
    _write(tmp / "all", cases)
    expected, _ = _replay(tmp, f"sqlite:///{tmp / 'baseline.sqlite'}", tmp / "valid")
    assert expected, "the valid data gives coincidences"
    return cases, tmp / "all", expected


def test_every_hostile_file_together(
        tmp_path: Path, db_url: str,
        cases_and_baseline: tuple[list[Case], Path, list[dict[str, Any]]]) -> None:
    cases, folder, expected = cases_and_baseline
    url = db_url
    got, peak = _replay(tmp_path, url, folder)
    assert peak < REPLAY_PEAK_BOUND, f"peak RSS {peak / 2**20:.0f} MiB"
    # The baseline ran on SQLite: the same candidates and numbers on either database.
    assert _comparable(got) == _comparable(expected)

    engine = make_engine(url)
    with engine.connect() as conn:
        letters = conn.execute(select(dead_letters.c.origin, dead_letters.c.error_type,
                                      dead_letters.c.error)).all()
    engine.dispose()
    precise = _bad_message_names()
    for case in cases:
        mine = [d for d in letters if f"/{case.name}/" in (d.origin or "")]
        if case.outcome == "dead_letter":
            assert mine, f"{case.name}: not dead-lettered"
            assert any(case.reason.lower() in d.error.lower() for d in mine), (
                f"{case.name}: reason {case.reason!r} not in {[d.error for d in mine]}")
            assert {d.error_type for d in mine} <= precise, (
                f"{case.name}: through the catch-all: {[d.error_type for d in mine]}")
        else:
            assert not mine, f"{case.name}: dead-lettered: {[d.error for d in mine]}"
