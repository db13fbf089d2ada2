"""``mma watch add|list|remove``: a user's sky regions, matched like events (:mod:`mma.watch`).

A watch is an event of messenger ``watch``: adding one stores its notice and region
through the notice path (:func:`mma.ingest.notices.store_notice`), so objects
already stored are matched at once and later alerts as they come; removing one
retracts that event, so its live candidates are withdrawn and the channels that
heard of them are told. A file that is not a usable region is a usage error (exit
status 1), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mma.channels import CHANNELS, enabled_channels
from mma.cli.common import (
    UsageError,
    add_db,
    add_json,
    print_jsonl,
    print_table,
    read_engine,
    write_engine,
)
from mma.config import Config
from mma.errors import BadMessage
from mma.printable import printable

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from mma.db.queries import EventRow

log = logging.getLogger(__name__)

# A watch name is part of an event id ("watch:" + name): short, plain, shell-friendly.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,56}")
# An outbox channel: a family (kafka, slack, email) or one destination of it (slack:ops).
CHANNEL = re.compile(r"(kafka|slack|email)(:[a-z0-9_-]{1,26})?")


def _utc(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 time as UTC (without a zone it is UTC); None when not given."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not an ISO 8601 time") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _name(text: str) -> str:
    if not NAME.fullmatch(text):
        raise UsageError(f"watch name {printable(text[:60])!r}: 1-57 characters of letters, "
                         "digits and _ . + -, starting with a letter or digit")
    return text


def _channels(text: str) -> list[str]:
    """``--channels``: comma-separated outbox channels (families or destinations)."""
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in chosen if not CHANNEL.fullmatch(c)]
    if bad or not chosen:
        raise UsageError(f"--channels {printable(text[:80])!r}: give channels among "
                         f"{', '.join(CHANNELS)} or a destination (slack:NAME), comma-separated")
    return sorted(set(chosen))


def _read_file(path: str, max_bytes: int) -> bytes:
    """The watch file's bytes; its size is checked before anything is read."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such file: {path}")
    size = file.stat().st_size
    if size > max_bytes:
        raise UsageError(f"{path}: {size} bytes, above the cap of {max_bytes} bytes "
                         "(limits.max_message_bytes)")
    return file.read_bytes()


def cmd_add(args: argparse.Namespace, config: Config) -> int:
    """Watch a sky region: a MOC FITS file, a multi-order sky map or a CSV of ra,dec,radius."""
    from mma import watch
    from mma.db import queries, store
    from mma.ingest import Pipeline, utcnow
    from mma.ingest.notices import store_notice

    name, now = _name(args.name), utcnow()
    start = _utc(args.start, "--start") or now
    end = _utc(args.end, "--end")
    if end is not None and end <= start:
        raise UsageError(f"--end {end.isoformat()} is not after the start {start.isoformat()}")
    channels = _channels(args.channels)
    limits = config.section("limits")
    data = _read_file(args.file, int(limits["max_message_bytes"]))
    try:
        footprint = watch.read_footprint(
            data, max_bytes=int(limits["max_message_bytes"]),
            max_tiles=int(limits["max_region_tiles"]),
            max_credible_level=float(config.section("scoring")["max_credible_level"]))
    except BadMessage as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    engine = write_engine(config, args.db)
    try:
        with engine.connect() as conn:
            _refuse_taken(conn, name, data, args.file)
        properties = watch.watch_properties(
            channels=channels, source_file=Path(args.file).name, start=start, end=end,
            kind=footprint.kind, area_deg2=footprint.area_deg2)
        notice = watch.add_notice(name, footprint, properties, start, now)
        pipeline = Pipeline(engine, config)
        pipeline.index.ensure()
        try:
            outcome = store_notice(pipeline.stage, watch.WatchHandler(), notice, data,
                                   f"mma watch add {Path(args.file).name}", now)
        except BadMessage as exc:
            raise UsageError(f"{args.file}: {exc}") from None
        with engine.connect() as conn:
            row = queries.list_events(conn, now, event_pk=store.find_event(
                conn, [watch.event_id(name)]))[0]
    finally:
        engine.dispose()
    log.info("watch %s added from %s: %d candidates", name, args.file, len(outcome.touched))
    print(printable(f"watch {name}: {footprint.kind}, {_area(footprint.area_deg2, row)} deg2, "
                    f"window {_window(row)}, channels {','.join(channels)}, "
                    f"{len(outcome.touched)} candidates now"))
    enabled = enabled_channels(config)
    idle = [c for c in channels if not any(watch.subscribed(e, [c]) for e in enabled)]
    if idle:
        print(printable(f"note: {', '.join(idle)} not enabled in this configuration: "
                        "nothing goes there until it is"))
    if end is not None and row.window_end is not None and row.window_end != end:
        print(printable(f"note: the region's window ends {row.window_end.isoformat()}, not "
                        f"--end {end.isoformat()} (this version keeps [windows] watch)"))
    return 0


