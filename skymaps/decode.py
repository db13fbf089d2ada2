"""FITS bytes to a validated multi-order HEALPix probability table, in bounded memory.

The bytes come from a notice (base64 in LVK ``event.skymap``, GCN ``healpix_file``)
or a download, so they are untrusted. Each check runs as early as what it needs
is known:

1. the input size, against ``max_bytes``;
2. gzip is inflated on demand into one buffer (:class:`_Inflater`): the FITS
   headers first, so that a file that is not FITS, or whose table is declared
   beyond ``max_bytes``, is refused before the rest is inflated; then exactly to
   the end of the declared table (never beyond ``max_bytes``), held once;
3. a multi-order (NUNIQ) table with more rows than ``max_tiles`` is refused from
   its header, before its data is read;
4. a flat RING or NESTED map is merged to multi-order block by block straight
   from the buffer (:mod:`mma.skymaps.flat`), refused as soon as it certainly
   has more than ``max_tiles`` tiles;
5. the table: valid NUNIQ indices, no overlap, finite non-negative density,
   total probability 1 within ``NORMALISATION_TOLERANCE`` (1 %).

Only the columns a region uses (UNIQ, PROBDENSITY or PROB, and the distance
layers) are read, each as a strided view over the buffer converted to native
float64. The conversion of flat maps keeps every pixel's density (equal siblings
merged, as ligo.skymap's ``read_sky_map(moc=True)`` does), so a map is never
flattened to a fixed NSIDE.

Normalisation convention: real maps sum to 1 within ~1e-6 (single-precision
columns, e.g. Swift GUANO, are off by up to ~1e-3). A map whose total probability
is within 1 % of 1 is rescaled to exactly 1 and the raw total is kept as
``meta['total_probability_raw']``; beyond that it is refused.
"""

from __future__ import annotations

import logging
import math
import zlib
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import Table
from ligo.skymap import moc

from mma.errors import BadSkymap, HostileMessage
from mma.skymaps.fits_table import Layout, read_layout
from mma.skymaps.flat import flat_map, merge_flat
from mma.skymaps.meta import header_meta
from mma.skymaps.region import DEFAULT_MAX_TILES, NORMALISATION_TOLERANCE, tile_ranges

__all__ = ("DEFAULT_MAX_BYTES", "INFLATE_STEP", "read_multiorder")

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 2**20
"""Default cap on the (decompressed) FITS size [bytes]. O4 multi-order maps are
~1 MB; flat NSIDE-1024 3-D maps (e.g. GW170817, 403 MB) need a larger cap."""

INFLATE_STEP = 2**20
"""Most output [bytes] one inflate call produces: the buffer grows in such steps."""

_GZIP_MAGIC = b"\x1f\x8b"
_DIST_COLUMNS = ("DISTMU", "DISTSIGMA", "DISTNORM")
_DIST_UNITS = (u.Mpc, u.Mpc, u.Mpc**-2)


class _Inflater:
    """A (possibly multi-member) gzip stream inflated on demand into one buffer.

    Calling it with *end* inflates until the buffer holds the first *end* bytes of
    the output and returns it. The buffer is a numpy byte array sized exactly to
    what was asked (the FITS headers first, then the end of the declared table),
    so the output is held once and never beyond ``max_bytes``: a gzip bomb
    costs at most what the FITS header declares, within the cap.
    """

    def __init__(self, data: bytes, max_bytes: int) -> None:
        self.buffer = np.empty(0, dtype=np.uint8)
        self.filled = 0
        self.max_bytes = max_bytes
        self.pending: bytes = data  # input not yet fed to an inflater
        self.inflater: Any = None

    def _grow(self, end: int) -> None:
        if end > self.max_bytes:
            raise HostileMessage(f"gzip skymap inflates beyond {self.max_bytes} bytes "
                                 f"(the FITS file needs {end})")
        # The headers are a few kB: copying them into the table-sized buffer is free.
        grown = np.empty(end, dtype=np.uint8)
        grown[:self.filled] = self.buffer[:self.filled]
        self.buffer = grown

    def _step(self, end: int) -> bool:
        """Inflate at most one step towards *end*; False when the stream is exhausted."""
        if self.inflater is None or self.inflater.eof:
            rest = self.pending if self.inflater is None else self.inflater.unused_data
            if rest[:2] != _GZIP_MAGIC:  # end of the last member; trailing bytes ignored
                return False
            self.inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            self.pending = rest
        try:
            chunk = self.inflater.decompress(self.pending, min(INFLATE_STEP, end - self.filled))
        except zlib.error as exc:
            raise BadSkymap(f"corrupt gzip stream: {exc}") from exc
        progressed = bool(chunk) or len(self.inflater.unconsumed_tail) < len(self.pending)
        self.pending = self.inflater.unconsumed_tail
        self.buffer[self.filled:self.filled + len(chunk)] = np.frombuffer(chunk, np.uint8)
        self.filled += len(chunk)
        return progressed or self.inflater.eof

    def __call__(self, end: int) -> np.ndarray:
        if end > len(self.buffer):
            self._grow(end)
        while self.filled < end:
            if not self._step(end):
                raise BadSkymap(f"truncated gzip stream: the FITS file needs {end} bytes, "
                                f"the stream holds {self.filled}")
        return self.buffer


