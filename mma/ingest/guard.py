"""The guard around each step: a bad message is dead-lettered, a database failure retried.

Any :class:`mma.errors.BadMessage` (and any unexpected error of a handler or of
the skymap code) sends the raw bytes to the dead-letter table with the origin
and the reason, and the stream goes on; :class:`mma.errors.Ignored` messages are
only counted. Database failures are not the message's fault: they surface as
:class:`mma.errors.TransientError` (:func:`database_errors`, the one place that
maps them) so that the caller retries instead of dead-lettering good data. The
exception is the database refusing the values themselves (invalid JSON, a
number out of range, a NOT NULL column left empty:
:func:`mma.db.engine.refuses_values`): the same message would fail forever, so
it is an :class:`mma.errors.InvalidValue` and is dead-lettered.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, StatementError

from mma.db import store
from mma.db.engine import describe_error, refuses_values
from mma.epochs import check_item
from mma.errors import BadMessage, Ignored, InvalidValue, TransientError
from mma.ingest.stage import Handler, Outcome
from mma.models import Item

log = logging.getLogger(__name__)


@contextmanager
def database_errors(what: str, on_error: Callable[[], None] | None = None) -> Iterator[None]:
    """Turn a database failure inside the block into :class:`TransientError`.

    Parameters
    ----------
    what
        Names the step in the error (origin of the message, or the job).
    on_error
        Called first (e.g. to mark an in-memory index stale).

    Raises
    ------
    TransientError
        The database failed (connection, locks, a race): retry.
    InvalidValue
        The database refused the values written (:func:`refuses_values`), or
        the JSON serializer did (NaN, infinity; SQLAlchemy's ``StatementError``
        on SQLite): retrying the same message cannot succeed.
    """
    try:
        yield
    except DBAPIError as exc:  # OperationalError included
        if on_error is not None:
            on_error()
        if refuses_values(exc):
            raise InvalidValue(f"{what}: the database refused a value: "
                               f"{describe_error(exc)}") from exc
        raise TransientError(f"{what}: database error: {describe_error(exc)}") from exc
    except StatementError as exc:  # a value refused before it was sent (JSON serializer)
        if not isinstance(exc.orig, BadMessage):
            raise
        if on_error is not None:
            on_error()
        raise InvalidValue(f"{what}: {exc.orig}") from exc


def parse_checked(handler: Handler, raw: bytes, *, topic: str = "") -> Item:
    """The handler's parse, then its times checked (:func:`mma.epochs.check_item`).

    Raises
    ------
    BadMessage
        The handler refused the message, or one of its times is out of range.
    Ignored
        A valid message of no interest.
    """
    item = handler.parse(raw, topic=topic)
    check_item(item, handler)
    return item


@dataclass
class Parsed:
    """A message after :meth:`Guard.parse`: its item, or why it has none."""

    handler: Handler
    raw: bytes
    origin: str
    item: Item | None = None
    error: Exception | None = None


class Guard:
    """Dead letters, ignored messages and the counts of what happened, on *engine*."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.counts: Counter[str] = Counter()

    def parse(self, handler: Handler, raw: bytes, *, origin: str, topic: str = "") -> Parsed:
        """Parse one message without touching the database; never raises."""
        try:
            return Parsed(handler, raw, origin, item=parse_checked(handler, raw, topic=topic))
        except Exception as exc:  # Ignored, BadMessage, or a handler bug: settled later
            if not isinstance(exc, BadMessage | Ignored):
                log.exception("%s: unexpected error in %s", origin, handler.NAME)
            return Parsed(handler, raw, origin, error=exc)

    def settle(self, parsed: Parsed) -> Outcome:
        """Count an ignored message or dead-letter a failed one (see :meth:`parse`).

        Raises
        ------
        TransientError
            The database is down: retry (the message was not recorded).
        """
        assert parsed.error is not None
        if isinstance(parsed.error, Ignored):
            return self.ignored(parsed.handler.NAME, parsed.origin, parsed.error)
        return self.dead_letter(parsed.handler.NAME, parsed.origin, parsed.error, parsed.raw)

    def ignored(self, source: str, origin: str, reason: Ignored) -> Outcome:
        """Count a valid message of no interest (not stored, not dead-lettered)."""
        log.debug("%s: skipped by %s: %s", origin, source, reason)
        self.counts["ignored"] += 1
        return Outcome("ignored")

    def dead_letter(self, source: str, origin: str, error: BaseException, raw: bytes) -> Outcome:
        """Keep a message that cannot be processed, with its origin and the reason.

        Raises
        ------
        TransientError
            The database is down: the message must be retried, not dropped.
        """
        with database_errors(f"{origin}: cannot store dead letter"):
            pk = store.add_dead_letter(self.engine, source=source, origin=origin,
                                       error=error, raw=raw)
        log.error("%s: dead letter #%d (%s, %d bytes): %s", origin, pk, type(error).__name__,
                  len(raw), error)
        self.counts["dead_letter"] += 1
        return Outcome("dead_letter")
