"""Crafted HEALPix FITS files for the hostile tests, built in memory, never stored.

Flat maps whose sibling pixels never merge (``12 * nside**2`` tiles from a few
hundred kB of gzip), gzip bombs, and FITS headers that declare tables beyond the
caps. The gzip files are multi-member, one member per part and equal parts
compressed once, so a file that inflates to hundreds of MB is built in
milliseconds. Used by tests/skymaps and by the notice cases of
tests/hostile/notices.py.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import Any

import numpy as np
from astropy.io import fits

__all__ = ("declared_table", "flat_map", "gzip_parts", "repeat", "table_header", "zeros_bomb")


@cache
def _member(part: bytes) -> bytes:
    return zlib.compress(part, 6, wbits=16 + zlib.MAX_WBITS)


def gzip_parts(parts: Iterable[bytes]) -> bytes:
    """A multi-member gzip file, one member per part; equal parts are compressed once,
    so a file that inflates to hundreds of MB is built in milliseconds."""
    return b"".join(_member(part) for part in parts)


def repeat(period: bytes, total: int) -> Iterator[bytes]:
    """*total* bytes of *period* repeated, in equal chunks of about 1 MiB."""
    chunk = period * max(1, 2**20 // len(period))
    for start in range(0, total, len(chunk)):
        yield chunk[:min(len(chunk), total - start)]


def table_header(rows: int, columns: Sequence[tuple[str, str, int]], **cards: Any) -> bytes:
    """A primary HDU and a BINTABLE header for *rows* rows of (name, TFORM, bytes) columns."""
    header = fits.Header([("XTENSION", "BINTABLE"), ("BITPIX", 8), ("NAXIS", 2),
                          ("NAXIS1", sum(c[2] for c in columns)), ("NAXIS2", rows),
                          ("PCOUNT", 0), ("GCOUNT", 1), ("TFIELDS", len(columns))])
    for i, (name, form, _) in enumerate(columns, 1):
        header[f"TTYPE{i}"], header[f"TFORM{i}"] = name, form
    header.update(cards)
    return (fits.PrimaryHDU().header.tostring() + header.tostring()).encode()


def flat_map(nside: int, *, mergeable: bool = False, packed: bool = True) -> bytes:
    """A normalised flat NESTED map (PROB [pix^-1]), gzip-compressed unless *packed* is False.

    Each group of four sibling pixels holds (a, a, a, 2a): no two siblings merge and
    the map has ``12 * nside**2`` tiles. With *mergeable*, every pixel holds the
    same value and the map merges to the 12 base tiles.
    """
    npix = 12 * nside * nside
    a = 1.0 / npix if mergeable else 4.0 / (5.0 * npix)
    period = np.array([a, a, a, a if mergeable else 2 * a], dtype=">f8").tobytes()
    head = table_header(npix, [("PROB", "D", 8)], PIXTYPE="HEALPIX", ORDERING="NESTED",
                        NSIDE=nside, INDXSCHM="IMPLICIT", COORDSYS="C")
    pad = bytes(-(npix * 8) % 2880)
    parts = [head, *repeat(period, npix * 8), pad]
    return gzip_parts(parts) if packed else b"".join(parts)


def declared_table(nbytes: int, *, nuniq_rows: int | None = None) -> bytes:
    """A gzip FITS file whose header declares *nbytes* of table data, all zeros.

    A flat NESTED map with a PROB column and padding columns (its zeros merge to 12
    tiles of total probability 0), or with *nuniq_rows*, a multi-order table of
    that many rows (UNIQ, PROBDENSITY) whatever *nbytes*.
    """
    if nuniq_rows is not None:
        head = table_header(nuniq_rows, [("UNIQ", "K", 8), ("PROBDENSITY", "D", 8)],
                            ORDERING="NUNIQ", INDXSCHM="EXPLICIT")
        return gzip_parts([head, *repeat(bytes(2**16), 16 * nuniq_rows)])
    nside = 1
    while 12 * (2 * nside) ** 2 * 8 <= nbytes:
        nside *= 2
    npix = 12 * nside * nside
    pad = max(nbytes // npix - 8, 0)
    columns = [("PROB", "D", 8)] + ([("PAD", f"{pad}B", pad)] if pad else [])
    head = table_header(npix, columns, ORDERING="NESTED", NSIDE=nside, INDXSCHM="IMPLICIT")
    return gzip_parts([head, *repeat(bytes(2**16), npix * (8 + pad))])


def zeros_bomb(nbytes: int) -> bytes:
    """*nbytes* of zeros, gzip-compressed (about 1000 to 1)."""
    return gzip_parts(repeat(bytes(2**16), nbytes))
