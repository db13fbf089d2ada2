"""The ``mma`` command: replay, ingest, demo, status, config and db subcommands.

Each module of this package adds its subcommands with ``register``; heavy
imports (numpy, ligo.skymap, SQLAlchemy) happen inside the commands so that
``mma --help`` answers at once.

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
from collections.abc import Sequence

from mma import __version__
from mma.cli import admin, look, replay
from mma.cli.common import UsageError
from mma.config import load_config
from mma.errors import ConfigError, TransientError
from mma.printable import printable

log = logging.getLogger(__name__)

# The modules whose ``register`` adds subcommands, in the order ``mma --help`` lists them.
COMMANDS = (replay, look, admin)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mma``."""
    parser = argparse.ArgumentParser(prog="mma", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mma {__version__}")
    parser.add_argument("-c", "--config", help="TOML configuration file (else $MMA_CONFIG)")
    parser.add_argument("-l", "--log-level", help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
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
    except UsageError as exc:
        print(printable(f"mma: {exc}"), file=sys.stderr)
        return 1
    except TransientError as exc:
        print(printable(f"mma: {exc}"), file=sys.stderr)
        return 75  # EX_TEMPFAIL: systemd may restart us
    except KeyboardInterrupt:
        return 130
