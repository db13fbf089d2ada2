"""Commands that look at what the database holds.

``mma events``, ``candidates``, ``coincidences``, ``show``, ``outbox``, ``dead-letters``
and ``status`` print aligned tables (every cell through :mod:`mma.printable`), or
with ``--json`` JSON Lines (one object for ``show`` and ``status``) for
scripts. Times are UTC ISO 8601 to the second; P_chance is shown to 2
significant digits, ln B to 1 decimal, credible levels to 2.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mma.cli.common import (
    UsageError,
    add_db,
    add_json,
    print_json,
    print_jsonl,
    print_table,
    read_engine,
)
from mma.config import Config
from mma.printable import printable

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from mma.db.queries import CandidateRow, EventRow

SHORT_ID = 8  # characters of a coincidence id shown in tables (and the least a prefix needs)


def when(value: datetime | None) -> str:
    """A time as UTC ISO 8601 to the second (``Z``); empty for None."""
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def num(value: float | None, spec: str) -> str:
    """*value* formatted with *spec*; empty for None."""
    return "" if value is None else format(value, spec)


def p2(value: float | None) -> str:
    """A probability to 2 significant digits."""
    return num(value, ".2g")


def find_event(conn: Connection, name: str) -> int:
    """The event known as *name* (id or alias); UsageError when none is."""
    from mma.db.queries import find_event_pk

    pk = find_event_pk(conn, name)
    if pk is None:
        raise UsageError(f"no event {name!r} in the database (mma events lists them)")
    return pk


def find_candidate(conn: Connection, given: str) -> str:
    """The full coincidence id of *given* (the id, or a prefix of >= 8 characters)."""
    from mma.db.queries import find_coincidences

    found = find_coincidences(conn, given) if len(given) >= SHORT_ID else []
    if len(given) < SHORT_ID and not found:
        raise UsageError(f"{given!r}: give a coincidence id or at least {SHORT_ID} of its "
                         "first characters")
    if not found:
        raise UsageError(f"no candidate {given!r} in the database")
    if len(found) > 1 and found[0] != given:
        raise UsageError(f"{given!r} is ambiguous: {', '.join(found)}, ...")
    return found[0]


def _event_cells(e: EventRow) -> list[Any]:
    return [e.event_id, f"{e.messenger}/{e.event_class or '?'}", e.instrument,
            when(e.event_time), e.status, "muted" if e.muted_at else "",
            num(e.area90_deg2, ",.1f"), e.n_live, p2(e.best_p_chance)]


EVENT_HEADERS = ("event", "messenger/class", "instrument", "event time", "status", "muted",
                 "90% deg²", "candidates", "best P_chance")


def cmd_events(args: argparse.Namespace, config: Config) -> int:
    """List the events, newest first: status, current region's 90 % area, candidates."""
    from mma.db.queries import list_events

    with read_engine(config, args.db).connect() as conn:
        found = list_events(conn, datetime.now(UTC), active_only=args.active)
    if args.json:
        print_jsonl([asdict(e) for e in found])
    else:
        print_table(EVENT_HEADERS, [_event_cells(e) for e in found])
    return 0


def candidate_cells(c: CandidateRow) -> list[Any]:
    """A row of ``mma candidates``."""
    peak = "" if c.peak_magnitude is None else f"{c.peak_magnitude:.2f} {c.peak_band or ''}"
    return [c.rank or "", c.coincidence_id[:SHORT_ID], c.object_id, c.survey,
            num(c.dt_days, "+.3f"), num(c.credible_level, ".2f"), f"{c.log_bayes_factor:.1f}",
            p2(c.p_chance), ",".join(c.flags), peak.strip(), c.status, c.revision]


CANDIDATE_HEADERS = ("rank", "id", "object", "survey", "Δt d", "CL", "ln B", "P_chance",
                     "flags", "peak mag", "status", "rev")


def cmd_candidates(args: argparse.Namespace, config: Config) -> int:
    """List an event's candidates: live ones by rank, then retracted and vetoed ones."""
    from mma.db.queries import list_candidates

    with read_engine(config, args.db).connect() as conn:
        found = list_candidates(conn, find_event(conn, args.event))
    if args.json:
        print_jsonl([{k: v for k, v in asdict(c).items() if k != "payload"} for c in found])
    else:
        print_table(CANDIDATE_HEADERS, [candidate_cells(c) for c in found])
    return 0


def _far_cell(value: Any) -> str:
    """A FAR [Hz] as ``3.7e-22 Hz (1 per 8.56e+13 yr)``; empty when not stated."""
    from mma.db.queries import number
    from mma.emitters.joint_message import far_per_years

    rate = number(value)
    return "" if rate is None else f"{rate:.2g} Hz ({far_per_years(rate)})"


