"""Strict, size-capped JSON and base64 decoding for GCN/LVK notices and broker JSON.

Python's :func:`json.loads` is lenient in ways a daemon fed by strangers should
not be: it accepts ``NaN``/``Infinity``, turns ``1e999`` into ``inf``, silently
keeps the last of duplicate keys, guesses UTF-16/32 encodings and reads integers
of any length that no float can then hold (``math.isfinite`` of a 401-digit
integer raises OverflowError in whatever code reads it later). Everything
here fails with a :class:`~mma.errors.BadMessage` subclass whose message says
what was wrong, so the raw bytes can go to the dead-letter table.
"""

from __future__ import annotations

import binascii
import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any

from mma.errors import HostileMessage, InvalidValue, MalformedMessage
from mma.formats.encoding import not_utf8
from mma.printable import printable

__all__ = ["b64decode_capped", "load_json"]

logger = logging.getLogger(__name__)

_UTF8_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n\v\f"  # what MIME-style encoders insert between base64 lines
_MAX_INT_DIGITS = 309  # 2**1024, beyond which float() overflows, has 309 digits
# In the raw text: an escape that may decode to NUL or to a surrogate (cheap pre-test).
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class _Unusable(str):
    """A JSON number no float holds, kept as its text until its path is known."""

    __slots__ = ()


class _Overflow(_Unusable):
    """A fractional or exponent number beyond float range (``1e999``)."""

    __slots__ = ()


class _Constant(_Unusable):
    """``NaN``, ``Infinity`` or ``-Infinity``: not JSON at all."""

    __slots__ = ()


def _finite_float(text: str) -> float | _Overflow:
    value = float(text)
    # 1e999 parses to inf: as unusable as a literal Infinity.
    return value if math.isfinite(value) else _Overflow(text)


def _float_int(text: str) -> int | _Unusable:
    """An integer literal, or :class:`_Unusable` when no float can hold it.

    The digits are counted before int() runs, so a 5000-digit literal costs
    nothing (int() refuses beyond 4300 digits; float() overflows beyond 309).
    """
    if len(text) - text.startswith("-") > _MAX_INT_DIGITS:
        return _Unusable(text)
    value = int(text)
    try:
        float(value)
    except OverflowError:
        return _Unusable(text)
    return value


def _number_hooks(seen: list[str]) -> tuple[Callable[[str], Any], ...]:
    """``parse_constant``, ``parse_float`` and ``parse_int`` that note in *seen* any
    unusable number, so that the walk after the parse names its path."""
    def parse_constant(text: str) -> Any:
        seen.append(text)
        return _Constant(text)

    def parse_float(text: str) -> Any:
        value = _finite_float(text)
        if isinstance(value, _Unusable):
            seen.append(value)
        return value

    def parse_int(text: str) -> Any:
        value = _float_int(text)
        if isinstance(value, _Unusable):
            seen.append(value)
        return value

    return parse_constant, parse_float, parse_int


