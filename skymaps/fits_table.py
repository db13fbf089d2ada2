"""The one binary table of a HEALPix FITS file, read from its header outwards.

A sky map from a notice is untrusted, and astropy's reader copies the table out
of an in-memory file before ligo.skymap even looks at it. This reader parses the
headers itself (cards by :class:`astropy.io.fits.Header`), so that the caller
can refuse what a header declares (a table larger than the inflated cap, more
tiles than allowed) *before* the data is inflated, and then gives each column as
a strided, zero-copy view over the one buffer that holds the file.

Only what sky maps use is supported: a primary HDU (its data, if any, skipped)
followed by a ``BINTABLE`` extension whose needed columns are integers
(``J``/``K``, with the unsigned ``TZERO`` convention) or floats (``E``/``D``).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from mma.errors import BadSkymap, HostileMessage

__all__ = ("BLOCK", "MAX_HEADER_BLOCKS", "Column", "Layout", "read_layout")

BLOCK = 2880
"""FITS block [bytes]: headers and data are padded to multiples of it."""

MAX_HEADER_BLOCKS = 64
"""Longest accepted header [blocks] (2304 cards). Sky maps use 2-4 blocks."""

Fetch = Callable[[int], Any]
"""``fetch(end)`` makes the first *end* bytes available and returns the whole buffer
(bytes, or a numpy byte array); it raises BadSkymap if the file is shorter."""

_TFORM = re.compile(r"\s*(\d*)([LXBIJKAEDCMPQ])(.*)")
# Bytes per element of each TFORM code (X: bits, counted separately; P/Q: descriptors).
_WIDTH = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16,
          "P": 8, "Q": 16}  # fmt: skip
_NUMERIC = {"J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}
_END = b"END" + b" " * 77


@dataclass(frozen=True)
class Column:
    """One column of the table: where its values lie in a row and how to read them.

    Attributes
    ----------
    name : str
        ``TTYPEn``, upper-cased.
    code : str
        TFORM data type code (``D``, ``E``, ``K``...).
    repeat : int
        Elements per row (1, or e.g. 1024 for healpy's vector columns).
    offset : int
        Byte offset of the column in a row.
    unit : str
        ``TUNITn``, or ``""``.
    scale, zero : float or int
        ``TSCALn`` and ``TZEROn`` (value = stored * scale + zero).
    """

    name: str
    code: str
    repeat: int
    offset: int
    unit: str = ""
    scale: float = 1.0
    zero: float | int = 0


@dataclass(frozen=True)
class Layout:
    """Where the table lies in the file and what its header says.

    Attributes
    ----------
    header : astropy.io.fits.Header
        The extension header.
    row_bytes, rows : int
        ``NAXIS1`` and ``NAXIS2``.
    data_start, data_end : int
        Byte range of the table (heap included) in the file.
    columns : dict of str to Column
        By upper-cased name.
    """

    header: fits.Header
    row_bytes: int
    rows: int
    data_start: int
    data_end: int
    columns: dict[str, Column]

    def view(self, buffer: Any, name: str) -> NDArray[Any]:
        """Column *name* as a read-only (rows, repeat) view in file byte order, no copy.

        Raises
        ------
        mma.errors.BadSkymap
            The column is not an integer or float column.
        """
        col = self.columns[name]
        dtype = _NUMERIC.get(col.code)
        if dtype is None:
            raise BadSkymap(f"column {name[:20]!r} has format {col.code}, expected J, K, E or D")
        itemsize = np.dtype(dtype).itemsize
        return np.ndarray(shape=(self.rows, col.repeat), dtype=dtype, buffer=buffer,
                          offset=self.data_start + col.offset,
                          strides=(self.row_bytes, itemsize))


def _read_header(fetch: Fetch, start: int) -> tuple[fits.Header, int]:
    """The header starting at byte *start* and the offset just after its padding."""
    for blocks in range(1, MAX_HEADER_BLOCKS + 1):
        end = start + blocks * BLOCK
        buffer = fetch(end)
        block = bytes(buffer[end - BLOCK:end])
        for card in range(0, BLOCK, 80):
            if block[card:card + 80] == _END:
                text = bytes(buffer[start:end - BLOCK + card + 80])
                return _parse_cards(text), end
    raise HostileMessage(f"FITS header longer than {MAX_HEADER_BLOCKS} blocks of {BLOCK} bytes")


def _parse_cards(text: bytes) -> fits.Header:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = fits.Header.fromstring(text.decode("ascii"))
            for card in header.cards:
                card.value  # noqa: B018 - astropy parses lazily: fail here, not later
            return header
    except Exception as exc:
        # astropy raises ValueError, VerifyError, UnicodeDecodeError... on crafted cards.
        raise BadSkymap(f"unreadable FITS header: {type(exc).__name__}: {exc}") from exc


def _int(header: fits.Header, key: str, low: int = 0, high: int = 2**62) -> int:
    try:
        value = header[key]
    except Exception as exc:
        raise BadSkymap(f"FITS header has no valid {key}") from exc
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadSkymap(f"FITS header {key} = {str(value)[:30]!r} is not an integer in "
                        f"[{low}, {high}]")
    return value


def _number(header: fits.Header, key: str, default: float | int) -> float | int:
    value = header.get(key, default)
    try:  # float() of a 400-digit integer card overflows
        finite = not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        finite = False
    if not finite:
        raise BadSkymap(f"FITS header {key} = {str(value)[:30]!r} is not a finite number")
    return value


def _primary_data_bytes(header: fits.Header) -> int:
    """Size [bytes] of the primary HDU's data (unpadded): sky maps have none."""
    bitpix = _int(header, "BITPIX", -64, 64)
    naxis = _int(header, "NAXIS", 0, 999)
    if naxis == 0:
        return 0
    pcount = _int(header, "PCOUNT") if "PCOUNT" in header else 0
    gcount = _int(header, "GCOUNT") if "GCOUNT" in header else 1
    axes = math.prod(_int(header, f"NAXIS{i}") for i in range(1, naxis + 1))
    return abs(bitpix) // 8 * gcount * (pcount + axes)


def _columns(header: fits.Header, row_bytes: int) -> dict[str, Column]:
    fields = _int(header, "TFIELDS", 1, 999)
    columns: dict[str, Column] = {}
    offset = 0
    for i in range(1, fields + 1):
        form = header.get(f"TFORM{i}")
        match = _TFORM.fullmatch(form) if isinstance(form, str) else None
        if match is None:
            raise BadSkymap(f"FITS column {i} has no valid TFORM ({str(form)[:20]!r})")
        repeat = int(match.group(1) or 1) if len(match.group(1)) <= 9 else -1
        code = match.group(2)
        if repeat < 0:
            raise BadSkymap(f"FITS column {i} repeat count {match.group(1)[:20]} is absurd")
        width = (repeat + 7) // 8 if code == "X" else (
            _WIDTH[code] if code in "PQ" else _WIDTH[code] * repeat)
        name = str(header.get(f"TTYPE{i}", f"COL{i}")).strip().upper()
        columns.setdefault(name, Column(
            name=name, code=code, repeat=repeat, offset=offset,
            unit=str(header.get(f"TUNIT{i}", "")).strip(),
            scale=_number(header, f"TSCAL{i}", 1.0), zero=_number(header, f"TZERO{i}", 0)))
        offset += width
    if offset != row_bytes:
        raise BadSkymap(f"FITS columns take {offset} bytes per row but NAXIS1 is {row_bytes}")
    return columns


