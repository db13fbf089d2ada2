"""The ``mma`` command: replay, ingest, demo, status, config and db subcommands.

Heavy imports (numpy, ligo.skymap, SQLAlchemy) happen inside the subcommands
so that ``mma --help`` answers at once.

What the commands print from the database, the configuration or an error
(ids, names, paths, URLs) goes through :mod:`mma.printable`, as log lines do, so
no stored or received string can break a line or drive the terminal; the JSON
outputs need nothing more (``json.dumps`` escapes every control and non-ASCII
character).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from mma import __version__
from mma.config import Config, load_config
from mma.errors import ConfigError, TransientError
from mma.printable import printable, printable_lines

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)


def _engine(config: Config, url: str | None) -> Engine:
    from mma.db.engine import make_engine, upgrade

    engine = make_engine(url or config.database_url)
    upgrade(engine)
    return engine


def _replay(args: argparse.Namespace, config: Config, paths: Sequence[str], *,
            ordered: bool = True) -> int:
    from mma.ingest import Pipeline
    from mma.registry import Registry
    from mma.replay import replay
    from mma.report import records, summary, write_jsonl

    with ExitStack() as stack:
        url = args.db
        if url is None and ordered:
            # A replay answers "what would these files give": a fresh database each time.
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="mma-replay-"))
            url = f"sqlite:///{Path(tmp) / 'replay.sqlite'}"
        engine = _engine(config, url)
        from mma.skymaps.fetch import fetcher_from_config

        fetch = (fetcher_from_config(config)
                 if args.fetch and config.section("skymaps")["fetch"] else None)
        pipeline = Pipeline(engine, config, fetch=fetch)
        limits = config.section("limits")
        conf = config.section("replay")
        n = replay(pipeline, Registry(), paths, max_bytes=int(limits["max_message_bytes"]),
                   progress_min_items=int(conf["progress_min_items"]), ordered=ordered,
                   max_gap=timedelta(days=float(conf["max_clock_gap_days"])))
        with engine.connect() as conn:
            rows = records(conn, include_test=args.include_test,
                           include_vetoed=args.include_vetoed)
            table = summary(conn, rows, pipeline.counts)
        engine.dispose()
    if ordered:
        if args.output in (None, "-"):
            write_jsonl(rows, sys.stdout)
        else:
            with open(args.output, "w", encoding="utf-8") as fh:
                write_jsonl(rows, fh)
    print(f"\n{n} records processed\n{table}", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace, config: Config) -> int:
    """Replay files in stream-time order and write the final coincidences."""
    return _replay(args, config, args.paths)


def cmd_ingest(args: argparse.Namespace, config: Config) -> int:
    """Store files in the configured database, in the order given."""
    args.include_test = args.include_vetoed = False
    return _replay(args, config, args.paths, ordered=False)


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    """Replay the bundled synthetic sample: an LVK-like notice and ZTF-like alerts."""
    sample = resources.files("mma").joinpath("data", "sample")
    with resources.as_file(sample) as folder:
        args.paths = [str(folder)]
        return cmd_replay(args, config)


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    """Print counts of what the database holds and the running daemons' heartbeats."""
    import json
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from mma.db import schema
    from mma.service.heartbeat import format_status, read_status

    interval = float(config.section("daemon").get("heartbeat_interval_seconds", 30.0))
    engine = _engine(config, args.db)
    with engine.connect() as conn:
        counts: dict[str, int] = {}
        for table in (schema.events, schema.notices, schema.regions, schema.alerts,
                      schema.coincidences, schema.outbox, schema.dead_letters):
            counts[table.name] = conn.execute(select(func.count()).select_from(table)).scalar_one()
        active = conn.execute(select(func.count()).select_from(schema.regions).where(
            schema.regions.c.status == "active")).scalar_one()
        by_status: dict[str, int] = dict(conn.execute(
            select(schema.outbox.c.status, func.count()).group_by(schema.outbox.c.status)
        ).all())
        daemons = read_status(conn, now=datetime.now(UTC), stale_after_s=3 * interval)
    backlog, parked = by_status.get("pending", 0), by_status.get("parked", 0)
    if args.json:
        print(json.dumps({"counts": {**counts, "active_regions": active},
                          "outbox": {"backlog": backlog, "parked": parked},
                          "daemons": [d.to_json() for d in daemons]}))
        return 0
    for name, n in {**counts, "active regions": active}.items():
        print(f"{name:<14} {n}")
    print(f"outbox backlog {backlog}")
    print(f"parked deliveries {parked}")
    print("\n".join(format_status(daemons)))
    return 0


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    """Run the daemon: consume notices and alerts from Kafka, correlate, deliver."""
    from mma.service.daemon import Daemon

    return Daemon(config, idle_exit_s=args.idle_exit,
                  load=lambda: load_config(args.config)).run()


