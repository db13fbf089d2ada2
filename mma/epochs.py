"""The times a record may carry: after its mission began, not in the future.

A time outside that range is a corrupt or crafted field, not an observation: it
would move a replay's clock, open a window decades long or overflow date
arithmetic (year 1 minus a window, year 9999 plus one). Every parsed record is
checked here once, right after its handler parsed it (:func:`check_item`):

* the lower bound is the handler's ``FIRST_LIGHT`` (timezone-aware UTC: when the
  instrument or alert stream began, with its source in a comment beside it), or
  :data:`EARLIEST` for a handler that names none;
* the upper bound is the wall clock plus :data:`FUTURE_SLACK`, since no notice or
  alert describes something that has not happened yet; the slack absorbs clock
  skew between the sender and this machine.

Handlers that compute with a time before returning (a window, a history) call
:func:`check_time` themselves with the same bounds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mma.errors import InvalidValue
from mma.models import Alert, Notice

#: Default lower bound: before the first event any handler here describes
#: (SN 1987A's neutrinos are older, but no stream of ours carries them).
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)

#: How far beyond the wall clock a time may lie (sender clock skew).
FUTURE_SLACK = timedelta(days=1)


def first_light(handler: Any) -> datetime:
    """The handler's ``FIRST_LIGHT``, or :data:`EARLIEST`."""
    when = getattr(handler, "FIRST_LIGHT", None)
    return when if isinstance(when, datetime) else EARLIEST


def check_time(when: datetime, *, what: str, since: datetime = EARLIEST,
               now: datetime | None = None) -> datetime:
    """Return *when* if it lies in [*since*, *now* + :data:`FUTURE_SLACK`].

    Parameters
    ----------
    when : datetime
        The time to check (timezone-aware UTC).
    what : str
        What the time is, for the error (e.g. ``"event time"``).
    since : datetime
        The earliest acceptable time (the mission's start).
    now : datetime, optional
        The wall clock; default :func:`datetime.now` in UTC.

    Raises
    ------
    InvalidValue
        *when* is naive, before *since* or after the wall clock plus the slack.
    """
    if when.tzinfo is None:
        raise InvalidValue(f"{what} {when.isoformat()} has no time zone")
    latest = (now or datetime.now(UTC)) + FUTURE_SLACK
    if when < since:
        raise InvalidValue(f"{what} {when.isoformat()} is before {since.date().isoformat()}, "
                           "when this source began")
    if when > latest:
        raise InvalidValue(f"{what} {when.isoformat()} is in the future "
                           f"(later than {latest.isoformat(timespec='seconds')})")
    return when


def check_item(item: Notice | Alert, handler: Any, *, now: datetime | None = None) -> None:
    """Check every time of a parsed record against its handler's range.

    Raises
    ------
    InvalidValue
        One of the record's times is out of range (see :func:`check_time`).
    """
    since = first_light(handler)
    now = now or datetime.now(UTC)
    if isinstance(item, Notice):
        check_time(item.event_time, what="event time", since=since, now=now)
        # A notice is issued after its event; a retraction years later is still valid.
        check_time(item.issued_time, what="issue time", since=since, now=now)
        return
    check_time(item.time, what="detection time", since=since, now=now)
    if item.first_detection is not None:
        check_time(item.first_detection, what="first detection", since=since, now=now)
