"""Figures of a replay's candidates (JSON Lines from ``mma replay --output``).

Prints, for each file: the candidates emitted, those first seen before the event
(the merger or burst), the rank-1 candidates and how many of them are
``pre_existing`` or first seen before the event, the candidates with a distance
term, and P_chance and p_association quantiles. Used for the before/after
figures of the README's O4 replay::

    .venv/bin/mma replay ../shared/corpus/gcn-json/igwn-gwalert/O4-2024-01 \\
        ../shared/corpus/alerts/ztf/fink-2024-01-15 --output after.jsonl
    .venv/bin/python benchmarks/replay_figures.py before.jsonl after.jsonl
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def _before_event(record: dict[str, Any]) -> bool:
    """First seen before the event time (its first detection in the window)."""
    first = _time(record.get("first_detection")) or _time(record.get("alert_time"))
    event = _time(record.get("event_time"))
    return first is not None and event is not None and first < event


def _pre_existing(record: dict[str, Any]) -> bool:
    flags = record.get("flags") or []
    return "pre_existing" in flags or "prior_activity" in flags


def figures(path: Path) -> dict[str, Any]:
    """The figures of one replay output."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    live = [r for r in records if r.get("status") != "retracted"]
    top = [r for r in live if r.get("rank") == 1]
    p = np.array([r["p_chance"] for r in live])
    return {
        "candidates": len(live),
        "first seen before the event": sum(_before_event(r) for r in live),
        "rank-1 candidates": len(top),
        "rank-1 pre_existing": sum(_pre_existing(r) for r in top),
        "rank-1 first seen before the event": sum(_before_event(r) for r in top),
        "rank-1 pre_existing or before the event": sum(
            _pre_existing(r) or _before_event(r) for r in top),
        "events whose rank 1 is old though a new one exists": sum(
            1 for t in top if (_pre_existing(t) or _before_event(t)) and any(
                r["event_id"] == t["event_id"] and not (_pre_existing(r) or _before_event(r))
                for r in live)),
        "with a distance term": sum(abs(r["components"].get("ln_B_D", 0.0)) > 0 for r in live),
        "P_chance < 0.05": int((p < 0.05).sum()),
        "P_chance quartiles": np.quantile(p, [0.25, 0.5, 0.75]).round(3).tolist() if len(p)
        else [],
        "max p_association": max((r.get("p_association") or 0.0 for r in live), default=None),
    }


def main(paths: list[str]) -> None:
    rows = {p: figures(Path(p)) for p in paths}
    keys = list(next(iter(rows.values())))
    width = max(map(len, keys))
    print(f"{'':{width}}  " + "  ".join(f"{Path(p).name:>24}" for p in paths))
    for key in keys:
        print(f"{key:{width}}  " + "  ".join(f"{rows[p][key]!s:>24}" for p in paths))


if __name__ == "__main__":
    main(sys.argv[1:])
