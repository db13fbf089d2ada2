"""``mma replay``, ``mma ingest`` and ``mma demo``: files through the pipeline.

A replay never queues deliveries, even into the service's database (``--db``): it
answers "what would these files give", it does not announce. ``mma ingest`` queues
them for the enabled channels as the daemon does, unless ``--no-deliver``.

A path that does not exist is a usage error (exit status 1, before any database is
opened); a directory without files is only warned of (exit status 0: nothing to
do is not a failure, e.g. an empty day of an archive); a file that cannot be read
is dead-lettered like a bad one and the others go on.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import timedelta
from importlib import resources
from pathlib import Path

from mma.cli.common import UsageError, add_db, write_engine
from mma.config import Config


def _check_inputs(paths: Sequence[str]) -> None:
    """Refuse paths that do not exist (:class:`UsageError` naming them)."""
    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(missing)}")


def _replay(args: argparse.Namespace, config: Config, paths: Sequence[str], *,
            ordered: bool = True, deliver: bool = False) -> int:
    _check_inputs(paths)
    from mma.ingest import Pipeline
    from mma.registry import Registry
    from mma.replay import replay
    from mma.report import records, summary, write_jsonl
    from mma.skymaps.fetch import fetcher_from_config

    with ExitStack() as stack:
        url = args.db
        if url is None and ordered:
            # A replay answers "what would these files give": a fresh database each time.
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="mma-replay-"))
            url = f"sqlite:///{Path(tmp) / 'replay.sqlite'}"
        engine = write_engine(config, url)
        fetch = (fetcher_from_config(config)
                 if args.fetch and config.section("skymaps")["fetch"] else None)
        pipeline = Pipeline(engine, config, fetch=fetch, deliver=deliver)
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
    sys.stdout.flush()  # the output first, then the summary after the log
    note = "" if deliver else ", no deliveries queued"
    print(f"\n--- mma {args.command}: {n} records processed{note} ---\n{table}",
          file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace, config: Config) -> int:
    """Replay files in stream-time order and write the final coincidences (queues no deliveries)."""
    return _replay(args, config, args.paths)


def cmd_ingest(args: argparse.Namespace, config: Config) -> int:
    """Store files in the configured database, in the order given, and queue deliveries."""
    args.include_test = args.include_vetoed = False
    return _replay(args, config, args.paths, ordered=False, deliver=not args.no_deliver)


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    """Replay the bundled synthetic sample: an LVK-like notice and ZTF-like alerts."""
    sample = resources.files("mma").joinpath("data", "sample")
    with resources.as_file(sample) as folder:
        args.paths = [str(folder)]
        return cmd_replay(args, config)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``replay``, ``demo`` and ``ingest`` to the ``mma`` parser."""
    for name, func, helptext in (("replay", cmd_replay, cmd_replay.__doc__),
                                 ("demo", cmd_demo, cmd_demo.__doc__)):
        p = sub.add_parser(name, help=helptext, description=helptext)
        if name == "replay":
            p.add_argument("paths", nargs="+", metavar="PATH",
                           help="files or directories: VOEvent, GCN/LVK JSON, Avro, parquet")
        p.add_argument("-o", "--output", help="JSON Lines output file (default: stdout)")
        add_db(p, "default: a fresh temporary SQLite database")
        p.add_argument("--include-test", action="store_true",
                       help="also output coincidences with mock/test events")
        p.add_argument("--include-vetoed", action="store_true",
                       help="also output coincidences whose alert failed vetting")
        p.add_argument("--fetch", action="store_true",
                       help="download skymaps that notices give by URL ([skymaps] allow-list)")
        p.set_defaults(func=func)
    p = sub.add_parser("ingest", help=cmd_ingest.__doc__, description=cmd_ingest.__doc__)
    p.add_argument("paths", nargs="+", metavar="FILE")
    p.add_argument("--no-deliver", action="store_true",
                   help="store and match only: queue no deliveries for any channel")
    p.add_argument("--fetch", action="store_true",
                   help="download skymaps that notices give by URL ([skymaps] allow-list)")
    add_db(p)
    p.set_defaults(func=cmd_ingest, output=None)