def _refuse_taken(conn: Connection, name: str, data: bytes, path: str) -> None:
    """A name is used once (a removed watch keeps its name); a file makes one watch."""
    from mma import watch
    from mma.db import queries, store

    pk = store.find_event(conn, [watch.event_id(name)])
    if pk is not None:
        status = queries.list_events(conn, datetime.now(UTC), event_pk=pk)[0].status
        how = "was removed; names are not reused" if status == "retracted" else "exists"
        raise UsageError(f"watch {name} {how}: choose another name")
    if store.notice_stored(conn, data):
        raise UsageError(f"{path}: this file already defines a watch (or is a stored "
                         "notice); one file, one watch")


def _area(area_deg2: float | None, row: EventRow) -> str:
    """The footprint's area, else (a probability map) its 90 % area [deg^2]."""
    area = area_deg2 if area_deg2 is not None else row.area90_deg2
    return "?" if area is None else f"{area:.4g}"


def _window(row: EventRow) -> str:
    if row.window_start is None or row.window_end is None:
        return "none"
    return f"{_iso(row.window_start)} .. {_iso(row.window_end)}"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    """List watch regions: name, status, area, window, channels, live candidates."""
    engine = read_engine(config, args.db)
    try:
        rows = watch_rows(engine)
    finally:
        engine.dispose()
    if args.json:
        print_jsonl(rows)
        return 0
    print_table(("NAME", "STATUS", "AREA_DEG2", "WINDOW", "CHANNELS", "CANDIDATES", "FILE"),
                [(r["name"], r["status"], "?" if r["area_deg2"] is None
                  else f"{r['area_deg2']:.4g}", r["window"], ",".join(r["channels"]),
                  r["candidates"], r["source_file"]) for r in rows])
    return 0


def watch_rows(engine: Engine) -> list[dict[str, Any]]:
    """One mapping per watch (removed ones included), newest start first."""
    from mma import watch
    from mma.db import queries, store

    out = []
    with engine.connect() as conn:
        for row in queries.list_events(conn, datetime.now(UTC)):
            if row.messenger != watch.MESSENGER:
                continue
            props = store.load_event(conn, row.pk).properties.get("watch") or {}
            area = props.get("area_deg2")
            out.append({
                "name": row.event_id.removeprefix(watch.PREFIX), "event_id": row.event_id,
                "status": "removed" if row.status == "retracted" else row.status,
                "area_deg2": area if isinstance(area, int | float) else row.area90_deg2,
                "kind": props.get("kind"), "window": _window(row),
                "window_start": row.window_start, "window_end": row.window_end,
                "start": props.get("start"), "end": props.get("end"),
                "channels": sorted(watch.watch_channels({"watch": props}) or ()),
                "candidates": row.n_live, "source_file": props.get("source_file")})
    return out


def cmd_remove(args: argparse.Namespace, config: Config) -> int:
    """Stop watching a region: its live candidates are withdrawn, with a retraction message."""
    from mma import watch
    from mma.db import queries, store
    from mma.ingest import Pipeline, utcnow
    from mma.ingest.notices import store_notice

    name, now = _name(args.name), utcnow()
    engine = read_engine(config, args.db)
    try:
        with engine.connect() as conn:
            pk = store.find_event(conn, [watch.event_id(name)])
            if pk is None:
                raise UsageError(f"no watch named {name} (mma watch list shows them)")
            row = queries.list_events(conn, now, event_pk=pk)[0]
        if row.status == "retracted":
            raise UsageError(f"watch {name} is already removed")
        notice, raw = watch.remove_notice(name, row.event_time, now)
        pipeline = Pipeline(engine, config)
        pipeline.index.ensure()
        outcome = store_notice(pipeline.stage, watch.WatchHandler(), notice, raw,
                               "mma watch remove", now)
    finally:
        engine.dispose()
    print(printable(f"watch {name} removed: {len(outcome.touched)} candidates withdrawn"))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``watch add|list|remove`` to the ``mma`` parser."""
    doc = "watch sky regions of your own (MOC, sky map or CSV of discs) like events"
    parser = sub.add_parser("watch", help=doc, description=doc)
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser("add", help=cmd_add.__doc__, description=cmd_add.__doc__)
    p.add_argument("name", help="the watch's name (its event id is watch:NAME)")
    p.add_argument("file", help="MOC FITS file, multi-order sky map, or CSV of ra,dec,radius")
    p.add_argument("--start", help="ISO 8601 UTC (default: now)")
    p.add_argument("--end", help="ISO 8601 UTC (default: open-ended, [windows] watch)")
    p.add_argument("--channels", default="kafka",
                   help="outbox channels its candidates go to (default: kafka)")
    add_db(p)
    p.set_defaults(func=cmd_add)
    p = actions.add_parser("list", help=cmd_list.__doc__, description=cmd_list.__doc__)
    add_db(p)
    add_json(p)
    p.set_defaults(func=cmd_list)
    p = actions.add_parser("remove", help=cmd_remove.__doc__, description=cmd_remove.__doc__)
    p.add_argument("name")
    add_db(p)
    p.set_defaults(func=cmd_remove)
