"""Commands that run or set up the service: ``run``, ``deliver``, ``config``, ``db``."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from mma.cli.common import add_db, print_table, read_engine, write_engine
from mma.config import SYSTEM_CONFIG, Config, load_config
from mma.printable import printable, printable_lines


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    """Run the daemon: consume notices and alerts from Kafka, correlate, deliver."""
    from mma.service.daemon import Daemon

    # SIGHUP reloads the same files as the start did (--system-config, once the parser
    # has it, adds the system file to --config).
    system = getattr(args, "system_config", False) or None
    return Daemon(config, idle_exit_s=args.idle_exit,
                  load=lambda: load_config(args.config, system=system)).run()


def cmd_deliver(args: argparse.Namespace, config: Config) -> int:
    """Send the outbox's due deliveries to the enabled channels, then exit."""
    from mma.delivery import build_emitters, deliver_due

    engine = write_engine(config, args.db)
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
    """Show the effective configuration, check it, or write a starter file (init)."""
    if args.action == "init":
        from mma.config_starter import write_starter

        target = Path(args.output or SYSTEM_CONFIG)
        write_starter(target, force=args.force)
        load_config(target, environ={})  # what was written loads, or this is a bug
        print(printable(f"wrote {target}; edit it, then: mma config check"))
    elif args.action == "show":
        print("\n".join(printable_lines(config.render())), end="")
    else:
        from mma.service.preflight import check_daemon, describe_sources

        check_daemon(config, secrets=not args.no_secrets)
        print(printable(f"configuration OK ({', '.join(config.sources)})"))
        print(printable(f"sources: {describe_sources(config)}"))
    return 0


def cmd_db(args: argparse.Namespace, config: Config) -> int:
    """Create or migrate the database schema (upgrade), or delete what retention no longer
    keeps (prune, see docs/retention.md)."""
    if args.action == "prune":
        return _prune(args, config)
    engine = write_engine(config, args.db)
    print(printable(f"database at head: {engine.url.render_as_string(hide_password=True)}"))
    return 0


def _prune(args: argparse.Namespace, config: Config) -> int:
    """``mma db prune [--dry-run]``: rows per table that go (or would), and the horizons."""
    from mma.cli.look import when
    from mma.db.retention import RetentionPolicy, prune

    policy = RetentionPolicy.from_config(config)
    now = datetime.now(UTC)
    engine = read_engine(config, args.db)
    try:
        result = prune(engine, policy, now, dry_run=args.dry_run)
    finally:
        engine.dispose()
    h = result.horizons
    if result.skipped:
        print("another process is pruning this database now: nothing done")
        return 0
    before = {"alerts": when(h.alerts), "cutouts": when(max(h.alerts, h.cutouts)),
              "objects": "with their last alert", "outbox": when(h.outbox),
              "dead_letters": when(h.dead_letters), "background_cells": when(h.background)}
    print_table(("table", "older than", "would go" if result.dry_run else "deleted"),
                [(name, before[name], n) for name, n in result.counts().items()])
    active = "none" if h.active_start is None else f"the earliest from {when(h.active_start)}"
    print(printable(f"alert horizon {when(h.alerts)}: the windows in force look back "
                    f"{policy.lookback_days:g} d + margin {policy.margin_days:g} d "
                    f"({when(h.windows)}); active regions' windows: {active}"))
    print("alerts of objects that are or were candidates are kept, whatever their age")
    if result.dry_run:
        print("dry run: nothing deleted")
    elif not result.complete:
        print("stopped before the end (a race with a writer): the next prune goes on")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the service commands to the ``mma`` parser."""
    p = sub.add_parser("run", help=cmd_run.__doc__, description=cmd_run.__doc__)
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="stop after this many seconds without a message (catch-up runs, tests)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("deliver", help=cmd_deliver.__doc__, description=cmd_deliver.__doc__)
    add_db(p)
    p.set_defaults(func=cmd_deliver)
    p = sub.add_parser("config", help=cmd_config.__doc__, description=cmd_config.__doc__)
    p.add_argument("action", choices=("show", "check", "init"),
                   help="show: the effective configuration as TOML (it loads back; secrets "
                   "only as set/unset); check: everything `mma run` needs, every problem at "
                   "once (exit status 2); init: write a commented starter file")
    p.add_argument("-o", "--output", metavar="FILE",
                   help=f"init: the file to write (default {SYSTEM_CONFIG})")
    p.add_argument("--force", action="store_true", help="init: replace an existing file")
    p.add_argument("--no-secrets", action="store_true",
                   help="check: skip the secrets (when only systemd's LoadCredential= "
                   "gives them to the service)")
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("db", help=cmd_db.__doc__, description=cmd_db.__doc__)
    p.add_argument("action", choices=("upgrade", "prune"),
                   help="upgrade: create or migrate the schema; prune: delete what "
                   "[retention] no longer keeps, in short chunks (docs/retention.md)")
    p.add_argument("--dry-run", action="store_true",
                   help="prune: count what would go and show the horizons; delete nothing")
    add_db(p)
    p.set_defaults(func=cmd_db)