def coincidence_cells(found: Mapping[str, Any]) -> list[Any]:
    """A row of ``mma coincidences``: the pair seen from the event asked about."""
    from mma.db.queries import number
    from mma.emitters.joint_message import clean, counterpart, pair_label

    p = found["payload"]
    other, dt = counterpart(p, primary=bool(found["primary"]))
    return [clean(other.get("event_id"), 64), pair_label(p), num(dt, "+.1f"),
            num(number(p.get("overlap_integral")), ".3g"),
            _far_cell(p.get("temporal_far_hz")), _far_cell(p.get("space_time_far_hz")),
            clean(p.get("joint_event_id"), 64, ""), found["status"], found["revision"],
            clean(p.get("coincidence_id"), 36)[:SHORT_ID]]


COINCIDENCE_HEADERS = ("other event", "messengers", "Δt s", "overlap I", "temporal FAR",
                       "space-time FAR", "joint event", "status", "rev", "id")


def cmd_coincidences(args: argparse.Namespace, config: Config) -> int:
    """List an event's coincident events (GW x GRB, GW x neutrino...): Δt, overlap, FARs."""
    from mma.db.pairs import event_event_records

    with read_engine(config, args.db).connect() as conn:
        found = event_event_records(conn, find_event(conn, args.event))
    if args.json:
        print_jsonl([{**f["payload"], "status": f["status"], "revision": f["revision"]}
                     for f in found])
    else:
        print_table(COINCIDENCE_HEADERS, [coincidence_cells(f) for f in found])
    return 0


def _facts(c: CandidateRow) -> list[tuple[str, Any]]:
    from mma.db.queries import number

    p = c.payload

    def get(key: str) -> Any:
        value = p.get(key)
        return value if isinstance(value, str | int | float) else None

    return [("coincidence", c.coincidence_id), ("event", c.event_id),
            ("object", f"{c.survey} {c.object_id}"), ("status", c.status),
            ("revision", c.revision), ("rank", c.rank or ""),
            ("RA, Dec [deg]", f"{num(c.ra_deg, '.5f')} {num(c.dec_deg, '+.5f')}"),
            ("detections", f"{get('n_detections')} vetted, "
                           f"{get('n_vetoed_detections')} vetoed"),
            ("first detection", get("first_detection")), ("Δt [d]", num(c.dt_days, "+.3f")),
            ("credible level", num(c.credible_level, ".2f")),
            ("ln B", f"{c.log_bayes_factor:.1f}"), ("P_chance", p2(c.p_chance)),
            ("P_association", p2(number(p.get("p_association")))),
            ("flags", ", ".join(c.flags)),
            ("peak", f"{num(c.peak_magnitude, '.2f')} {c.peak_band or ''}".strip())]


def _detections(payload: Mapping[str, Any]) -> list[list[Any]]:
    from mma.db.queries import number

    rows = payload.get("detections")
    out = []
    for d in rows if isinstance(rows, list) else []:
        if isinstance(d, Mapping):
            out.append([d.get("time"), d.get("band"), num(number(d.get("magnitude")), ".2f"),
                        num(number(d.get("magnitude_err")), ".2f"),
                        num(number(d.get("dt_days")), "+.3f"), d.get("alert_id")])
    return out


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    """Show one candidate: its facts, detections, revision history and deliveries."""
    from mma.db.queries import candidate, outbox_rows, revisions_of

    with read_engine(config, args.db).connect() as conn:
        cid = find_candidate(conn, args.id)
        found = candidate(conn, cid)
        history = revisions_of(conn, cid)
        deliveries = outbox_rows(conn, coincidence_id=cid)
    assert found is not None  # find_candidate saw it in this connection
    if args.json:
        print_json({"candidate": {k: v for k, v in asdict(found).items() if k != "payload"},
                    "record": dict(found.payload), "revisions": [asdict(r) for r in history],
                    "outbox": [asdict(o) for o in deliveries]})
        return 0
    print_table(("field", "value"), _facts(found))
    print("\ndetections")
    print_table(("time", "band", "mag", "err", "Δt d", "alert"), _detections(found.payload))
    print("\nrevisions")
    print_table(("rev", "published", "reason", "changes", "region", "status", "CL", "ln B",
                 "P_chance", "scorings", "time"),
                [[r.revision, "yes" if r.published else "", r.reason, ",".join(r.changes),
                  r.region_version, r.status, num(r.credible_level, ".2f"),
                  num(r.log_bayes_factor, ".1f"), p2(r.p_chance), r.n_scorings,
                  when(r.updated_at)] for r in history])
    print("\noutbox")
    print_table(("channel", "rev", "kind", "status", "attempts", "last error"),
                [[o.channel, o.revision, o.kind, o.status, o.attempts, o.last_error or ""]
                 for o in deliveries])
    return 0


def cmd_outbox(args: argparse.Namespace, config: Config) -> int:
    """List deliveries, newest first: candidate, revision, channel, status, attempts."""
    from mma.db.queries import outbox_rows

    with read_engine(config, args.db).connect() as conn:
        found = outbox_rows(conn, status=args.status, channel=args.channel, limit=args.limit)
    if args.json:
        print_jsonl([asdict(o) for o in found])
        return 0
    print_table(("id", "coincidence", "rev", "kind", "channel", "status", "attempts",
                 "next attempt", "last error"),
                [[o.id, o.coincidence_id, o.revision, o.kind, o.channel, o.status, o.attempts,
                  when(o.next_attempt_at) if o.status == "pending" else "",
                  _clip(o.last_error or "", 60)] for o in found])
    return 0


