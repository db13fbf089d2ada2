"""Rubin/LSST alert packets (schemas v7–v11, and ELAsTiCC simulations) → :class:`~mma.models.Alert`.

Two framings are accepted:

* **Confluent wire format**, what ``lsst-alerts-v11`` carries: byte 0 = ``0x00``,
  bytes 1–4 = big-endian schema id (``MAJOR*100 + MINOR``), then one schemaless
  Avro record, decoded with the bundled schema of that id
  (:mod:`mma.formats.rubin`). This is the fast path,
  :func:`mma.formats.rubin_frames.decode_fast`: only the fields the mapping
  below needs become Python objects. Every alert is decoded this far, matched
  or not: an alert is stored with its object's first detection
  (``diaObject.firstDiaSourceMjdTai``, near the end of the packet) and its
  history, so that a region that arrives later finds exactly what a region
  present at the time would have; a cheaper decode of the position alone would
  make stored alerts depend on arrival order. The cutouts are read as bytes
  in the same walk at no measurable cost: the walk's time goes to the ~80
  ``diaObject`` fields before that epoch.
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
  sorted, deduplicated, the newest :data:`~mma.formats.history.HISTORY_CAP`
  (:func:`mma.formats.history.prv_dia_source_times`). An entry with a NaN flux
  or an impossible epoch is skipped. A null
  ``prvDiaSources`` (the pipeline sends none, as in the real v9.0 packet) gives
  ``history_source`` None: not told, unlike an empty array.
* ``cutouts``: ``cutoutScience``, ``cutoutTemplate``, ``cutoutDifference`` (FITS
  bytes, often null), as sent (:func:`mma.formats.avro.cutouts_of`): the fast
  path's tail read decodes them anyway (:meth:`mma.formats.rubin.RubinSchema.tail`).
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
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from mma.errors import BadMessage, InvalidValue, MalformedMessage, MissingField
from mma.formats import avro, ids
from mma.formats import rubin as schemas
from mma.formats.history import finish_history, prv_dia_source_times
from mma.formats.rubin import tai_mjd_to_utc
from mma.formats.rubin_decoders import SOURCE_FIELDS
from mma.formats.rubin_frames import (
    CONFLUENT_MAGIC,
    HEADER_BYTES,
    MAX_MESSAGE_BYTES,
    decode_fast,
)
from mma.models import Alert

__all__ = [
    "DEFAULT_TOPICS", "HISTORY_SOURCE", "KIND", "NAME", "alert_from_parts", "flux_to_mag",
    "parse", "sniff", "split",
]

logger = logging.getLogger(__name__)

NAME = "rubin"
KIND = "alert"
DEFAULT_TOPICS: tuple[str, ...] = ("lsst-alerts-v11",)

# Rubin's first alerts are 2025 (LSSTCam), but the Rubin pipelines also make alerts
# of this format from precursor data: the lsst/alert_packet v7.1 sample is HSC
# COSMOS data of 2016-03-07. The bound is the start of that precursor survey,
# the Subaru/HSC Strategic Program (2014-03-26; Aihara et al. 2018, PASJ 70, S4).
FIRST_LIGHT = datetime(2014, 3, 26, tzinfo=UTC)
MAX_FILE_BYTES = 2**30
MAX_FILE_RECORDS = avro.MAX_FILE_RECORDS
MIN_FRAME_BYTES = HEADER_BYTES + 64  # a Rubin alert's diaSource alone is ~300 bytes
AB_ZEROPOINT_NJY = 31.4
"""AB magnitude of a 1 nJy source: m = −2.5 log10(f / 3631 Jy) = −2.5 log10(f / nJy) + 31.4."""

ELASTICC_PREFIX = "elasticc."

HISTORY_SOURCE = "lsst.prvDiaSources"
"""``Alert.history_source`` of a history read from a Rubin packet's ``prvDiaSources``."""
ELASTICC_HISTORY_SOURCE = "elasticc.prvDiaSources"

QUALITY_KEYS = (
    "reliability", "isNegative", "isDipole", "snr", "psfFlux", "psfFluxErr", "extendedness",
    "ssObjectId", "timeProcessedMjdTai", "timeWithdrawnMjdTai", "visit", "detector",
    "centroid_flag", "psfFlux_flag", "glint_trail", "trailLength",
)  # fmt: skip
PIXEL_FLAGS = tuple(sorted(k for k in SOURCE_FIELDS if k.startswith("pixelFlags")))
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


