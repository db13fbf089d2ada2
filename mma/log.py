"""Logging set-up: one handler on stderr, UTC timestamps, journald-friendly."""

from __future__ import annotations

import logging
import os
import sys
import time

HANDLER_NAME = "mma"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record.

    A handler that kept the stream it was created with would write to a closed
    file after a test harness or a daemonising wrapper swaps stderr.
    """

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def configure(level: str = "INFO") -> None:
    """Configure the root logger; calling it again (SIGHUP) replaces only mma's handler.

    Under systemd (``JOURNAL_STREAM`` set) the journal adds its own timestamps,
    so lines carry only the level, the logger and the message.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.set_name(HANDLER_NAME)
    if os.environ.get("JOURNAL_STREAM"):
        fmt = "%(levelname)s %(name)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    formatter = logging.Formatter(fmt, datefmt="%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime  # UTC only
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Alembic narrates every migration step at INFO; its warnings still show.
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
