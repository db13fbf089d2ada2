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
from collections.abc import Callable
from typing import Any

from mma.errors import HostileMessage, InvalidValue, MalformedMessage

__all__ = ["b64decode_capped", "load_json"]

logger = logging.getLogger(__name__)

_UTF8_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n\v\f"  # what MIME-style encoders insert between base64 lines
_MAX_INT_DIGITS = 309  # 2**1024, beyond which float() overflows, has 309 digits


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


def _find_unusable(value: Any, path: str = "") -> tuple[str, _Unusable] | None:
    """The path (``event.far``, ``ids[2]``) and text of the first unusable number."""
    if isinstance(value, _Unusable):
        return path or "(top level)", value
    items: Any = ()
    if isinstance(value, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    for sub_path, item in items:
        found = _find_unusable(item, sub_path)
        if found is not None:
            return found
    return None


def _refuse_unusable(value: Any) -> None:
    try:
        found = _find_unusable(value)
    except RecursionError as exc:  # the walk nests a little deeper than json's parser
        raise HostileMessage("JSON nesting is too deep") from exc
    if found is None:
        return
    path, text = found
    if isinstance(text, _Constant):
        raise MalformedMessage(f"{path[:80]}: JSON contains the non-standard constant {text}")
    if isinstance(text, _Overflow):
        raise MalformedMessage(f"{path[:80]}: JSON number {text[:40]} overflows a float")
    digits = len(text) - text.startswith("-")
    raise InvalidValue(f"{path[:80]} is a {digits}-digit integer: not a finite number in "
                       "range (a float holds at most 309 digits)")


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
        duplicate keys, or a top level that is not an object.
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
