"""Logging set-up: one handler on stderr, UTC timestamps, journald-friendly."""

from __future__ import annotations

import logging
import os
import sys
import time


_handler: logging.Handler | None = None


def configure(level: str = "INFO") -> None:
    """Configure the root logger once.

    Under systemd (``JOURNAL_STREAM`` set) the journal adds its own timestamps,
    so lines carry only the level, the logger and the message.
    """
    global _handler
    root = logging.getLogger()
    if _handler is not None:  # reconfiguring (SIGHUP): replace only our own handler
        root.removeHandler(_handler)
    handler = _handler = logging.StreamHandler(sys.stderr)
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
