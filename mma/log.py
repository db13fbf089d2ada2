"""Logging set-up: one handler on stderr, UTC timestamps, journald-friendly."""

from __future__ import annotations

import logging
import os
import sys
import time


def configure(level: str = "INFO") -> None:
    """Configure the root logger once.

    Under systemd (``JOURNAL_STREAM`` set) the journal adds its own timestamps,
    so lines carry only the level, the logger and the message.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        fmt = "%(levelname)s %(name)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    formatter = logging.Formatter(fmt, datefmt="%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime  # UTC only
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level.upper())
