"""Rubin/LSST alert packets (schemas v7–v11, and ELAsTiCC simulations) → :class:`~mma.models.Alert`.

Two framings are accepted:

* **Confluent wire format**, what ``lsst-alerts-v11`` carries: byte 0 = ``0x00``,
  bytes 1–4 = big-endian schema id (``MAJOR*100 + MINOR``), then one schemaless
  Avro record, decoded with the bundled schema of that id
  (:mod:`mma.formats.rubin`). This is the fast path: only the fields before
  and including ``diaSource`` are decoded into Python objects, then of each
  ``prvDiaSources`` item only the four fields the history needs (a second
  generated decoder), and the rest is walked by fastavro for the first-detection
  epoch (see :func:`decode_fast`).
  :func:`decode_full` gives the whole packet when something needs it.
  :func:`match_keys` is the batch step before that: id, position and time of
  many frames from their first ~70 bytes, so that only frames matching a
  region need :func:`parse`.
* **Avro object containers** (pipeline output files, ``fakeAlert.avro``,
  ELAsTiCC): :func:`split` cuts them into one-record containers; each is decoded
  whole with its embedded writer schema, so versions not bundled also work.

Field mapping (all versions):

* ``alert_id`` = ``diaSource.diaSourceId``; ``object_id`` = ``diaSource.diaObjectId``,
  else ``diaObject.diaObjectId``, else ``"ss:<ssObjectId>"`` for a source associated
  only with a solar-system object (vetting drops those anyway: ``solar_system``).
  Id 0 means "none" (the pipeline writes 0, not null, in real packets).
* ``ra``/``dec`` [deg ICRS] from ``diaSource``; ``time`` from ``midpointMjdTai``
  (MJD TAI → UTC, leap seconds from erfa).
* ``magnitude`` = −2.5 log10(psfFlux / nJy) + 31.4 [AB mag] and its error
  2.5/ln 10 · psfFluxErr/psfFlux; None when the difference flux is not positive
  (a fading or negative source has no magnitude; ``isNegative`` says so).
* ``first_detection``: ``diaObject.firstDiaSourceMjdTai`` when finite (v8+), else the
  earliest ``midpointMjdTai`` of ``prvDiaSources`` (whatever their flux; epochs
  outside 1972–2100 skipped) and this source when the history array is present
  (possibly empty), else this source when ``diaObject.nDiaSources`` is 1; else
  None (unknown).
* ``history`` (``history_source`` = ``"lsst.prvDiaSources"``): the times (MJD TAI →
  UTC) of the ``prvDiaSources`` with a positive difference flux at >= 5 sigma
  (``psfFlux / psfFluxErr >= 5``, ``psfFlux > 0``, ``isNegative`` not true; v7 has
  no ``isNegative`` and the flux sign alone decides), earlier than this source,
  sorted, deduplicated, the newest :data:`~mma.handlers.ztf.HISTORY_CAP`. An
  entry with a NaN flux or an impossible epoch is skipped. A null
  ``prvDiaSources`` (the pipeline sends none, as in the real v9.0 packet) gives
  ``history_source`` None: not told, unlike an empty array.
* ``quality``: the ``diaSource`` vetting fields (``reliability``, ``isNegative``,
  ``isDipole``, ``pixelFlags_*``, ``ssObjectId``, ``timeWithdrawnMjdTai``...) with
  NaN → None and id 0 → None. v7 has no ``isNegative``: it is derived as
  ``psfFlux < 0`` (``isNegative_derived`` = True). v7 has no ``isDipole``: None.

ELAsTiCC v0.9 packets (``elasticc.v0_9.alert``: ``midPointTai``, ``decl``, ``psFlux``,
``filterName``) are simulations: they become ``survey="ELAsTiCC"`` so that they can
never be mistaken for sky data, with ``quality["simulated"] = True``. Their
``prvDiaSources`` (``psFlux``, ``psFluxErr``, ``midPointTai``) give the history by
the same rule, ``history_source="elasticc.prvDiaSources"``.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mma.errors import BadMessage, InvalidValue, MalformedMessage, MissingField
from mma.formats import avro
from mma.formats import rubin as schemas
from mma.formats.rubin import tai_mjd_to_utc
from mma.handlers.ztf import finish_history
from mma.models import Alert

__all__ = [
    "DEFAULT_TOPICS", "HISTORY_SOURCE", "KIND", "NAME", "MatchKeys", "alert_from_parts",
    "decode_fast", "decode_full", "flux_to_mag", "is_positive_detection", "match_keys",
    "mjd_tai_time", "parse", "prv_dia_source_times", "sniff", "split",
]

logger = logging.getLogger(__name__)

NAME = "rubin"
KIND = "alert"
DEFAULT_TOPICS: tuple[str, ...] = ("lsst-alerts-v11",)

MAX_MESSAGE_BYTES = 16 * 2**20  # DMTN-102: ≲ 82 kB with a full year of history
MAX_FILE_BYTES = 2**30
MAX_FILE_RECORDS = 1_000_000
CONFLUENT_MAGIC = 0
HEADER_BYTES = 5
AB_ZEROPOINT_NJY = 31.4
"""AB magnitude of a 1 nJy source: m = −2.5 log10(f / 3631 Jy) = −2.5 log10(f / nJy) + 31.4."""

ELASTICC_PREFIX = "elasticc."

HISTORY_SOURCE = "lsst.prvDiaSources"
"""``Alert.history_source`` of a history read from a Rubin packet's ``prvDiaSources``."""
ELASTICC_HISTORY_SOURCE = "elasticc.prvDiaSources"
DETECTION_SNR = 5.0
"""Signal-to-noise (``psfFlux / psfFluxErr``) of a history detection: the Rubin
pipeline's own difference-image detection threshold."""

