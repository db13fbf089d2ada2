"""Untrusted text made safe to print: the one escaping of logs, tables and summaries.

Object ids, event ids, file names, URLs, topic and instance names and error
texts reach log lines and the tables of ``mma replay`` and ``mma status``
straight from the input, or from rows stored before the handlers validated
them. Printed raw, a newline forges a log line, ESC starts a terminal control
sequence (clear the screen, recolour, retitle the window), BEL rings, a
right-to-left override (U+202E) reverses what follows, and a lone surrogate
makes the UTF-8 encoder of stderr raise. :func:`printable` renders every such
character visibly, in the notation of Python's ``repr`` (``\\n``, ``\\x1b``,
``\\u202e``, ``\\udc80``), so that what was one field stays one visible field on
one line.

Escaped are the Unicode categories ``Cc`` (C0 and C1 controls, DEL; this
includes TAB, CR, LF and NEL), ``Cf`` (format characters: the bidi embeddings,
overrides and isolates U+202A–U+202E and U+2066–U+2069, the marks U+200E, U+200F
and U+061C, zero-width spaces and joiners, the BOM, tag characters), ``Zl`` and
``Zp`` (U+2028, U+2029) and ``Cs`` (lone surrogates). Everything else, letters
and symbols of any script included, is printed as it is.

The backslash itself is not doubled: the escaping keeps the output safe and
readable, it is not a reversible encoding (error texts that already quote a
value with ``repr`` would otherwise show doubled backslashes). The exact bytes
are kept where it matters: in the stored rows and the dead-letter table.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["UNSAFE_CATEGORIES", "printable", "printable_lines"]

UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Printable ASCII needs no look-up; anything else is checked character by character.
_SUSPECT = re.compile(r"[^ -~]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if unicodedata.category(ch) not in UNSAFE_CATEGORIES:
        return ch
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: object) -> str:
    """*value* as text with every control, format and separator character escaped.

    Parameters
    ----------
    value : object
        Any value; non-strings are converted with ``str`` first.

    Returns
    -------
    str
        One line of text without terminal controls, bidi overrides, invisible
        format characters or lone surrogates: each is replaced by its
        backslash escape (``\\n``, ``\\x1b``, ``\\u202e``...).
    """
    text = value if isinstance(value, str) else str(value)
    # Fast path: str.isprintable is False for every unsafe category (a test checks
    # this over all code points), so printable text is returned untouched.
    if text.isprintable():
        return text
    return _SUSPECT.sub(_escape, text)


def printable_lines(text: str) -> list[str]:
    """The lines of a multi-line *text* (split on LF only), each made :func:`printable`.

    For output that is meant to span lines (a rendered configuration, a
    traceback): its own line breaks are kept, while CR, U+2028 and every other
    character that could break or rewrite a line is escaped within its line.
    """
    return [printable(line) for line in text.split("\n")]
