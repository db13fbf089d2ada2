"""Logging set-up: one handler on stderr, UTC timestamps, journald-friendly, one line per record.

Log lines carry identifiers, URLs and error texts that come from the input.
:class:`EscapingFormatter` passes each record through :func:`mma.printable.printable`,
so a newline, a terminal control sequence or a bidi override in a message
shows as an escape and one record is always one line. A traceback
(``log.exception``) stays multi-line for the reader, but every line after the
record's first is escaped and indented by :data:`CONTINUATION`: the exception's
text (which Python prints raw, newlines included) can neither forge a line
that starts with a timestamp or a level, nor, under systemd, one that starts
with a ``<N>`` priority prefix, which journald would honour.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from mma.printable import printable, printable_lines

HANDLER_NAME = "mma"
CONTINUATION = "  | "  # starts each line of a record after its first


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


class EscapingFormatter(logging.Formatter):
    """A formatter whose records cannot break, forge or colour lines.

    The record's line (time, level, logger and ``record.getMessage()``) is
    escaped whole; the lines that follow it (traceback, stack) are escaped one
    by one and indented by :data:`CONTINUATION`.

    Indenting, rather than escaping the traceback's newlines too, keeps
    tracebacks readable; escaping each of its lines as well keeps a CR from
    returning to column 0 over the indent on a terminal.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        # formatMessage left no LF in the first line: the first LF starts the
        # traceback (or stack), whatever cached exc_text another handler made.
        head, sep, rest = super().format(record).partition("\n")
        if not sep:
            return head
        return "\n".join([head, *(CONTINUATION + line for line in printable_lines(rest))])


def formatter(journal: bool) -> EscapingFormatter:
    """mma's formatter: UTC timestamps, or none under journald (*journal*), which adds its own."""
    if journal:
        fmt = "%(levelname)s %(name)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    out = EscapingFormatter(fmt, datefmt="%Y-%m-%dT%H:%M:%SZ")
    out.converter = time.gmtime  # UTC only
    return out


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
    handler.setFormatter(formatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Alembic narrates every migration step at INFO; its warnings still show.
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