QUALITY_KEYS = (
    "reliability", "isNegative", "isDipole", "snr", "psfFlux", "psfFluxErr", "extendedness",
    "ssObjectId", "timeProcessedMjdTai", "timeWithdrawnMjdTai", "visit", "detector",
    "centroid_flag", "psfFlux_flag", "glint_trail", "trailLength",
)  # fmt: skip
PIXEL_FLAGS = tuple(sorted(k for k in schemas.SOURCE_FIELDS if k.startswith("pixelFlags")))
_IDS = ("ssObjectId", "visit", "detector")  # 0 = "none" for ssObjectId only (below)


def flux_to_mag(flux_njy: float | None, err_njy: float | None) -> tuple[float | None, float | None]:
    """PSF difference flux [nJy] → (AB mag, 1-sigma mag error); (None, None) if flux ≤ 0 or NaN."""
    if flux_njy is None or not math.isfinite(flux_njy) or flux_njy <= 0:
        return None, None
    mag = -2.5 * math.log10(flux_njy) + AB_ZEROPOINT_NJY
    if err_njy is None or not math.isfinite(err_njy) or err_njy < 0:
        return mag, None
    return mag, 2.5 / math.log(10) * err_njy / flux_njy


def _clean(value: Any) -> Any:
    """NaN → None (quality must be JSON-safe); other values unchanged."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _number(record: Mapping[str, Any], key: str, where: str = "diaSource") -> float:
    value = record.get(key)
    if value is None:
        raise MissingField(f"{where}.{key} is missing")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValue(f"{where}.{key} is {value!r}, not a finite number")
    return float(value)


def _id(value: Any) -> int | None:
    """A Rubin id: positive int, or None for null/0."""
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidValue(f"id {value!r} is not a positive integer")
    return value


def _real(value: Any) -> float | None:
    """A finite int or float as float; None for anything else (bool, None, NaN, inf...)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def is_positive_detection(flux: Any, err: Any, negative: Any = None) -> bool:
    """True for a positive difference flux at >= 5 sigma.

    Parameters
    ----------
    flux, err : float
        PSF difference flux and its 1-sigma error, in any one unit (nJy for Rubin).
    negative : bool, optional
        The pipeline's ``isNegative``; True excludes the source whatever the flux
        (None or absent, as in v7: the flux sign alone decides).

    Returns
    -------
    bool
        ``flux > 0``, ``err > 0`` and ``flux / err >= 5``, all finite, and
        *negative* not True. False for any NaN, infinite or ill-typed value.
    """
    f, e = _real(flux), _real(err)
    if negative is True or f is None or e is None or f <= 0 or e <= 0:
        return False
    return f / e >= DETECTION_SNR


