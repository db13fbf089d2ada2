"""New-style GCN JSON notices: the envelope every ``gcn.notices.*`` schema shares.

The core pieces (``gcn/notices/core/{Alert,Event}.schema.json``):

``alert_type``, ``alert_tense``
    ``initial``/``subsequent``/``update``/``retraction``; a tense of ``test`` or
    ``injection`` marks a notice that must never reach production output.
``trigger_time``, ``alert_datetime``
    ISO 8601 UTC. Some producers (SVOM, the Fermi LAT flare advocate) omit the
    ``Z``: such times are read as UTC and flagged ``naive_time_assumed_utc``.
``id``, ``record_number``
    The identifiers that become event ids: printable, short, no path separators.

Also the small readers the handlers share (numbers, names, schema sniffing). The
sky region of a notice is :mod:`mma.formats.gcn_localization`. Errors are
:class:`~mma.errors.BadMessage` subclasses naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mma.errors import InvalidValue, MissingField

__all__ = ["ALERT_TENSES", "ALERT_TYPES", "TEST_TENSES", "Envelope", "envelope", "finite",
           "first_id", "json_head_matches", "names", "number", "schema_matches",
           "utc_time"]  # fmt: skip

ALERT_TYPES = frozenset({"initial", "subsequent", "update", "retraction"})
ALERT_TENSES = frozenset({"current", "archival", "planned", "injection", "commanded", "test"})
TEST_TENSES = frozenset({"test", "injection"})

# Identifiers become event ids and DB keys: printable, short, no path separators.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+\- ]{0,99}")


def utc_time(value: Any, where: str) -> tuple[datetime, bool]:
    """Parse an ISO 8601 time; return it in UTC and whether a missing offset was assumed UTC."""
    if value is None:
        raise MissingField(f"{where} is missing")
    if not isinstance(value, str):
        raise InvalidValue(f"{where} is {type(value).__name__}, expected an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidValue(f"{where} {value[:40]!r} is not an ISO 8601 time") from exc
    if parsed.utcoffset() is None:
        return parsed.replace(tzinfo=UTC), True
    try:
        return parsed.astimezone(UTC), False
    except OverflowError as exc:  # year 1 east of Greenwich, year 9999 west of it
        raise InvalidValue(f"{where} {value[:40]!r} is outside the years 1-9999 in UTC") from exc


def number(obj: Mapping[str, Any], key: str, where: str = "") -> float | None:
    """``obj[key]`` as a finite float, or None if absent or null."""
    value = obj.get(key)
    return None if value is None else finite(value, f"{where}{key}")


def finite(value: Any, where: str) -> float:
    """*value* as a finite float; InvalidValue naming *where* for text, booleans, null,
    inf, or an integer too long for a float (``load_json`` refuses those already)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"{where} is {type(value).__name__}, expected a number")
    try:
        number = float(value)
    except OverflowError as exc:
        raise InvalidValue(f"{where} ({len(str(abs(value)))}-digit integer) is not a finite "
                           "number in range") from exc
    if not math.isfinite(number):
        raise InvalidValue(f"{where} {value!r} is not finite")
    return number


def names(value: Any, where: str) -> tuple[str, ...]:
    """A string or a list of strings (``id``, ``event_name``) as a tuple of valid names."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str | int) and not isinstance(value, bool) else value
    if not isinstance(items, list) or not items:
        raise InvalidValue(f"{where} must be a name or a non-empty list of names")
    out = tuple(str(i) if isinstance(i, int) and not isinstance(i, bool) else i for i in items)
    for text in out:
        if not isinstance(text, str) or not _ID.fullmatch(text):
            raise InvalidValue(f"{where} {str(text)[:40]!r} is not a usable identifier")
    return out


def first_id(msg: Mapping[str, Any], key: str = "id") -> str | None:
    """The first of the notice's ``id`` values (a string or a list of strings), or None."""
    ids = names(msg.get(key), key)
    return ids[0] if ids else None


def json_head_matches(raw: bytes, pattern: re.Pattern[bytes]) -> bool:
    """Cheap ``sniff``: *raw* opens a JSON object and its first 4 kB match *pattern*.

    The keys that tell notice types apart (``$schema``, ``instrument``) come
    first in every producer's output; searching the head only keeps sniffing a
    3 MB map-carrying message as fast as a small one.
    """
    if raw[:64].lstrip(b"\xef\xbb\xbf \t\r\n")[:1] != b"{":  # slice first: no copy
        return False
    return pattern.search(raw[:4096]) is not None


def schema_matches(msg: Mapping[str, Any], *fragments: str) -> bool:
    """True if the notice's ``$schema`` URL contains one of *fragments*."""
    schema = msg.get("$schema")
    return isinstance(schema, str) and any(f in schema for f in fragments)


@dataclass(frozen=True)
class Envelope:
    """The parts every GCN JSON notice shares, read and checked: ``notice_type``
    (``alert_type`` or the handler's default), ``event_time``/``issued_time`` (UTC;
    without ``alert_datetime`` the issue time is the event time, flag
    ``no_issued_time``), ``retraction``, ``test``, ``flags`` and ``properties``
    (``alert_type``, ``alert_tense``, ``record_number`` as given)."""

    notice_type: str
    event_time: datetime
    issued_time: datetime
    retraction: bool
    test: bool
    flags: tuple[str, ...]
    properties: dict[str, Any]


def envelope(msg: Mapping[str, Any], *, topic: str, default_type: str,
             time_key: str = "trigger_time") -> Envelope:
    """Read ``alert_type``, ``alert_tense``, the event and issue times of a notice.

    *topic* containing ``.test.`` marks a test; *default_type* is the
    ``notice_type`` without ``alert_type``; *time_key* holds the event time
    (``observation_start`` for notices without a trigger).

    Raises
    ------
    MissingField
        The event time is missing.
    InvalidValue
        Unknown ``alert_type``/``alert_tense``, unparseable time, bad ``record_number``.
    """
    flags: list[str] = []
    alert_type = msg.get("alert_type")
    if alert_type is not None and alert_type not in ALERT_TYPES:
        raise InvalidValue(f"alert_type {str(alert_type)[:40]!r} is not one of "
                           f"{sorted(ALERT_TYPES)}")
    tense = msg.get("alert_tense")
    if tense is not None and tense not in ALERT_TENSES:
        raise InvalidValue(f"alert_tense {str(tense)[:40]!r} is not one of {sorted(ALERT_TENSES)}")
    if tense not in (None, "current"):
        flags.append(f"alert_tense_{tense}")
    test = tense in TEST_TENSES
    if ".test." in f".{topic}.":
        test = True
        flags.append("test_topic")
    record = msg.get("record_number")
    if record is not None and (isinstance(record, bool) or not isinstance(record, int)
                               or not 0 <= record < 2**31):
        raise InvalidValue(f"record_number {str(record)[:40]} is not an integer in [0, 2**31)")
    event_time, naive = utc_time(msg.get(time_key), time_key)
    if msg.get("alert_datetime") is None:
        issued_time = event_time
        flags.append("no_issued_time")
    else:
        issued_time, naive_issued = utc_time(msg.get("alert_datetime"), "alert_datetime")
        naive = naive or naive_issued
    if naive:
        flags.append("naive_time_assumed_utc")
    return Envelope(
        notice_type=alert_type or default_type,
        event_time=event_time,
        issued_time=issued_time,
        retraction=alert_type == "retraction",
        test=test,
        flags=tuple(flags),
        properties={"alert_type": alert_type, "alert_tense": tense, "record_number": record},
    )