def _plain(data: bytes) -> Any:
    def fetch(end: int) -> bytes:
        if len(data) < end:
            raise BadSkymap(f"truncated FITS file: {len(data)} bytes, the headers "
                            f"declare {end}")
        return data
    return fetch


def _floats(layout: Layout, buffer: Any, name: str, unit: u.UnitBase | None) -> np.ndarray:
    """Column *name* of a multi-order table as native float64 in *unit* (None: as stored)."""
    col = layout.columns[name]
    if col.repeat != 1:
        raise BadSkymap(f"column {name[:20]!r} has {col.repeat} values per row, expected 1")
    values = layout.view(buffer, name)[:, 0].astype(np.float64)
    if col.scale != 1.0 or col.zero != 0:
        values = values * col.scale + col.zero
    return values if unit is None else _in_unit(values, col.unit, name, unit)


def _in_unit(values: np.ndarray, stated: str, name: str, unit: u.UnitBase) -> np.ndarray:
    if not stated:
        return values
    try:
        given = u.Unit(stated, format="fits")
        return values if given == unit else np.asarray((values * given).to_value(unit))
    except (ValueError, u.UnitsError) as exc:
        raise BadSkymap(f"{name} has unit {stated[:30]!r}, expected {unit}") from exc


def _uniq(layout: Layout, buffer: Any) -> np.ndarray:
    """The UNIQ column as int64, signed or unsigned (TZERO 2**63 / 2**31) as stored."""
    col = layout.columns["UNIQ"]
    if col.repeat != 1 or col.scale != 1.0:
        raise BadSkymap("UNIQ must be one integer per row without TSCAL")
    raw = layout.view(buffer, "UNIQ")[:, 0]
    if col.code == "K" and col.zero in (0, 2**63):
        out = raw.astype(np.int64)
        return out if col.zero == 0 else (out.view(np.uint64) ^ np.uint64(2**63)).view(np.int64)
    if col.code == "J" and col.zero in (0, 2**31):
        return raw.astype(np.int64) + col.zero
    raise BadSkymap(f"UNIQ has format {col.code} with TZERO {col.zero!r}: not a NUNIQ index")


def _multiorder(layout: Layout, fetch: Any, max_tiles: int) -> tuple[np.ndarray, dict[str, Any]]:
    if layout.rows > max_tiles:
        raise HostileMessage(f"multi-order sky map has {layout.rows} tiles, above the cap of "
                             f"{max_tiles} (max_tiles)")
    if "PROBDENSITY" not in layout.columns:
        raise BadSkymap(f"no PROBDENSITY column (columns: {sorted(layout.columns)[:10]})")
    buffer = fetch(layout.data_end)
    columns = {"PROBDENSITY": _floats(layout, buffer, "PROBDENSITY", u.sr**-1)}
    columns.update(_distance(layout, buffer))
    return _uniq(layout, buffer), columns


def _distance(layout: Layout, buffer: Any) -> dict[str, np.ndarray]:
    present = [name in layout.columns for name in _DIST_COLUMNS]
    if not all(present):
        if any(present):
            log.warning("ignoring incomplete distance layers (need all of %s)", _DIST_COLUMNS)
        return {}
    return {name: _floats(layout, buffer, name, unit)
            for name, unit in zip(_DIST_COLUMNS, _DIST_UNITS, strict=True)}