def mjd_tai_time(mjd_tai: Any) -> datetime | None:
    """:func:`~mma.formats.rubin.tai_mjd_to_utc` for a history entry: None, not an error.

    A NaN, ill-typed or out-of-range (1972–2100) epoch in one history entry must
    not cost the alert: the entry is skipped.
    """
    mjd = _real(mjd_tai)
    if mjd is None or not schemas.MJD_MIN <= mjd <= schemas.MJD_MAX:
        return None
    return tai_mjd_to_utc(mjd)


def prv_dia_source_times(history: Any, *, time_key: str = "midpointMjdTai",
                         flux_key: str = "psfFlux",
                         err_key: str = "psfFluxErr") -> list[datetime] | None:
    """Times of the positive >= 5 sigma sources in a ``prvDiaSources`` array.

    Parameters
    ----------
    history : list or None
        ``prvDiaSources`` items: at least *time_key* [MJD TAI], *flux_key* and
        *err_key* [nJy], and ``isNegative`` where the schema has it (v8+).
    time_key, flux_key, err_key : str
        Field names (ELAsTiCC: ``midPointTai``, ``psFlux``, ``psFluxErr``).

    Returns
    -------
    list of datetime or None
        Aware UTC times, unsorted (see :func:`mma.handlers.ztf.finish_history`);
        None when *history* is not an array (null: the packet tells nothing).
        Entries failing :func:`is_positive_detection` or with a bad epoch are
        left out.
    """
    if not isinstance(history, list | tuple):
        return None
    times = []
    for entry in history:
        if not isinstance(entry, Mapping) or not is_positive_detection(
                entry.get(flux_key), entry.get(err_key), entry.get("isNegative")):
            continue
        when = mjd_tai_time(entry.get(time_key))
        if when is not None:
            times.append(when)
    return times


def _first_detection(source: Mapping[str, Any], rest: Mapping[str, Any]) -> float | None:
    obj = rest.get("diaObject")
    first = obj.get("firstDiaSourceMjdTai") if isinstance(obj, Mapping) else None  # v8+
    if isinstance(first, float) and math.isfinite(first):
        return first
    history = rest.get("prvDiaSources")
    if not isinstance(history, list):
        if isinstance(obj, Mapping) and obj.get("nDiaSources") == 1:
            return float(source["midpointMjdTai"])  # the object's only source is this one
        return None  # no history sent: the first detection is unknown
    # An impossible epoch (outside 1972–2100) in one entry is skipped, as for the
    # history, rather than made the first detection and the alert refused.
    epochs = [e for h in history if isinstance(h, Mapping)
              and isinstance(e := h.get("midpointMjdTai"), float)
              and schemas.MJD_MIN <= e <= schemas.MJD_MAX]
    return min([*epochs, float(source["midpointMjdTai"])])


def alert_from_parts(header: Mapping[str, Any], source: Mapping[str, Any],
                     rest: Mapping[str, Any], *, version: str) -> Alert:
    """Build an Alert from the parts of a decoded Rubin packet (v7–v11).

    Parameters
    ----------
    header : mapping
        Top-level fields before ``diaSource`` (``alertId`` or ``diaSourceId``...).
    source : mapping
        The triggering ``diaSource`` (all fields, or the subset the fast path keeps).
    rest : mapping
        ``prvDiaSources`` (items need only ``midpointMjdTai``, ``psfFlux``,
        ``psfFluxErr`` and ``isNegative`` when the schema has it) and ``diaObject``.
    version : str
        Schema version (``"9.0"``), kept in ``quality["schema_version"]``.
    """
    source_id = _id(source.get("diaSourceId"))
    if source_id is None:
        raise MissingField("diaSource.diaSourceId is missing or 0")
    found = rest.get("diaObject")
    obj: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    ss_id = _id(source.get("ssObjectId"))
    object_id = _id(source.get("diaObjectId")) or _id(obj.get("diaObjectId"))
    if object_id is None and ss_id is None:
        raise MissingField("neither diaObjectId nor ssObjectId is set")
    ra, dec = _number(source, "ra"), _number(source, "dec")
    time = tai_mjd_to_utc(_number(source, "midpointMjdTai"))
    first = _first_detection(source, rest)
    history = prv_dia_source_times(rest.get("prvDiaSources"))
    flux = _clean(source.get("psfFlux"))
    mag, mag_err = flux_to_mag(flux, _clean(source.get("psfFluxErr")))
    quality: dict[str, Any] = {k: _clean(source.get(k)) for k in QUALITY_KEYS}
    quality.update({k: source.get(k) for k in PIXEL_FLAGS})
    quality["ssObjectId"] = ss_id
    if "isNegative" not in source:  # v7: derived from the sign of the difference flux
        quality["isNegative"] = None if flux is None else flux < 0
        quality["isNegative_derived"] = True
    quality["diaObjectId"] = object_id
    quality["nDiaSources"] = obj.get("nDiaSources")
    quality["schema_version"] = version
    quality["alertId"] = header.get("alertId", header.get("diaSourceId"))
    return Alert(
        alert_id=str(source_id),
        object_id=str(object_id) if object_id is not None else f"ss:{ss_id}",
        survey="LSST",
        ra_deg=ra,
        dec_deg=dec,
        time=time,
        band=source.get("band"),
        magnitude=mag,
        magnitude_err=mag_err,
        first_detection=None if first is None else tai_mjd_to_utc(first),
        quality=quality,
        history=finish_history(history, time),
        history_source=None if history is None else HISTORY_SOURCE,
    )