def _id(value: Any, field: str = "id") -> int | None:
    """A Rubin id: a positive 64-bit int (:func:`mma.formats.ids.integer_id`); None for null, 0."""
    if value is None or value == 0:
        return None
    return ids.integer_id(value, field=field)


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
        ``psfFluxErr`` and ``isNegative`` when the schema has it), ``diaObject``
        and the ``cutout*`` fields, if any.
    version : str
        Schema version (``"9.0"``), kept in ``quality["schema_version"]``.
    """
    source_id = _id(source.get("diaSourceId"), "diaSource.diaSourceId")
    if source_id is None:
        raise MissingField("diaSource.diaSourceId is missing or 0")
    found = rest.get("diaObject")
    obj: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    ss_id = _id(source.get("ssObjectId"), "diaSource.ssObjectId")
    object_id = (_id(source.get("diaObjectId"), "diaSource.diaObjectId")
                 or _id(obj.get("diaObjectId"), "diaObject.diaObjectId"))
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
        history=finish_history(history, time, FIRST_LIGHT),
        history_source=None if history is None else HISTORY_SOURCE,
        cutouts=avro.cutouts_of(rest),
    )


def alert_from_elasticc(packet: Mapping[str, Any]) -> Alert:
    """Map one ELAsTiCC v0.9 simulated packet (``survey="ELAsTiCC"``, ``simulated``)."""
    source = packet.get("diaSource")
    if not isinstance(source, Mapping):
        raise MissingField("diaSource record is missing")
    source_id = _id(source.get("diaSourceId"), "diaSource.diaSourceId")
    object_id = _id(source.get("diaObjectId"), "diaSource.diaObjectId")
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
        history=finish_history(history, time, FIRST_LIGHT),
        history_source=None if history is None else ELASTICC_HISTORY_SOURCE,
        cutouts=avro.cutouts_of(packet),
    )


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
    """True for a Rubin/ELAsTiCC Avro container, or what looks like a Rubin Confluent frame.

    A frame is claimed when its schema id has the Rubin form (``MAJOR*100 +
    MINOR``) even if that version is not bundled, and when a bundled id follows a
    wrong magic byte: the family is recognised, so :func:`parse` says which
    version or which byte is wrong instead of "no handler recognises".
    """
    if avro.is_container(raw):
        return _is_rubin_name(_container_name(raw))
    if len(raw) < MIN_FRAME_BYTES:
        return False
    schema_id = int(struct.unpack_from(">i", raw, 1)[0])
    if raw[0] == CONFLUENT_MAGIC:
        return schemas.plausible_id(schema_id)
    return schema_id in schemas.known_ids()


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
        Confluent schema id not bundled (the message names it and the known ones).
    HostileMessage, MalformedMessage
        Oversized, over an array cap, truncated, corrupt, a wrong Confluent magic
        byte, several records, or not a Rubin schema.
    MissingField, InvalidValue
        No id, NaN position, MJD outside 1972–2100...
    """
    if not avro.is_container(raw):
        header, source, rest, version = decode_fast(raw)
        return alert_from_parts(header, source, rest, version=version)
    container = avro.read_container(raw, max_bytes=MAX_MESSAGE_BYTES, max_records=1,
                                    max_block_bytes=MAX_MESSAGE_BYTES)
    name = str(container.schema.get("name", ""))
    if not _is_rubin_name(name) or len(container.records) != 1:
        raise MalformedMessage(f"Avro container ({ids.shown(name)}, {len(container.records)} "
                               "records) is not one Rubin alert")
    record: Mapping[str, Any] = container.records[0]
    if name.startswith(ELASTICC_PREFIX):
        return alert_from_elasticc(record)
    found = record.get("diaSource")
    if not isinstance(found, Mapping):
        raise MissingField("diaSource record is missing")
    schema_id = schemas.schema_id_of_name(name) or 0
    return alert_from_parts(record, found, record,
                            version=f"{schema_id // 100}.{schema_id % 100}")