def _nside(layout: Layout, prob: str) -> int:
    npix = layout.rows * layout.columns[prob].repeat
    nside = math.isqrt(npix // 12)
    if nside < 1 or nside & (nside - 1) or 12 * nside * nside != npix:
        raise BadSkymap(f"flat sky map has {npix} pixels: not a HEALPix map (12 * NSIDE^2)")
    stated = layout.header.get("NSIDE", nside)
    if stated != nside:
        raise BadSkymap(f"NSIDE {str(stated)[:20]!r} in the header but {npix} pixels in the map")
    return nside


def _flat(layout: Layout, fetch: Any, max_tiles: int) -> tuple[np.ndarray, dict[str, Any]]:
    ordering = str(layout.header.get("ORDERING", "")).strip().upper()
    if ordering not in ("RING", "NESTED"):
        raise BadSkymap(f"no UNIQ column and ORDERING {ordering[:20]!r} is not RING or NESTED")
    if str(layout.header.get("INDXSCHM", "IMPLICIT")).strip().upper() != "IMPLICIT":
        raise BadSkymap("explicitly indexed (partial-sky) flat maps are not supported")
    prob = next((n for n in ("PROB", "PROBABILITY") if n in layout.columns), None)
    if prob is None:
        raise BadSkymap(f"flat sky map has no PROB column (columns: {sorted(layout.columns)[:10]})")
    nside = _nside(layout, prob)
    names = [prob] + [n for n in _DIST_COLUMNS if all(d in layout.columns for d in _DIST_COLUMNS)]
    buffer = fetch(layout.data_end)
    flat = flat_map(nside, ordering == "NESTED", [layout.view(buffer, n) for n in names],
                    [layout.columns[n] for n in names])
    uniq, values = merge_flat(flat, max_tiles=max_tiles)
    columns = {"PROBDENSITY": values[:, 0]}
    for j, (name, unit) in enumerate(zip(_DIST_COLUMNS, _DIST_UNITS, strict=True)):
        if len(names) > 1:
            columns[name] = _in_unit(values[:, j + 1], layout.columns[name].unit, name, unit)
    return uniq, columns


def _validate(uniq: np.ndarray, columns: dict[str, Any], meta: dict[str, Any]) -> Table:
    if len(uniq) == 0:
        raise BadSkymap("sky map has no rows")
    lo, hi = tile_ranges(uniq)  # also refuses orders beyond 29
    by_lo = np.argsort(lo, kind="stable")
    if np.any(hi[by_lo[:-1]] > lo[by_lo[1:]]):
        raise BadSkymap("sky map tiles overlap")
    density = columns["PROBDENSITY"]
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
    out = Table(meta=meta)
    out["UNIQ"] = uniq
    out["PROBDENSITY"] = density / total
    out["PROBDENSITY"].unit = u.sr**-1
    for name, unit in zip(_DIST_COLUMNS, _DIST_UNITS, strict=True):
        if name in columns:
            out[name] = columns[name]
            out[name].unit = unit
    out.meta["total_probability_raw"] = total
    return out


def read_multiorder(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES,
                    max_tiles: int = DEFAULT_MAX_TILES) -> Table:
    """Decode and validate a HEALPix sky map given as FITS bytes.

    Parameters
    ----------
    data : bytes
        FITS file (multi-order NUNIQ, or flat RING/NESTED), plain or gzip-compressed.
    max_bytes : int
        Largest accepted size [bytes] of the input and of the inflated FITS.
    max_tiles : int
        Largest accepted number of tiles (rows of a multi-order map; tiles of a
        flat map after merging equal siblings).

    Returns
    -------
    astropy.table.Table
        One row per tile, sorted by UNIQ for flat maps (file order otherwise): UNIQ
        (int64 NUNIQ index), PROBDENSITY [sr^-1], and when the map has all three,
        DISTMU [Mpc], DISTSIGMA [Mpc], DISTNORM [Mpc^-2]. ``meta`` keeps the header
        metadata as ligo.skymap decodes it (``objid``, ``gps_time``, ``distmean``,
        ``instruments``...) plus ``total_probability_raw``. Densities sum to 1.

    Raises
    ------
    mma.errors.HostileMessage
        The input, its inflated form or its declared table exceeds ``max_bytes``,
        or the map has more than ``max_tiles`` tiles.
    mma.errors.BadSkymap
        Not FITS, corrupt or truncated; no rows; non-finite or negative density;
        total probability off 1 by more than 1 %; orders beyond 29; overlapping tiles.
    """
    if len(data) > max_bytes:
        raise HostileMessage(f"skymap of {len(data)} bytes exceeds {max_bytes} bytes")
    fetch = _Inflater(data, max_bytes) if data[:2] == _GZIP_MAGIC else _plain(data)
    layout = read_layout(fetch, max_bytes)
    meta = header_meta(layout.header)
    if layout.rows == 0:
        raise BadSkymap("sky map has no rows")
    if "UNIQ" in layout.columns:
        uniq, columns = _multiorder(layout, fetch, max_tiles)
    else:
        uniq, columns = _flat(layout, fetch, max_tiles)
    return _validate(uniq, columns, meta)