def alert_from_elasticc(packet: Mapping[str, Any]) -> Alert:
    """Map one ELAsTiCC v0.9 simulated packet (``survey="ELAsTiCC"``, ``simulated``)."""
    source = packet.get("diaSource")
    if not isinstance(source, Mapping):
        raise MissingField("diaSource record is missing")
    source_id, object_id = _id(source.get("diaSourceId")), _id(source.get("diaObjectId"))
    if source_id is None or object_id is None:
        raise MissingField("diaSource.diaSourceId or diaObjectId is missing")
    mag, mag_err = flux_to_mag(_clean(source.get("psFlux")), _clean(source.get("psFluxErr")))
    found = packet.get("diaObject")
    obj: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    time = tai_mjd_to_utc(_number(source, "midPointTai"))
    history = prv_dia_source_times(packet.get("prvDiaSources"), time_key="midPointTai",
                                   flux_key="psFlux", err_key="psFluxErr")
    return Alert(
        alert_id=str(source_id), object_id=str(object_id), survey="ELAsTiCC",
        ra_deg=_number(source, "ra"), dec_deg=_number(source, "decl"), time=time,
        band=source.get("filterName"), magnitude=mag, magnitude_err=mag_err,
        quality={"simulated": True, "snr": _clean(source.get("snr")),
                 "psfFlux": _clean(source.get("psFlux")),
                 "z_final": _clean(obj.get("z_final")), "alertId": packet.get("alertId")},
        history=finish_history(history, time),
        history_source=None if history is None else ELASTICC_HISTORY_SOURCE,
    )


def _confluent_id(raw: bytes) -> int:
    if len(raw) < HEADER_BYTES or raw[0] != CONFLUENT_MAGIC:
        raise MalformedMessage("not a Confluent-framed message (magic byte 0 missing)")
    return int(struct.unpack_from(">i", raw, 1)[0])


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


def _container_name(raw: bytes) -> str:
    try:
        schema = avro.container_schema(raw, max_bytes=MAX_FILE_BYTES)
    except BadMessage:
        return ""
    return str(schema.get("name", ""))


def _is_rubin_name(name: str) -> bool:
    return schemas.schema_id_of_name(name) is not None or (
        name.startswith(ELASTICC_PREFIX) and name.endswith(".alert"))


def sniff(raw: bytes) -> bool:
    """True for a Confluent frame with a bundled schema id, or a Rubin/ELAsTiCC Avro container."""
    if avro.is_container(raw):
        return _is_rubin_name(_container_name(raw))
    if len(raw) > HEADER_BYTES and raw[0] == CONFLUENT_MAGIC:
        return int(struct.unpack_from(">i", raw, 1)[0]) in schemas.known_ids()
    return False


def split(raw: bytes) -> Iterator[bytes]:
    """One-record containers from a container file; a Confluent message is yielded as is."""
    if not avro.is_container(raw):
        yield raw
        return
    yield from avro.split_container(raw, max_bytes=MAX_FILE_BYTES, max_records=MAX_FILE_RECORDS)