def read_layout(fetch: Fetch, max_bytes: int) -> Layout:
    """Read the primary and first extension headers; check what they declare.

    Parameters
    ----------
    fetch : callable
        See :data:`Fetch`; called with growing ends, never beyond what a header needs.
    max_bytes : int
        Largest accepted file [bytes]: a table declared beyond it is refused here,
        before its data is inflated or read.

    Raises
    ------
    mma.errors.HostileMessage
        The declared table ends beyond ``max_bytes``, or a header is absurdly long.
    mma.errors.BadSkymap
        Not FITS, truncated headers, no binary table, inconsistent column formats.
    """
    if not bytes(fetch(BLOCK)[:9]) == b"SIMPLE  =":
        raise BadSkymap("not a FITS file (no SIMPLE card)")
    primary, offset = _read_header(fetch, 0)
    skip = _primary_data_bytes(primary)
    offset += -(-skip // BLOCK) * BLOCK
    if offset > max_bytes:
        raise HostileMessage(f"FITS primary data of {skip} bytes exceeds {max_bytes} bytes")
    header, data_start = _read_header(fetch, offset)
    if str(header.get("XTENSION", "")).strip() != "BINTABLE":
        raise BadSkymap(f"first FITS extension is {str(header.get('XTENSION'))[:20]!r}, "
                        "expected BINTABLE")
    row_bytes, rows = _int(header, "NAXIS1"), _int(header, "NAXIS2")
    if _int(header, "NAXIS", 2, 2) != 2:
        raise BadSkymap("FITS binary table is not 2-dimensional")
    data_end = data_start + row_bytes * rows + _int(header, "PCOUNT", 0)
    if data_end > max_bytes:
        raise HostileMessage(f"FITS table declares {data_end} bytes ({rows} rows of "
                             f"{row_bytes} bytes), above the cap of {max_bytes} bytes")
    return Layout(header=header, row_bytes=row_bytes, rows=rows, data_start=data_start,
                  data_end=data_end, columns=_columns(header, row_bytes))