def _clip(text: str, width: int) -> str:
    """*text* on one line, at most *width* characters (``…`` marks a cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:max(width - 1, 1)] + "…"


def cmd_dead_letters(args: argparse.Namespace, config: Config) -> int:
    """List the newest dead letters (records that could not be processed), then counts by type."""
    from mma.db.queries import dead_letter_counts, dead_letter_rows

    with read_engine(config, args.db).connect() as conn:
        found = dead_letter_rows(conn, args.limit)
        counts = dead_letter_counts(conn)
    if args.json:
        print_jsonl([asdict(d) for d in found])
        return 0
    cells = [[d.id, when(d.received_at), d.source, d.origin or "", d.error_type, d.size]
             for d in found]
    headers = ("id", "received", "source", "origin", "error type", "bytes", "error")
    # The error gets what the terminal has left after the other columns.
    others = sum(max([len(h)] + [len(printable(r[i])) for r in cells]) + 2
                 for i, h in enumerate(headers[:-1]))
    room = max(shutil.get_terminal_size().columns - others, 20)
    print_table(headers, [[*r, _clip(d.error, room)] for r, d in zip(cells, found, strict=True)])
    print()
    print_table(("error type", "dead letters"), list(counts.items()))
    return 0


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    """Show active events, the newest notices and alerts, the outbox, dead letters, daemons."""
    from mma.db import queries
    from mma.service.gcn_heartbeat import status_json, status_lines
    from mma.service.heartbeat import format_status, read_status

    interval = float(config.section("daemon").get("heartbeat_interval_seconds", 30.0))
    now = datetime.now(UTC)
    with read_engine(config, args.db).connect() as conn:
        active = queries.list_events(conn, now, active_only=True)
        notices, alerts = queries.latest_notices(conn), queries.latest_alerts(conn)
        channels, dead = queries.outbox_counts(conn), queries.dead_letter_counts(conn)
        daemons = read_status(conn, now=now, stale_after_s=3 * interval)
    if args.json:
        print_json({"active_events": [asdict(e) for e in active],
                    "notices": [asdict(n) for n in notices],
                    "alerts": [asdict(a) for a in alerts],
                    "outbox": [asdict(c) for c in channels], "dead_letters": dead,
                    "daemons": [d.to_json() for d in daemons],
                    "gcn_heartbeat": status_json(daemons, now)})
        return 0
    sections: list[tuple[str, Sequence[str], list[list[Any]]]] = [
        (f"active events: {len(active)}",
         ("event", "event time", "messenger", "90% deg²", "candidates", "best P_chance"),
         [[e.event_id, when(e.event_time), e.messenger, num(e.area90_deg2, ",.1f"), e.n_live,
           p2(e.best_p_chance)] for e in active]),
        ("notices", ("handler", "notices", "latest issued", "latest received"),
         [[n.source, n.count, when(n.latest), when(n.received_at)] for n in notices]),
        ("alerts", ("survey", "alerts", "latest detection", "latest received"),
         [[a.source, a.count, when(a.latest), when(a.received_at)] for a in alerts]),
        ("outbox", ("channel", "pending", "sent", "parked", "last error"),
         [[c.channel, c.pending, c.sent, c.parked, _clip(c.last_error or "", 60)]
          for c in channels]),
        (f"dead letters: {sum(dead.values())}", ("error type", "dead letters"),
         [list(kv) for kv in dead.items()])]
    for title, headers, rows in sections:
        print(title)
        if rows:
            print_table(headers, rows)
        print()
    print("\n".join([*format_status(daemons), *status_lines(daemons, now)]))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the looking commands to the ``mma`` parser."""
    def command(name: str, func: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0], description=func.__doc__)
        add_db(p)
        add_json(p)
        p.set_defaults(func=func)
        return p

    command("events", cmd_events).add_argument(
        "--active", action="store_true",
        help="only events neither retracted nor past their current region's window")
    command("candidates", cmd_candidates).add_argument(
        "event", help="event id or alias (e.g. S250818k)")
    command("coincidences", cmd_coincidences).add_argument(
        "event", help="event id or alias (e.g. S190425z)")
    command("show", cmd_show).add_argument(
        "id", help=f"coincidence id, or its first {SHORT_ID} or more characters")
    p = command("outbox", cmd_outbox)
    p.add_argument("--status", choices=("pending", "sent", "parked", "superseded"))
    p.add_argument("--channel", help="outbox channel name (kafka, slack, slack:NAME, email...)")
    p.add_argument("--limit", type=_positive, default=50, help="rows shown (default 50)")
    command("dead-letters", cmd_dead_letters).add_argument(
        "--limit", type=_positive, default=50, help="rows shown (default 50)")
    command("status", cmd_status)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value
