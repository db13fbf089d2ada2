"""Object and alert identifiers from alert streams: checked before they go anywhere.

An id becomes a database key, a log field, a report column and a line on an
operator's terminal, so a sender's id must not carry a newline (a forged log
line), an escape sequence (``ESC [2J`` clears a terminal), a bidirectional
override (U+202E reverses what follows) or a megabyte of text. Every alert
handler passes its object and alert ids through :func:`text_id` or
:func:`integer_id`, as the notice handlers do for event ids:

* printable ASCII only (``!`` to ``~``: no space, no control, nothing else),
  at most :data:`MAX_ID_CHARS` characters;
* the survey's own pattern where it documents one: :data:`ZTF_OBJECT`
  (``ZTF18abudxnw``), :data:`LSST_ID` (a positive 64-bit integer: Rubin
  ``diaObjectId``/``diaSourceId``), :data:`ANTARES_LOCUS` (``ANT2019b5sdo``).

A refused id is an :class:`~mma.errors.InvalidValue` naming the field, with the
id shown by :func:`shown` (escaped, truncated), never raw.
"""

from __future__ import annotations

import re
from typing import Any

from mma.errors import InvalidValue, MissingField

__all__ = [
    "ANTARES_LOCUS", "INT64_MAX", "LSST_ID", "MAX_ID_CHARS", "PRINTABLE", "ZTF_OBJECT",
    "escaped", "integer_id", "lsst_id_text", "shown", "text_id",
]

MAX_ID_CHARS = 64
"""Longest accepted id [characters]: ZTF ids have 12, Rubin ids up to 19 digits,
ANTARES locus ids about 12; the synthetic broker ids built from them stay under 64."""

INT64_MAX = 2**63 - 1
"""Largest Rubin/ZTF integer id: both are Avro ``long`` (signed 64-bit)."""

PRINTABLE = re.compile(r"[!-~]+")
"""Printable ASCII without space: what any id may contain."""

ZTF_OBJECT = re.compile(r"ZTF\d{2}[a-z]{7}")
"""ZTF ``objectId``: ``ZTF``, two digits of the year first seen, seven lower-case letters
(every ZTF packet, Fink row, Babamul and Pitt-Google file of the corpus matches)."""

LSST_ID = re.compile(r"[1-9]\d{0,18}")
"""A Rubin id in decimal (``diaObjectId``, ``diaSourceId``): positive, at most 19 digits."""

ANTARES_LOCUS = re.compile(r"ANT20\d{2}[a-z0-9]{1,16}")
"""ANTARES ``locus_id``: ``ANT``, the year the locus was created, a lower-case base-36
serial (``ANT2019b5sdo``)."""

_SHOWN_CHARS = 40


def shown(value: Any, limit: int = _SHOWN_CHARS) -> str:
    """A safe rendering of a sender's value for an error or log line.

    Python's :func:`ascii` of at most *limit* characters: quotes, and escapes for
    newlines, ESC, BEL, U+202E and anything else outside printable ASCII, so the
    result is one line of printable ASCII; ``...(N chars)`` marks a cut.
    """
    if isinstance(value, str | bytes):
        cut = f"...({len(value)} chars)" if len(value) > limit else ""
        return ascii(value[:limit]) + cut
    if isinstance(value, int) and value.bit_length() > 128:
        return f"<an integer of {value.bit_length()} bits>"  # str() of it may not even work
    if value is None or isinstance(value, int | float):
        return ascii(value)
    return f"<{type(value).__name__}>"  # a list or a record: its type says enough


def text_id(value: Any, *, field: str, pattern: re.Pattern[str] | None = None,
            what: str = "") -> str:
    """Return *value* if it is a usable string id, else raise naming *field*.

    Parameters
    ----------
    value : any
        The id as the sender gave it.
    field : str
        Where it came from (``objectId``, ``locus_id``...), for the error.
    pattern : re.Pattern, optional
        The survey's id pattern, matched in full.
    what : str
        What the pattern describes (``"a ZTF object id"``), for the error.

    Raises
    ------
    MissingField
        *value* is None or empty.
    InvalidValue
        Not a string, longer than :data:`MAX_ID_CHARS`, not printable ASCII, or
        not matching *pattern*.
    """
    if value is None or value == "":
        raise MissingField(f"{field} is missing")
    if not isinstance(value, str):
        raise InvalidValue(f"{field} {shown(value)} is {type(value).__name__}, not a string id")
    if len(value) > MAX_ID_CHARS:
        raise InvalidValue(f"{field} {shown(value)} is longer than {MAX_ID_CHARS} characters")
    if not PRINTABLE.fullmatch(value):
        raise InvalidValue(f"{field} {shown(value)} holds characters other than printable ASCII")
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidValue(f"{field} {shown(value)} is not {what or 'a valid id'}")
    return value


def integer_id(value: Any, *, field: str) -> int:
    """Return *value* if it is a positive 64-bit integer id, else raise naming *field*.

    Raises
    ------
    MissingField
        *value* is None.
    InvalidValue
        Not an int (a bool is not), zero or negative, or above :data:`INT64_MAX`.
    """
    if value is None:
        raise MissingField(f"{field} is missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{field} {shown(value)} is {type(value).__name__}, not an integer id")
    if not 0 < value <= INT64_MAX:
        raise InvalidValue(f"{field} {shown(value)} is not a positive 64-bit id")
    return value


def lsst_id_text(value: Any, *, field: str) -> str:
    """A Rubin id given as an int or as its decimal string (brokers write both), as a string.

    Raises
    ------
    MissingField, InvalidValue
        As :func:`integer_id` for an int, :func:`text_id` with :data:`LSST_ID` otherwise.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return str(integer_id(value, field=field))
    return text_id(value, field=field, pattern=LSST_ID, what="a Rubin id (a positive integer)")


def escaped(text: str, limit: int = 200) -> str:
    """*text* (e.g. a library's error, which may quote the sender) on one printable line.

    Everything outside printable ASCII is escaped as Python would (``\\n``, ``\\x1b``,
    ``\\u202e``), without the quotes :func:`shown` adds; cut at *limit* characters.
    """
    cut = "..." if len(text) > limit else ""
    return ascii(text[:limit])[1:-1] + cut
