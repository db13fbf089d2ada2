"""Coincidences as users read them: the JSON records of docs/candidate.md and a summary table."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import IO, Any

from sqlalchemy import Connection

from mma.db.summary import counts as counts_of
from mma.db.summary import event_regions, stored_coincidences
from mma.printable import printable

LIVE = ("active", "updated")


def records(conn: Connection, *, include_test: bool = False,
            include_vetoed: bool = False) -> list[dict[str, Any]]:
    """Coincidence records, best first: live ones by P_chance then ln B, then retracted.

    Vetoed coincidences are kept in the database with their reasons but are
    not emitted unless *include_vetoed*; test/mock events likewise.
    """
    out = []
    for row in stored_coincidences(conn):
        if row.vetoed and not include_vetoed:
            continue
        if "test" in row.payload["flags"] and not include_test:
            continue
        out.append(record_of(row.payload, row.status, row.rank, row.revision))
    out.sort(key=_best_first)
    return out


def is_pair(record: Mapping[str, Any]) -> bool:
    """An event x event coincidence (not a candidate)."""
    return record.get("coincidence_type") == "event-event"


def _best_first(r: Mapping[str, Any]) -> tuple[Any, ...]:
    """Live before retracted; event x event pairs first (by space-time FAR, else
    temporal), then candidates by P_chance and ln B."""
    if is_pair(r):
        far = r.get("space_time_far_hz")
        far = r.get("temporal_far_hz") if far is None else far
        return (r["status"] not in LIVE, 0, math.inf if far is None else far, 0.0,
                r["coincidence_id"])
    return (r["status"] not in LIVE, 1, r["p_chance"], -r["log_bayes_factor"],
            r["coincidence_id"])


def record_of(payload: Mapping[str, Any], status: str, rank: int | None,
              revision: int = 1) -> dict[str, Any]:
    """The contract record of a stored candidate (payload plus revision, kind, status, rank).

    Candidates folded from schema version 1 keep their old fields until re-scored.
    """
    # What consumers are told: a retraction, or the first (new) or a later (update) record.
    kind = "retraction" if status == "retracted" else "new" if revision == 1 else "update"
    return _ordered({**payload, "revision": revision, "kind": kind, "status": status,
                     "rank": rank})


FIELDS = ("schema_version", "coincidence_id", "revision", "kind", "status", "event_id",
          "aliases", "messenger", "event_class", "instrument", "event_time", "significance",
          "region_version", "object_id", "survey", "ra", "dec", "position_scatter_arcsec",
          "detections", "n_detections", "n_vetoed_detections", "first_detection",
          "first_detection_after_t0", "last_detection", "n_prior_detections",
          "history_source", "peak_magnitude", "peak_band", "rise_rate_mag_per_day",
          "fade_rate_mag_per_day", "dt_days", "prob_density_sr", "credible_level",
          "searched_area_deg2", "log_bayes_factor", "components", "p_chance", "flags",
          "changes", "rank")


def _ordered(record: Mapping[str, Any]) -> dict[str, Any]:
    """The contract's field order first, anything extra after."""
    out = {key: record[key] for key in FIELDS if key in record}
    out.update({k: v for k, v in record.items() if k not in out})
    return out


def write_jsonl(rows: Iterable[Mapping[str, Any]], fh: IO[str]) -> int:
    """Write one JSON object per line; return the count."""
    n = 0
    for row in rows:
        fh.write(json.dumps(row, allow_nan=False, default=_refuse) + "\n")
        n += 1
    return n


def _refuse(value: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {value!r}")


def summary(conn: Connection, rows: list[dict[str, Any]], counts: Mapping[str, int]) -> str:
    """A readable table: one line per event with its best candidate, then the totals.

    Stored strings (event ids, messengers, object ids) are shown through
    :func:`mma.printable.printable`: a row stored before its handler validated
    ids cannot break the table's lines or send controls to the terminal.
    """
    lines = []
    by_event: dict[str, list[dict[str, Any]]] = {}
    pairs = [row for row in rows if is_pair(row) and row["status"] in LIVE]
    for row in rows:
        if row["status"] in LIVE and not is_pair(row):
            by_event.setdefault(row["event_id"], []).append(row)
    region_rows = event_regions(conn)
    header = (f"{'event':<14} {'msgr':<5} {'v':>2} {'A90 deg2':>9} {'cands':>5}  "
              f"{'best object':<14} {'CL':>5} {'lnB':>6} {'P_chance':>8}")
    lines += [header, "-" * len(header)]
    for ev in region_rows:
        cands = by_event.get(ev.event_id, [])
        best = min(cands, key=lambda r: r["rank"] or math.inf) if cands else None
        status = " (retracted)" if ev.status == "retracted" else ""
        lines.append(
            f"{printable(ev.event_id):<14} {printable(ev.messenger):<5} {ev.version:>2} "
            f"{ev.area90_deg2:>9.0f} {len(cands):>5}  "
            + (f"{printable(best['object_id']):<14} {best['credible_level']:>5.3f} "
               f"{best['log_bayes_factor']:>6.2f} {best['p_chance']:>8.3g}" if best else
               f"{'-':<14} {'':>5} {'':>6} {'':>8}")
            + status)
    lines += _pair_lines(pairs)
    stored = counts_of(conn)
    totals = {
        "notices": stored["notices"], "alerts": stored["alerts"],
        "candidates emitted": len(rows) - len(pairs),
        "event x event coincidences": len(pairs),
        "vetoed (kept, not emitted)": stored["vetoed"],
        "dead letters": stored["dead letters"],
        "duplicates skipped": counts.get("duplicate", 0),
        "ignored (of no interest)": counts.get("ignored", 0),
    }
    lines.append("")
    lines.append("  ".join(f"{k}: {v}" for k, v in totals.items()))
    return "\n".join(lines)


def _pair_lines(pairs: list[dict[str, Any]]) -> list[str]:
    """One line per live event x event coincidence: the two events, dt, I, FARs."""
    if not pairs:
        return []

    def num(value: Any, spec: str) -> str:
        return format(value, spec) if isinstance(value, int | float) else "-"

    lines = ["", f"{'event':<14} {'x event':<22} {'dt s':>8} {'overlap I':>10} "
                 f"{'FAR_t Hz':>9} {'FAR_st Hz':>9}"]
    for p in pairs:
        other = p.get("other") or {}
        lines.append(f"{printable(str(p.get('event_id'))):<14} "
                     f"{printable(str(other.get('event_id'))):<22} {num(p.get('dt_s'), '+8.2f')} "
                     f"{num(p.get('overlap_integral'), '10.3g')} "
                     f"{num(p.get('temporal_far_hz'), '9.2g')} "
                     f"{num(p.get('space_time_far_hz'), '9.2g')}")
    return lines
