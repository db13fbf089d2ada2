"""Commands that run or set up the service: ``run``, ``deliver``, ``config``, ``db``."""

from __future__ import annotations

import argparse
import sys

from mma.cli.common import add_db, write_engine
from mma.config import Config, load_config
from mma.printable import printable, printable_lines


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    """Run the daemon: consume notices and alerts from Kafka, correlate, deliver."""
    from mma.service.daemon import Daemon

    return Daemon(config, idle_exit_s=args.idle_exit,
                  load=lambda: load_config(args.config)).run()


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
    """Show the effective configuration (secrets redacted), or just check it."""
    if args.action == "show":
        print("\n".join(printable_lines(config.render())), end="")
    else:
        print(printable(f"configuration OK ({', '.join(config.sources)})"))
    return 0


def cmd_db(args: argparse.Namespace, config: Config) -> int:
    """Create or migrate the database schema."""
    engine = write_engine(config, args.db)
    print(printable(f"database at head: {engine.url.render_as_string(hide_password=True)}"))
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
    p.add_argument("action", choices=("show", "check"))
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("db", help=cmd_db.__doc__, description=cmd_db.__doc__)
    p.add_argument("action", choices=("upgrade",))
    add_db(p)
    p.set_defaults(func=cmd_db)
