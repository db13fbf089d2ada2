"""Logging set-up: one handler on stderr, UTC timestamps, journald priorities, one line per record.

Log lines carry identifiers, URLs and error texts that come from the input.
:class:`EscapingFormatter` passes each record through :func:`mma.printable.printable`,
so a newline, a terminal control sequence or a bidi override in a message
shows as an escape and one record is always one line. A traceback
(``log.exception``) stays multi-line for the reader, but every line after the
record's first is escaped and indented by :data:`CONTINUATION`: the exception's
text (which Python prints raw, newlines included) can neither forge a line
that starts with a timestamp or a level, nor, under systemd, one that starts
with a ``<N>`` priority prefix, which journald would honour.

Under systemd (stderr is the stream named by ``JOURNAL_STREAM``) every line
starts with the sd-daemon priority prefix of its record (``<3>`` for ERROR,
see :data:`PRIORITIES`): journald reads one entry per line and takes its
priority from that prefix (``SyslogLevelPrefix=yes``, the default), so
``journalctl -p err`` shows errors, and each line of a traceback carries the
prefix of its record too. Python's warnings are logged (logger
``py.warnings``) rather than printed raw.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable

from mma.printable import printable, printable_lines

HANDLER_NAME = "mma"
CONTINUATION = "  | "  # starts each line of a record after its first

#: sd-daemon(3) priority of each level (syslog: 7 debug, 6 info, 4 warning, 3 err, 2 crit).
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
              (logging.INFO, 6))


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (a custom level takes the one below it)."""
    return next((prio for level, prio in PRIORITIES if levelno >= level), 7)


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

    def emit(self, record: logging.LogRecord) -> None:
        """Write *record*; above a progress bar if one is shown, which is redrawn below it."""
        bars = sys.modules.get("tqdm")  # no bar can be shown if tqdm was never imported
        if bars is None or not bars.tqdm._instances:
            super().emit(record)
            return
        try:
            bars.tqdm.write(self.format(record), file=self.stream)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


class EscapingFormatter(logging.Formatter):
    """A formatter whose records cannot break, forge or colour lines.

    The record's line (time, level, logger and ``record.getMessage()``) is
    escaped whole; the lines that follow it (traceback, stack) are escaped one
    by one and indented by :data:`CONTINUATION`.

    Indenting, rather than escaping the traceback's newlines too, keeps
    tracebacks readable; escaping each of its lines as well keeps a CR from
    returning to column 0 over the indent on a terminal.
    """

    #: Start every line with the record's ``<N>`` priority (for journald).
    prefix_priority = False

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        # formatMessage left no LF in the first line: the first LF starts the
        # traceback (or stack), whatever cached exc_text another handler made.
        head, sep, rest = super().format(record).partition("\n")
        lines = [head, *(CONTINUATION + line for line in printable_lines(rest))] if sep \
            else [head]
        if self.prefix_priority:
            # journald makes an entry of each line: each needs the priority, or a
            # traceback's lines would be filed at the stream's default (info).
            mark = f"<{priority(record.levelno)}>"
            lines = [mark + line for line in lines]
        return "\n".join(lines)


def formatter(journal: bool) -> EscapingFormatter:
    """mma's formatter: UTC timestamps, or under journald (*journal*) priority prefixes instead.

    The journal stamps each entry itself; the level name stays in the text for
    ``journalctl``'s default output, which does not show priorities.
    """
    if journal:
        fmt = "%(levelname)s %(name)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    out = EscapingFormatter(fmt, datefmt="%Y-%m-%dT%H:%M:%SZ")
    out.converter = time.gmtime  # UTC only
    out.prefix_priority = journal
    return out


def journal_stderr() -> bool:
    """True if stderr is the journal's stream (``JOURNAL_STREAM`` names its device:inode).

    Comparing with fd 2 rather than trusting the variable alone keeps a child whose
    stderr was redirected (a terminal, a file) from writing priority prefixes.
    """
    want = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


def configure(level: str = "", *, default: str = "INFO", journal: bool | None = None) -> None:
    """Configure the root logger; calling it again (SIGHUP) replaces only mma's handler.

    Parameters
    ----------
    level : str
        DEBUG, INFO, WARNING, ERROR or CRITICAL (any case); empty: *default*.
    default : str
        The level when *level* is empty (the command's own default).
    journal : bool or None
        Write for journald (priority prefixes, no timestamps); None: when stderr is
        the journal stream (:func:`journal_stderr`).
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(formatter(journal=journal_stderr() if journal is None else journal))
    root.addHandler(handler)
    root.setLevel((level or default).upper())
    logging.captureWarnings(True)  # a library's warning is a log record, prefix and all
    # Alembic narrates every migration step at INFO; its warnings still show.
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))


class ThrottledLog:
    """A logger-like object that repeats a line at most once per *period_s*, with a count.

    confluent-kafka calls ``log(level, "%s [%s] %s", facility, client, text)`` for each
    librdkafka log line when a client is given one as its ``logger`` property. An
    unreachable broker makes librdkafka log each reconnection attempt (~20 lines a
    second): here a line like one already logged within *period_s* (the same text
    but for its numbers, such as "after 0ms") is counted instead, and the count is
    appended to the next one logged after the period.

    Parameters
    ----------
    name : str
        The logger the lines go to.
    period_s : float
        At most one line of a kind per this many seconds [s].
    ceiling : int
        The highest level written. librdkafka retries connections, metadata and
        fetches by itself and reports what it gives up on through the client's API
        (which mma handles and logs itself), so its own lines are at most warnings.
    clock : callable
        Monotonic seconds (tests pass their own).
    """

    MAX_KINDS = 1000  # lines of kinds not seen for a period are forgotten beyond this

    def __init__(self, name: str, *, period_s: float = 60.0, ceiling: int = logging.WARNING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logging.getLogger(name)
        self.period_s, self.ceiling, self.clock = period_s, ceiling, clock
        self._lock = threading.Lock()  # librdkafka may log from its own threads
        self._seen: dict[tuple[int, str], list[float]] = {}  # kind -> [first logged, count]

    def log(self, level: int, msg: str, *args: object) -> None:
        """Log *msg* % *args* at *level* (capped), unless its kind was logged recently."""
        level = min(int(level), self.ceiling)
        if not self.logger.isEnabledFor(level):
            return
        text = msg % args if args else msg
        key = (level, re.sub(r"\d+", "#", text))
        with self._lock:
            now = self.clock()
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.period_s:
                entry[1] += 1
                return
            suppressed, since = (int(entry[1]), now - entry[0]) if entry else (0, 0.0)
            if len(self._seen) >= self.MAX_KINDS:
                self._seen = {k: v for k, v in self._seen.items()
                              if now - v[0] < self.period_s}
            self._seen[key] = [now, 0]
        if suppressed:
            self.logger.log(level, "%s (and %d like it in the last %.0f s, not shown)", text,
                            suppressed, since)
        else:
            self.logger.log(level, "%s", text)
