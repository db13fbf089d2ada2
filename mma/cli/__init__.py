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
import os
import select
import sys
from collections.abc import Sequence

from mma import __version__
from mma.cli import act, admin, look, page, replay, watch
from mma.cli.common import UsageError
from mma.config import Config, load_config
from mma.errors import ConfigError, TransientError
from mma.printable import printable, printable_lines

log = logging.getLogger(__name__)

# The modules whose ``register`` adds subcommands, in the order ``mma --help`` lists them.
COMMANDS = (replay, look, act, page, watch, admin)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mma``."""
    parser = argparse.ArgumentParser(prog="mma", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mma {__version__}")
    parser.add_argument("-c", "--config",
                        help="TOML configuration file (else $MMA_CONFIG); with --config, "
                             "/etc/mma/mma.toml is not read unless --system-config")
    parser.add_argument("--system-config", action="store_true",
                        help="read /etc/mma/mma.toml beneath the --config file")
    parser.add_argument("-l", "--log-level", help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


#: The log level of a command when neither ``-l`` nor ``[logging] level`` sets one: the
#: daemon's journal is its record (INFO); other commands show warnings and their output.
COMMAND_LEVELS = {"run": "INFO"}
DEFAULT_LEVEL = "WARNING"

SIGPIPE_STATUS = 141
"""Exit status when the reader of the output went away: 128 + SIGPIPE, as a shell reports
for ``yes | head -1`` (scripts under ``set -o pipefail`` already expect it)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mma`` console script; returns the exit status.

    The log level is ``-l``, else ``[logging] level``, else the command's own
    (:data:`COMMAND_LEVELS`, :data:`DEFAULT_LEVEL`). Exit statuses: 0 done, 1 a usage
    error (a missing input, an unknown id), 2 a configuration error, 75 a transient
    failure (the database), 130 interrupted, 141 the output's reader went away.
    """
    from mma.log import configure

    args = build_parser().parse_args(argv)
    try:
        config = _config_of(args)
        level = args.log_level or str(config.section("logging")["level"])
        try:
            configure(level, default=COMMAND_LEVELS.get(args.command, DEFAULT_LEVEL))
        except ValueError:
            raise UsageError(f"unknown log level {level!r}: DEBUG, INFO, WARNING, ERROR "
                             "or CRITICAL") from None
        status = int(args.func(args, config))
        sys.stdout.flush()  # a closed pipe must show here, not at exit
        return status
    except BrokenPipeError:
        if not _output_closed():
            raise  # a socket's, not ours: a real error
        return SIGPIPE_STATUS
    except ConfigError as exc:  # every problem found, one per line
        print("\n".join(printable_lines(f"mma: configuration error: {exc}")), file=sys.stderr)
        return 2
    except UsageError as exc:
        print(printable(f"mma: {exc}"), file=sys.stderr)
        return 1
    except TransientError as exc:
        print(printable(f"mma: {exc}"), file=sys.stderr)
        return 75  # EX_TEMPFAIL: systemd may restart us
    except KeyboardInterrupt:
        return 130


def _config_of(args: argparse.Namespace) -> Config:
    """The configuration a command runs with.

    ``mma config init`` writes the file the others will read: it must work while
    no configuration loads (a broken system file, ``$MMA_CONFIG`` naming the file
    about to be written), so it runs on the packaged defaults alone.
    """
    if args.command == "config" and args.action == "init":
        return load_config(None, environ={}, system=False)
    return load_config(args.config, system=True if args.system_config else None)


def _output_closed() -> bool:
    """True if stdout or stderr is a pipe with no reader left; those then go to /dev/null.

    As the Python documentation's note on SIGPIPE advises: pointing the broken
    stream at /dev/null keeps the flush at exit from raising again (and printing a
    traceback). A stream that is not a file descriptor (a test's capture) is not closed.
    """
    closed = []
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (AttributeError, ValueError, OSError):
            continue
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        # A pipe whose read end is closed polls as POLLERR (Linux, BSDs).
        if any(events & select.POLLERR for _fd, events in poller.poll(0)):
            closed.append(fd)
    for fd in closed:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    return bool(closed)
