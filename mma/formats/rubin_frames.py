"""Rubin/LSST alerts in the Confluent wire format: what ``lsst-alerts-v11`` carries.

A frame is byte 0 = ``0x00``, bytes 1–4 = big-endian schema id (``MAJOR*100 +
MINOR``), then one schemaless Avro record, decoded with the bundled schema of
that id (:mod:`mma.formats.rubin`). Three depths of decoding, cheapest first:

* :func:`match_keys`, the batch step before any Alert: id, position and time of
  many frames from their first ~70 bytes, so that only frames matching a region
  need the handler's ``parse``.
* :func:`decode_fast`, what ``parse`` uses: only the fields before and including
  ``diaSource`` are decoded into Python objects, then of each ``prvDiaSources``
  item only the four fields the history needs (a second generated decoder,
  :mod:`mma.formats.rubin_decoders`), and the rest is walked by fastavro for the
  first-detection epoch.
* :func:`decode_full`: the whole packet, when something needs it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mma.errors import BadMessage, MalformedMessage
from mma.formats import rubin as schemas
from mma.formats.rubin_decoders import compile_keys

__all__ = [
    "CONFLUENT_MAGIC", "HEADER_BYTES", "MAX_MESSAGE_BYTES", "MatchKeys", "decode_fast",
    "decode_full", "match_keys",
]

MAX_MESSAGE_BYTES = 16 * 2**20  # DMTN-102: ≲ 82 kB with a full year of history
CONFLUENT_MAGIC = 0
HEADER_BYTES = 5


def _confluent_id(raw: bytes) -> int:
    """The schema id of a Confluent frame; MalformedMessage naming a wrong magic byte."""
    if len(raw) < HEADER_BYTES:
        raise MalformedMessage(f"message of {len(raw)} bytes is shorter than the "
                               f"{HEADER_BYTES}-byte Confluent wire-format header")
    schema_id = int(struct.unpack_from(">i", raw, 1)[0])
    if raw[0] != CONFLUENT_MAGIC:
        after = (f"; bytes 1-4 hold schema id {schema_id}, a bundled Rubin schema"
                 if schema_id in schemas.known_ids() else "")
        raise MalformedMessage(f"Confluent wire-format magic byte is 0x{raw[0]:02x}, "
                               f"expected 0x00{after}")
    return schema_id


def decode_fast(raw: bytes) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """Decode a Confluent-framed alert's leading fields, first-detection and history data.

    Returns (header, diaSource subset, {prvDiaSources subset (epoch, flux, flux
    error, isNegative), diaObject subset}, version). The whole message is walked
    (so truncation is caught) but only these fields become Python objects.

    Raises
    ------
    UnknownFormat
        The schema id is not bundled (the message names it).
    HostileMessage, MalformedMessage
        Oversized, truncated or corrupt.
    """
    schemas.check_size(raw, MAX_MESSAGE_BYTES)
    schema = schemas.load(_confluent_id(raw))
    header, source, end = schema.prefix.decode(raw, HEADER_BYTES)
    return header, source, schema.tail(raw, end), schema.version


def decode_full(raw: bytes) -> dict[str, Any]:
    """The whole packet (history, diaObject, cutouts) of a Confluent-framed alert."""
    schema = schemas.load(_confluent_id(raw))
    return schema.decode_full(raw, HEADER_BYTES, max_bytes=MAX_MESSAGE_BYTES)


@dataclass(frozen=True)
class MatchKeys:
    """What matching needs of a batch of Confluent-framed alerts, one row per frame.

    Attributes
    ----------
    ok : numpy.ndarray of bool
        The leading fields decoded and hold a usable id, position and time.
        A frame not ok must go through :func:`~mma.handlers.rubin.parse` (which
        raises the proper :class:`~mma.errors.BadMessage` for the dead-letter
        queue); the other arrays are NaN / 0 there.
    ra_deg, dec_deg : numpy.ndarray of float64
        ``diaSource.ra`` / ``dec`` [deg ICRS], exactly as
        :func:`~mma.handlers.rubin.parse` gives them.
    mjd_tai : numpy.ndarray of float64
        ``diaSource.midpointMjdTai``.
    time_unix : numpy.ndarray of float64
        The same epoch as UTC Unix seconds (leap seconds removed as in
        :func:`~mma.formats.rubin.tai_mjd_to_utc`): ``Alert.time.timestamp()``.
    dia_source_id : numpy.ndarray of int64
        ``diaSource.diaSourceId`` (``Alert.alert_id`` as an integer).
    """

    ok: NDArray[np.bool_]
    ra_deg: NDArray[np.float64]
    dec_deg: NDArray[np.float64]
    mjd_tai: NDArray[np.float64]
    time_unix: NDArray[np.float64]
    dia_source_id: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.ok)


def _tai_mjd_to_unix(mjd_tai: NDArray[np.float64]) -> NDArray[np.float64]:
    """Vectorised :func:`~mma.formats.rubin.tai_mjd_to_utc` → Unix seconds (MJD in range)."""
    day = mjd_tai.astype(np.int64)
    days, inverse = np.unique(day, return_inverse=True)
    offset = np.array([schemas._tai_minus_utc(int(d)) for d in days])[inverse]
    # Within 37 s after TAI midnight the UTC day is the day before: its offset applies.
    before = (mjd_tai - offset / 86400.0).astype(np.int64) != day
    for i in np.flatnonzero(before):
        offset[i] = schemas._tai_minus_utc(int(day[i]) - 1)
    return np.asarray((mjd_tai - 40587.0) * 86400.0 - offset, dtype=np.float64)


@cache
def _key_decoder(schema_id: int) -> Callable[[bytes, int], tuple[Any, Any, Any, Any, int]]:
    """The :func:`~mma.formats.rubin_decoders.compile_keys` decoder of *schema_id*, cached.

    Raises UnknownFormat for an unbundled id.
    """
    schemas.load(schema_id)  # UnknownFormat if not bundled
    path = schemas.known_ids()[schema_id]
    ns = f"lsst.{path.name}"
    raw = schemas._read_dir(path)
    return compile_keys(raw[f"{ns}.alert"], raw[f"{ns}.diaSource"])


def match_keys(frames: Sequence[bytes]) -> MatchKeys:
    """Decode only what matching needs from Confluent-framed alerts ("decode first" step).

    Each frame goes through a compiled leading-field decoder of its schema
    (:func:`_key_decoder`): the top-level fields before ``diaSource`` and the
    ``diaSource`` fields up to ``dec`` -- the first ~60 bytes of a 30–140 kB
    packet. No tail walk, no :class:`~mma.models.Alert`. The intended use::

        keys = match_keys(frames)
        good = np.flatnonzero(keys.ok)
        point, key, tile = index.match(hpx29(keys.ra_deg[good], keys.dec_deg[good]))
        # keep matches whose keys.time_unix[good[point]] is in region *key*'s window,
        # then parse(frames[good[point]]) for those only; parse every frame not ok.

    A row is ok when those leading fields decode (schema id bundled, size under
    the cap, not truncated or corrupt before ``dec`` ends), the id is
    positive, RA/Dec are finite with ``|dec| <= 90`` and the MJD is in
    1972–2100. ``ok`` does not promise that :func:`~mma.handlers.rubin.parse`
    succeeds: the rest of the packet is not read (a frame cut after ``dec`` is ok
    here, and ``parse`` rejects it), and object ids are not checked. Where
    ``parse`` succeeds, the ok rows give exactly its ``ra_deg``, ``dec_deg``,
    ``alert_id`` and ``time``.
    """
    n = len(frames)
    ok = [False] * n
    ra = [math.nan] * n
    dec = [math.nan] * n
    mjd = [math.nan] * n
    ids = [0] * n
    decoders: dict[int, Callable[[bytes, int], tuple[Any, Any, Any, Any, int]]] = {}
    for i, raw in enumerate(frames):
        if len(raw) > MAX_MESSAGE_BYTES or len(raw) < HEADER_BYTES or raw[0] != CONFLUENT_MAGIC:
            continue
        schema_id = int.from_bytes(raw[1:HEADER_BYTES], "big", signed=True)
        decode = decoders.get(schema_id)
        if decode is None:
            try:
                decode = decoders[schema_id] = _key_decoder(schema_id)
            except BadMessage:
                continue
        try:
            sid, r, d, t, end = decode(raw, HEADER_BYTES)
        except (BadMessage, IndexError, struct.error, UnicodeDecodeError):
            continue
        if end <= len(raw) and type(sid) is int and sid > 0 and type(r) is float \
                and type(d) is float and type(t) is float:
            ok[i], ra[i], dec[i], mjd[i], ids[i] = True, r, d, t, sid
    ok_a = np.array(ok, dtype=bool)
    ra_a, dec_a = np.array(ra, dtype=np.float64), np.array(dec, dtype=np.float64)
    mjd_a = np.array(mjd, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok_a &= (np.isfinite(ra_a) & (np.abs(dec_a) <= 90.0)
                 & (mjd_a >= schemas.MJD_MIN) & (mjd_a <= schemas.MJD_MAX))
    bad = ~ok_a
    ra_a[bad] = dec_a[bad] = mjd_a[bad] = math.nan
    ids_a = np.array(ids, dtype=np.int64)
    ids_a[bad] = 0
    time_a = np.full(n, math.nan)
    time_a[ok_a] = _tai_mjd_to_unix(mjd_a[ok_a])
    return MatchKeys(ok=ok_a, ra_deg=ra_a, dec_deg=dec_a, mjd_tai=mjd_a,
                     time_unix=time_a, dia_source_id=ids_a)