def _find(value: Any, bad: Callable[[Any], bool], path: str = "") -> tuple[str, Any] | None:
    """The path (``event.far``, ``ids[2]``) and value of the first item that is *bad*
    (keys included), depth first."""
    if bad(value):
        return path or "(top level)", value
    items: Any = ()
    if isinstance(value, dict):
        items = ((f"{path}.{k}" if path else str(k), k, v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", "", v) for i, v in enumerate(value))
    for sub_path, key, item in items:
        if bad(key):
            return sub_path, key
        found = _find(item, bad, sub_path)
        if found is not None:
            return found
    return None


def _walk(value: Any, bad: Callable[[Any], bool]) -> tuple[str, Any] | None:
    try:
        found = _find(value, bad)
    except RecursionError as exc:  # the walk nests a little deeper than json's parser
        raise HostileMessage("JSON nesting is too deep") from exc
    return None if found is None else (printable(found[0][:80]), found[1])


def _refuse_unusable(value: Any) -> None:
    found = _walk(value, lambda item: isinstance(item, _Unusable))
    if found is None:
        return
    path, text = found
    if isinstance(text, _Constant):
        raise MalformedMessage(f"{path}: JSON contains the non-standard constant {text}")
    if isinstance(text, _Overflow):
        raise MalformedMessage(f"{path}: JSON number {text[:40]} overflows a float")
    digits = len(text) - text.startswith("-")
    raise InvalidValue(f"{path} is a {digits}-digit integer: not a finite number in "
                       "range (a float holds at most 309 digits)")


def _refuse_unstorable(value: Any) -> None:
    """Refuse NUL characters and lone surrogates in strings (escaped in the JSON text):
    valid JSON, but no PostgreSQL text or jsonb value takes them."""
    found = _walk(value, lambda item: isinstance(item, str) and bool(_UNSTORABLE.search(item)))
    if found is not None:
        raise MalformedMessage(f"{found[0]}: JSON text holds a NUL character or a lone "
                               "surrogate (\\u0000, \\ud800...), which no database stores")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise MalformedMessage(f"JSON object has duplicate key {key[:60]!r}")
            seen.add(key)
    return obj


def load_json(raw: bytes, *, max_bytes: int) -> dict[str, Any]:
    """Decode one JSON object from UTF-8 bytes, strictly and with a size cap.

    Parameters
    ----------
    raw : bytes
        The message. A leading UTF-8 byte-order mark is tolerated (RFC 8259 lets
        parsers ignore it); any other encoding is rejected.
    max_bytes : int
        Largest accepted message [bytes]; checked before any decoding.

    Returns
    -------
    dict
        The top-level JSON object.

    Raises
    ------
    HostileMessage
        Larger than ``max_bytes``, or nested deeply enough to exhaust the stack.
    MalformedMessage
        Empty, invalid UTF-8, invalid JSON, ``NaN``/``Infinity``, a fractional or
        exponent number that overflows a float (these two name their path),
        duplicate keys, a string holding NUL or a lone surrogate (no database
        stores them; the message names the path), or a top level that is not an
        object.
    InvalidValue
        An integer no float can hold (more than 309 digits, e.g. a 401-digit
        FAR); the message names its path (``event.far``) so the field is known.
    """
    if len(raw) > max_bytes:
        raise HostileMessage(f"JSON message is {len(raw)} bytes, above the cap of {max_bytes}")
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM) :]
    if not raw.strip():
        raise MalformedMessage("empty message: expected a JSON object")
    refusal = not_utf8(raw)  # UTF-16 ASCII is valid UTF-8 (NULs between): tell it first
    if refusal is not None:
        raise refusal
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedMessage(
            f"JSON is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from exc
    unusable: list[str] = []
    parse_constant, parse_float, parse_int = _number_hooks(unusable)
    try:
        value = json.loads(
            text,
            parse_constant=parse_constant,
            parse_float=parse_float,
            parse_int=parse_int,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        raise MalformedMessage(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise HostileMessage("JSON nesting is too deep") from exc
    except ValueError as exc:
        raise MalformedMessage(f"invalid JSON value: {exc}") from exc
    if not isinstance(value, dict):
        raise MalformedMessage(f"JSON top level is {type(value).__name__}, expected an object")
    if unusable:  # found by the walk, which knows the path to name
        _refuse_unusable(value)
    if _SUSPECT_ESCAPE.search(raw):  # pairs of surrogates (emoji) are fine: walk to see
        _refuse_unstorable(value)
    return value


def b64decode_capped(encoded: str | bytes, *, max_bytes: int, what: str = "base64 field") -> bytes:
    """Decode standard base64, refusing oversized payloads before decoding them.

    Parameters
    ----------
    encoded : str or bytes
        Base64 text (standard alphabet, ``=`` padding). Whitespace such as MIME
        line breaks is allowed and ignored; any other stray character is an error.
    max_bytes : int
        Largest accepted decoded size [bytes]. The size is estimated from the
        length of ``encoded`` (3 bytes per 4 characters) so a huge payload is
        refused without allocating its decoded form.
    what : str
        Name of the field, for error messages (e.g. ``"event.skymap"``).

    Returns
    -------
    bytes
        The decoded payload.

    Raises
    ------
    HostileMessage
        The decoded payload would exceed ``max_bytes``.
    MalformedMessage
        Not ASCII, characters outside the base64 alphabet, or bad padding.
    """
    estimate = len(encoded) * 3 // 4
    if estimate > max_bytes:
        raise HostileMessage(
            f"{what} would decode to about {estimate} bytes, above the cap of {max_bytes}"
        )
    if isinstance(encoded, str):
        try:
            data = encoded.encode("ascii")
        except UnicodeEncodeError as exc:
            raise MalformedMessage(f"{what} is not base64: non-ASCII character") from exc
    else:
        data = encoded
    # strict_mode refuses characters outside the alphabet, which the default
    # mode would silently skip; whitespace is removed only if decoding needs it.
    try:
        decoded = binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error as exc:
        stripped = data.translate(None, _WHITESPACE)
        if len(stripped) == len(data):
            raise MalformedMessage(f"{what} is not valid base64: {exc}") from exc
        try:
            decoded = binascii.a2b_base64(stripped, strict_mode=True)
        except binascii.Error as exc2:
            raise MalformedMessage(f"{what} is not valid base64: {exc2}") from exc2
    if len(decoded) > max_bytes:  # cannot happen given the estimate; kept as a guard
        raise HostileMessage(f"{what} decodes to {len(decoded)} bytes, above {max_bytes}")
    return decoded