def cmd_deliver(args: argparse.Namespace, config: Config) -> int:
    """Send the outbox's due deliveries to the enabled channels, then exit."""
    from mma.delivery import build_emitters, deliver_due

    engine = _engine(config, args.db)
    emitters = build_emitters(config)
    if not emitters:
        print("no channel is enabled ([channels.*] enabled = true)", file=sys.stderr)
        return 0
    try:
        counts = deliver_due(engine, config, emitters)
    finally:
        for emitter in emitters.values():
            emitter.close()
    print(printable(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing due"))
    return 0


def cmd_config(args: argparse.Namespace, config: Config) -> int:
    """Show the effective configuration (secrets redacted), or just check it."""
    if args.action == "show":
        print("\n".join(printable_lines(config.render())), end="")
    else:
        print(printable(f"configuration OK ({', '.join(config.sources)})"))
    return 0


def cmd_db(args: argparse.Namespace, config: Config) -> int:
    """Create or migrate the database schema."""
    engine = _engine(config, args.db)
    print(printable(f"database at head: {engine.url.render_as_string(hide_password=True)}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mma``."""
    parser = argparse.ArgumentParser(prog="mma", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mma {__version__}")
    parser.add_argument("-c", "--config", help="TOML configuration file (else $MMA_CONFIG)")
    parser.add_argument("-l", "--log-level", help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_db(p: argparse.ArgumentParser, default_help: str) -> None:
        p.add_argument("--db", help=f"SQLAlchemy database URL ({default_help})")

    for name, func, helptext in (("replay", cmd_replay, cmd_replay.__doc__),
                                 ("demo", cmd_demo, cmd_demo.__doc__)):
        p = sub.add_parser(name, help=helptext, description=helptext)
        if name == "replay":
            p.add_argument("paths", nargs="+", metavar="PATH",
                           help="files or directories: VOEvent, GCN/LVK JSON, Avro, parquet")
        p.add_argument("-o", "--output", help="JSON Lines output file (default: stdout)")
        with_db(p, "default: a fresh temporary SQLite database")
        p.add_argument("--include-test", action="store_true",
                       help="also output coincidences with mock/test events")
        p.add_argument("--include-vetoed", action="store_true",
                       help="also output coincidences whose alert failed vetting")
        p.add_argument("--fetch", action="store_true",
                       help="download skymaps that notices give by URL ([skymaps] allow-list)")
        p.set_defaults(func=func)
    p = sub.add_parser("ingest", help=cmd_ingest.__doc__)
    p.add_argument("paths", nargs="+", metavar="FILE")
    p.add_argument("--fetch", action="store_true",
                   help="download skymaps that notices give by URL ([skymaps] allow-list)")
    with_db(p, "default: the configured database")
    p.set_defaults(func=cmd_ingest, output=None)
    p = sub.add_parser("status", help=cmd_status.__doc__)
    with_db(p, "default: the configured database")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (counts, outbox, daemons) for monitoring")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("run", help=cmd_run.__doc__)
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="stop after this many seconds without a message (catch-up runs, tests)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("deliver", help=cmd_deliver.__doc__)
    with_db(p, "default: the configured database")
    p.set_defaults(func=cmd_deliver)
    p = sub.add_parser("config", help=cmd_config.__doc__)
    p.add_argument("action", choices=("show", "check"))
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("db", help=cmd_db.__doc__)
    p.add_argument("action", choices=("upgrade",))
    with_db(p, "default: the configured database")
    p.set_defaults(func=cmd_db)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mma`` console script; returns the exit status."""
    from mma.log import configure

    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        configure(args.log_level or str(config.section("logging")["level"]))
        return int(args.func(args, config))
    except ConfigError as exc:
        print(printable(f"mma: configuration error: {exc}"), file=sys.stderr)
        return 2
    except TransientError as exc:
        print(printable(f"mma: {exc}"), file=sys.stderr)
        return 75  # EX_TEMPFAIL: systemd may restart us
    except KeyboardInterrupt:
        return 130
