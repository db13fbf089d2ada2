"""Text encodings a sender may use by mistake: UTF-16 and UTF-32.

Every text format mma reads (GCN JSON, VOEvent XML, broker JSON) is UTF-8.
Text in UTF-16 or UTF-32 is recognisable from its first bytes; saying so is a
more useful dead-letter reason than "invalid JSON" or "no handler recognises
content".
"""

from __future__ import annotations

from mma.errors import MalformedMessage

_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32-BE"), (b"\xff\xfe\x00\x00", "UTF-32-LE"),
    (b"\xfe\xff", "UTF-16-BE"), (b"\xff\xfe", "UTF-16-LE"),
)  # UTF-32-LE's mark starts with UTF-16-LE's: the longer ones are tried first
# (encoding, period, offset of the ASCII byte in each period): ASCII text in
# these encodings is every 2nd or 4th byte, NULs between.
_INTERLEAVED = (("UTF-32-LE", 4, 0), ("UTF-32-BE", 4, 3), ("UTF-16-LE", 2, 0),
                ("UTF-16-BE", 2, 1))
_TEXT_BYTES = frozenset(b"\t\n\r" + bytes(range(0x20, 0x7F)))


def wide_text(raw: bytes) -> str | None:
    """The encoding of *raw* if it is text in UTF-16 or UTF-32, else None.

    Told by a byte-order mark, or without one by ASCII characters interleaved
    with NULs in the first 64 bytes (what ``{"`` or ``<?`` becomes in UTF-16).
    """
    for bom, name in _BOMS:
        if raw.startswith(bom):
            return f"{name} (byte-order mark {bom.hex(' ').upper()})"
    for name, period, at in _INTERLEAVED:
        head = raw[: 64 - 64 % period]
        if len(head) < 2 * period:
            continue
        chars = head[at::period]
        nuls = bytes(b for i, b in enumerate(head) if i % period != at)
        if not nuls.strip(b"\x00") and all(c in _TEXT_BYTES for c in chars):
            return f"{name} (ASCII interleaved with NUL bytes, no byte-order mark)"
    return None


def not_utf8(raw: bytes) -> MalformedMessage | None:
    """The refusal of *raw* if it is text in UTF-16 or UTF-32, else None."""
    encoding = wide_text(raw)
    if encoding is None:
        return None
    return MalformedMessage(f"text encoded as {encoding}; only UTF-8 is accepted")
