"""Strict, size-capped JSON and base64 decoding for GCN/LVK notices and broker JSON.

Python's :func:`json.loads` is lenient in ways a daemon fed by strangers should
not be: it accepts ``NaN``/``Infinity``, turns ``1e999`` into ``inf``, silently
keeps the last of duplicate keys and guesses UTF-16/32 encodings. Everything
here fails with a :class:`~mma.errors.BadMessage` subclass whose message says
what was wrong, so the raw bytes can go to the dead-letter table.
"""

from __future__ import annotations

import binascii
import json
import logging
import math
from typing import Any, NoReturn

from mma.errors import HostileMessage, MalformedMessage

__all__ = ["b64decode_capped", "load_json"]

logger = logging.getLogger(__name__)

_UTF8_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n\v\f"  # what MIME-style encoders insert between base64 lines


def _reject_constant(name: str) -> NoReturn:
    raise MalformedMessage(f"JSON contains the non-standard constant {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # 1e999 parses to inf: as unusable as a literal Infinity.
        raise MalformedMessage(f"JSON number {text[:40]} overflows a float")
    return value


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
        Empty, invalid UTF-8, invalid JSON, ``NaN``/``Infinity``, a number that
        overflows a float, duplicate keys, or a top level that is not an object.
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
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        raise MalformedMessage(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise HostileMessage("JSON nesting is too deep") from exc
    except ValueError as exc:
        # e.g. an integer with more digits than int() accepts (CVE-2020-10735 limit).
        raise MalformedMessage(f"invalid JSON value: {exc}") from exc
    if not isinstance(value, dict):
        raise MalformedMessage(f"JSON top level is {type(value).__name__}, expected an object")
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
