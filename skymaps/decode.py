"""FITS bytes to a validated multi-order HEALPix probability table.

The bytes come from a notice (base64 in LVK ``event.skymap``) or a download, so
they are untrusted: gzip is inflated here with a byte cap (a gzip bomb is refused
after ``max_bytes`` of output, never fully inflated), and every failure of the
FITS reader becomes :class:`mma.errors.BadSkymap`.

Decoding is ``ligo.skymap.io.fits.read_sky_map(..., moc=True)``: it reads from a
file object (an in-memory :class:`io.BytesIO`, no temporary file) but not from a
gzip stream, and converts flat RING or NESTED maps to multi-order without loss
(equal sibling pixels merged), so a map is never flattened to a fixed NSIDE.

Normalisation convention: real maps sum to 1 within ~1e-6 (single-precision
columns, e.g. Swift GUANO, are off by up to ~1e-3). A map whose total probability
is within ``NORMALISATION_TOLERANCE`` (1 %) of 1 is rescaled to exactly 1 and the
raw total is kept as ``meta['total_probability_raw']``; beyond that it is refused.
"""

from __future__ import annotations

import io
import logging
import warnings
import zlib

import numpy as np
from astropy import units as u
from astropy.table import Table
from ligo.skymap import moc
from ligo.skymap.io.fits import read_sky_map

from mma.errors import BadSkymap, HostileMessage
from mma.skymaps.region import NORMALISATION_TOLERANCE, tile_ranges

__all__ = ("DEFAULT_MAX_BYTES", "read_multiorder")

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 2**20
"""Default cap on the (decompressed) FITS size [bytes]. O4 multi-order maps are
~1 MB; flat NSIDE-1024 3-D maps (e.g. GW170817, 403 MB) need a larger cap."""

_GZIP_MAGIC = b"\x1f\x8b"
_FITS_MAGIC = b"SIMPLE  ="
_DIST_COLUMNS = ("DISTMU", "DISTSIGMA", "DISTNORM")
_DIST_UNITS = (u.Mpc, u.Mpc, u.Mpc**-2)


def _gunzip_capped(data: bytes, max_bytes: int) -> bytes:
    """Inflate (possibly multi-member) gzip, refusing output beyond ``max_bytes``."""
    out = bytearray()
    pending = data
    try:
        while pending[:2] == _GZIP_MAGIC:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            buf = pending
            while not inflater.eof:
                # Never ask for more than one byte past the cap: a bomb stops here.
                chunk = inflater.decompress(buf, max_bytes - len(out) + 1)
                out += chunk
                if len(out) > max_bytes:
                    raise HostileMessage(f"gzip skymap inflates beyond {max_bytes} bytes")
                tail = inflater.unconsumed_tail
                if not chunk and len(tail) == len(buf):
                    raise BadSkymap("truncated gzip stream")
                buf = tail
            pending = inflater.unused_data
    except zlib.error as exc:
        raise BadSkymap(f"corrupt gzip stream: {exc}") from exc
    if pending.strip(b"\0"):
        log.debug("ignoring %d bytes after the gzip stream", len(pending))
    return bytes(out)


def _column(table: Table, name: str, unit: u.UnitBase) -> np.ndarray:
    """Column values as native float64 in ``unit`` (FITS columns may be big-endian)."""
    column = table[name]
    values = np.asarray(column, dtype=np.float64)
    if column.unit is not None and column.unit != unit:
        try:
            values = (values * column.unit).to_value(unit)
        except u.UnitsError as exc:
            raise BadSkymap(f"{name} has unit {column.unit}, expected {unit}") from exc
    return values


def _validate(table: Table) -> Table:
    if "UNIQ" not in table.colnames or "PROBDENSITY" not in table.colnames:
        raise BadSkymap(f"no UNIQ/PROBDENSITY columns (columns: {table.colnames})")
    if len(table) == 0:
        raise BadSkymap("sky map has no rows")
    uniq = np.asarray(table["UNIQ"], dtype=np.int64)
    lo, hi = tile_ranges(uniq)  # also refuses orders beyond 29
    by_lo = np.argsort(lo, kind="stable")
    if np.any(hi[by_lo[:-1]] > lo[by_lo[1:]]):
        raise BadSkymap("sky map tiles overlap")

    density = _column(table, "PROBDENSITY", u.sr**-1)
    if not np.all(np.isfinite(density)):
        raise BadSkymap("PROBDENSITY has NaN or infinite values")
    if np.any(density < 0):
        raise BadSkymap("PROBDENSITY has negative values")
    total = float(np.sum(density * moc.uniq2pixarea(uniq)))
    if not abs(total - 1.0) <= NORMALISATION_TOLERANCE:
        raise BadSkymap(f"total probability {total:.6g} differs from 1 by more than "
                        f"{NORMALISATION_TOLERANCE:g}")
    if abs(total - 1.0) > 1e-6:
        log.info("rescaling sky map with total probability %.8f to 1", total)
    density /= total

    out = Table(meta=dict(table.meta))
    out["UNIQ"] = uniq
    out["PROBDENSITY"] = density
    out["PROBDENSITY"].unit = u.sr**-1
    present = [name in table.colnames for name in _DIST_COLUMNS]
    if all(present):
        for name, unit in zip(_DIST_COLUMNS, _DIST_UNITS, strict=True):
            out[name] = _column(table, name, unit)
            out[name].unit = unit
    elif any(present):
        log.warning("ignoring incomplete distance layers (need all of %s)", _DIST_COLUMNS)
    out.meta["total_probability_raw"] = total
    return out


def read_multiorder(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Table:
    """Decode and validate a HEALPix sky map given as FITS bytes.

    Parameters
    ----------
    data : bytes
        FITS file (multi-order NUNIQ, or flat RING/NESTED), plain or gzip-compressed.
    max_bytes : int
        Largest accepted size [bytes] of the input and of the inflated FITS.

    Returns
    -------
    astropy.table.Table
        One row per tile: UNIQ (int64 NUNIQ index), PROBDENSITY [sr^-1], and when
        the map has all three, DISTMU [Mpc], DISTSIGMA [Mpc], DISTNORM [Mpc^-2].
        ``meta`` keeps the header metadata decoded by ligo.skymap (``objid``,
        ``gps_time``, ``distmean``, ``diststd``, ``instruments``...) plus
        ``total_probability_raw``. Densities sum to 1 over the sky.

    Raises
    ------
    mma.errors.HostileMessage
        The input or its inflated form exceeds ``max_bytes``.
    mma.errors.BadSkymap
        Not FITS, corrupt or truncated; no rows; non-finite or negative density;
        total probability off 1 by more than 1 %; orders beyond 29; overlapping tiles.
    """
    if len(data) > max_bytes:
        raise HostileMessage(f"skymap of {len(data)} bytes exceeds {max_bytes} bytes")
    raw = _gunzip_capped(data, max_bytes) if data[:2] == _GZIP_MAGIC else bytes(data)
    if not raw.startswith(_FITS_MAGIC):
        raise BadSkymap("not a FITS file (no SIMPLE card)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            table = read_sky_map(io.BytesIO(raw), moc=True)
        except Exception as exc:
            # astropy and ligo.skymap raise OSError, ValueError, TypeError, KeyError,
            # IndexError... on crafted or damaged files: all are the message's fault.
            raise BadSkymap(f"unreadable FITS sky map: {type(exc).__name__}: {exc}") from exc
    for warning in caught:
        log.debug("while reading sky map: %s", warning.message)
    return _validate(table)