def parse(raw: bytes, *, topic: str) -> Alert:
    """Decode one Rubin alert (Confluent frame, or a one-record Avro container).

    Raises
    ------
    UnknownFormat
        Confluent schema id not bundled.
    HostileMessage, MalformedMessage
        Oversized, truncated, corrupt, several records, or not a Rubin schema.
    MissingField, InvalidValue
        No id, NaN position, MJD outside 1972–2100...
    """
    if not avro.is_container(raw):
        header, source, rest, version = decode_fast(raw)
        return alert_from_parts(header, source, rest, version=version)
    container = avro.read_container(raw, max_bytes=MAX_MESSAGE_BYTES, max_records=1)
    name = str(container.schema.get("name", ""))
    if not _is_rubin_name(name) or len(container.records) != 1:
        raise MalformedMessage(f"Avro container ({name!r}, {len(container.records)} records) "
                               "is not one Rubin alert")
    record: Mapping[str, Any] = container.records[0]
    if name.startswith(ELASTICC_PREFIX):
        return alert_from_elasticc(record)
    found = record.get("diaSource")
    if not isinstance(found, Mapping):
        raise MissingField("diaSource record is missing")
    schema_id = schemas.schema_id_of_name(name) or 0
    return alert_from_parts(record, found, record,
                            version=f"{schema_id // 100}.{schema_id % 100}")


@dataclass(frozen=True)
class MatchKeys:
    """What matching needs of a batch of Confluent-framed alerts, one row per frame.

    Attributes
    ----------
    ok : numpy.ndarray of bool
        The leading fields decoded and hold a usable id, position and time.
        A frame not ok must go through :func:`parse` (which raises the proper
        :class:`~mma.errors.BadMessage` for the dead-letter queue); the other
        arrays are NaN / 0 there.
    ra_deg, dec_deg : numpy.ndarray of float64
        ``diaSource.ra`` / ``dec`` [deg ICRS], exactly as :func:`parse` gives them.
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


_KEY_TARGETS = {"diaSourceId": "sid", "ra": "ra", "dec": "dec", "midpointMjdTai": "t"}


@cache
def _key_decoder(schema_id: int) -> Callable[[bytes, int], tuple[Any, Any, Any, Any, int]]:
    """Straight-line decoder of (diaSourceId, ra, dec, midpointMjdTai, end) for *schema_id*.

    The shortest leading-field decoder: generated like
    :class:`mma.formats.rubin.Prefix`, from the bundled schema files only (no
    sender text reaches ``exec``), but it stops at the last of these four
    ``diaSource`` fields (``dec``, about 60 bytes in) and builds no dict:
    3x faster than the full prefix. Raises UnknownFormat for an unbundled id.
    """
    schemas.load(schema_id)  # UnknownFormat if not bundled
    path = schemas.known_ids()[schema_id]
    ns = f"lsst.{path.name}"
    raw = schemas._read_dir(path)
    source = raw[f"{ns}.diaSource"]["fields"]
    last = max(i for i, f in enumerate(source) if f["name"] in _KEY_TARGETS)
    lines = ["def decode(buf, p):", "    sid = ra = dec = t = None"]
    for field in raw[f"{ns}.alert"]["fields"]:
        if field["name"] == "diaSource":
            break
        schemas._emit_field(lines, field["type"], None)
    for field in source[: last + 1]:
        schemas._emit_field(lines, field["type"], _KEY_TARGETS.get(field["name"]))
    lines.append("    return sid, ra, dec, t, p")
    scope: dict[str, Any] = {"_long": schemas._long, "_text": schemas._text, "_F": schemas._F,
                             "_D": schemas._D, "MalformedMessage": MalformedMessage}
    exec(compile("\n".join(lines), f"<rubin match keys {ns}>", "exec"), scope)
    function: Callable[[bytes, int], tuple[Any, Any, Any, Any, int]] = scope["decode"]
    return function


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
    1972–2100. ``ok`` does not promise that :func:`parse` succeeds: the rest of
    the packet is not read (a frame cut after ``dec`` is ok here, and
    :func:`parse` rejects it), and object ids are not checked. Where
    :func:`parse` succeeds, the ok rows give exactly its ``ra_deg``,
    ``dec_deg``, ``alert_id`` and ``time``.
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
