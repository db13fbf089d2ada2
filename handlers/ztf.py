"""ZTF alert packets: one Avro object container per Kafka message → :class:`~mma.models.Alert`.

ZTF publishes one topic per night (``ztf_YYYYMMDD_programid1``), so this module
claims no topic by default: users map theirs in the configuration, usually as
the Kafka pattern ``^ztf_.*_programid1$``. Schemas 3.x and 4.x are accepted
(and the un-versioned 2018 packets, which carry the same candidate fields).

:func:`alert_from_candidate` maps a ZTF ``candidate`` record to an Alert and is
kept apart from the Avro decoding: broker handlers (:mod:`mma.handlers.fink`)
reuse it for the same fields in other containers, and a later fast path may
decode only the leading fields of a packet and still call it.

``Alert.history`` comes from the packet's ``prv_candidates`` (the 30 days before
the alert): the times of the entries that are detections (non-null ``candid``;
upper limits have none) with ``isdiffpos`` true and ``sigmapsf`` <=
:data:`~mma.formats.history.SIGMAPSF_MAX` (S/N >= 5), see
:func:`mma.formats.history.prv_candidate_times`. ``jdstarthist`` is not used for
it: it counts negative and 3-sigma detections too (it still gives
``first_detection``). The history rules, shared with the Rubin and broker
handlers, live in :mod:`mma.formats.history`.

Bounds: a message is at most :data:`MAX_MESSAGE_BYTES`, and so is its inflated
deflate block; each packet is walked by its schema before fastavro decodes it
(:mod:`mma.formats.avro_walk`) and refused when ``prv_candidates`` (or any other
array) holds more than :data:`MAX_HISTORY_ENTRIES` entries. A file is cut into
packets without decoding them, at most :data:`MAX_FILE_RECORDS` per file.
``objectId`` must be a ZTF id (:data:`mma.formats.ids.ZTF_OBJECT`).

``Alert.cutouts``: the packet's ``cutoutScience``, ``cutoutTemplate`` and
``cutoutDifference`` (``{fileName, stampData}``, gzipped FITS) as sent,
unparsed (:func:`mma.formats.avro.cutouts_of`); fastavro has decoded them
already, so keeping them costs nothing here. Storing them (under a size cap)
and drawing them is done later, by :mod:`mma.db.store` and
:mod:`mma.emitters.stamps`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from mma.errors import BadMessage, InvalidValue, MalformedMessage, MissingField
from mma.formats import avro, ids
from mma.formats.history import (
    JD_MAX,
    JD_MIN,
    finish_history,
    isdiffpos_to_bool,
    jd_to_datetime,
    prv_candidate_times,
)
from mma.models import Alert

__all__ = [
    "DEFAULT_TOPICS",
    "FIRST_LIGHT",
    "HISTORY_SOURCE",
    "KIND",
    "NAME",
    "alert_from_candidate",
    "parse",
    "sniff",
    "split",
]

logger = logging.getLogger(__name__)

NAME = "ztf"
KIND = "alert"
DEFAULT_TOPICS: tuple[str, ...] = ()

# ZTF's camera went on sky in autumn 2017 (first light announced 2017-11-14; the
# survey proper began 2018-03-20, Bellm et al. 2019, PASP 131, 018002). Packets
# carry commissioning epochs: jdstarthist (first_detection) reaches 2017-10-15 in
# the Fink night of 2024-01-15. The bound is the start of that commissioning month.
FIRST_LIGHT = datetime(2017, 10, 1, tzinfo=UTC)

SCHEMA_NAME = "ztf.alert"
MAX_MESSAGE_BYTES = 16 * 2**20  # real packets are 60–110 kB with cutouts
MAX_FILE_BYTES = 2**30
MAX_FILE_RECORDS = avro.MAX_FILE_RECORDS
MAX_HISTORY_ENTRIES = avro.MAX_ARRAY_ITEMS
"""Most ``prv_candidates`` (or ``fp_hists``) entries one packet may carry, read from the
array's block counts before it is decoded: 30 days of history reach 1,500 entries in
the busiest real packets; a packet of 1,048,512 (217 KiB deflated) took 2.2 GB."""

BANDS = {1: "g", 2: "r", 3: "i"}
"""ZTF filter id ``fid`` → band name."""

SENTINEL = -999.0
"""ZTF's "no value" for numeric fields (e.g. ``ssdistnr`` when no known asteroid is near)."""

# Candidate fields copied into Alert.quality: vetting (mma.match.scoring.vet_ztf) needs rb, drb,
# isdiffpos, ssdistnr, ssmagnr, sgscore1, distpsnr1; the rest helps triage.
QUALITY_FLOATS = (
    "rb", "drb", "ssdistnr", "ssmagnr", "sgscore1", "distpsnr1", "sgscore2", "distpsnr2",
    "sgscore3", "distpsnr3", "magnr", "sigmagnr", "distnr", "classtar", "fwhm", "elong",
    "diffmaglim", "scorr", "neargaia", "maggaia", "neargaiabright", "maggaiabright",
    "jdstarthist", "jdendhist",
)  # fmt: skip
QUALITY_INTS = ("ndethist", "ncovhist", "programid", "nbad", "field", "rcid", "tooflag", "nmtchps")
QUALITY_STRINGS = ("rbversion", "drbversion", "ssnamenr")

HISTORY_SOURCE = "ztf.prv_candidates"
"""``Alert.history_source`` of a history read from a ZTF packet's ``prv_candidates``."""


def _as_float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"candidate.{key} is {type(value).__name__}, expected a number")
    return float(value)


def _number(cand: Mapping[str, Any], key: str) -> float | None:
    """An optional float field: None when absent, null, NaN or the -999 sentinel."""
    value = cand.get(key)
    if value is None:
        return None
    number = _as_float(value, key)
    return number if math.isfinite(number) and number != SENTINEL else None


def _required_number(cand: Mapping[str, Any], key: str) -> float:
    """A float field the alert cannot do without; NaN and infinities are refused."""
    value = cand.get(key)
    if value is None:
        raise MissingField(f"candidate.{key} is missing")
    number = _as_float(value, key)
    if not math.isfinite(number):
        raise InvalidValue(f"candidate.{key} is {value!r}, not a finite number")
    return number


def _integer(cand: Mapping[str, Any], key: str) -> int | None:
    value = cand.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"candidate.{key} is {type(value).__name__}, expected an integer")
    return value


def _string(cand: Mapping[str, Any], key: str) -> str | None:
    value = cand.get(key)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null")):
        return None  # ZTF writes the string 'null' when there is no asteroid name
    if not isinstance(value, str):
        raise InvalidValue(f"candidate.{key} is {type(value).__name__}, expected a string")
    return value


def _checked_jd(jd: float, key: str) -> datetime:
    if not JD_MIN <= jd <= JD_MAX:
        raise InvalidValue(f"candidate.{key} = {jd!r} is not a Julian date in 1970–2100")
    return jd_to_datetime(jd)


def alert_from_candidate(
    candidate: Mapping[str, Any],
    *,
    object_id: Any,
    candid: Any,
    survey: str = "ZTF",
    broker: str | None = None,
    extra_quality: Mapping[str, Any] | None = None,
    distance_mpc: float | None = None,
    history: Iterable[datetime] | None = None,
    history_source: str | None = None,
    object_pattern: re.Pattern[str] | None = None,
    cutouts: Mapping[str, tuple[str, bytes]] | None = None,
) -> Alert:
    """Build an Alert from a ZTF ``candidate`` record (any container: Avro, parquet, JSON).

    Parameters
    ----------
    candidate : mapping
        The ZTF candidate fields: ``ra``, ``dec`` [deg, ICRS J2000], ``jd`` [JD UTC,
        start of exposure], ``fid``, ``magpsf``/``sigmapsf`` [AB mag], vetting fields.
    object_id : str
        ZTF ``objectId`` (e.g. ``ZTF18abudxnw``), checked against *object_pattern*
        (:func:`mma.formats.ids.text_id`).
    candid : int
        ZTF ``candid`` of this detection (positive, 64-bit); becomes ``alert_id``.
    survey, broker : str
        Stored as given (``broker`` is None for the ZTF stream itself).
    extra_quality : mapping, optional
        Broker fields added to ``quality`` (JSON-serialisable).
    distance_mpc : float, optional
        Host luminosity distance [Mpc] supplied by a broker.
    history : iterable of datetime, optional
        Aware UTC times of the object's positive >= 5 sigma detections that the
        container lists (e.g. :func:`~mma.formats.history.prv_candidate_times`);
        those at or after ``jd`` are dropped, the rest sorted, deduplicated and
        capped (:func:`~mma.formats.history.finish_history`). None: the container
        lists no history.
    history_source : str, optional
        Name of the array *history* came from (:data:`HISTORY_SOURCE`...);
        ignored (None) when *history* is None.
    object_pattern : re.Pattern, optional
        What *object_id* must match; default :data:`mma.formats.ids.ZTF_OBJECT`.
    cutouts : mapping, optional
        The container's stamps, kind → (format, bytes) (:func:`mma.formats.avro.cutouts_of`).

    Raises
    ------
    MissingField
        ``objectId``, ``candid``, ``ra``, ``dec`` or ``jd`` absent.
    InvalidValue
        Ill-typed or out-of-range values (NaN position, unknown ``fid``, an
        ``objectId`` that is not a ZTF id...).
    """
    ids.text_id(object_id, field="objectId", pattern=object_pattern or ids.ZTF_OBJECT,
                what="a ZTF object id (ZTF, 2 digits, 7 lower-case letters)")
    if isinstance(candid, bool) or not isinstance(candid, int):
        raise MissingField(f"candid is missing or not an integer ({ids.shown(candid)})")
    if candid <= 0:
        raise InvalidValue(f"candid {ids.shown(candid)} is not a positive ZTF candidate id")
    ids.integer_id(candid, field="candid")
    inner = candidate.get("candid")
    if inner is not None and inner != candid:
        raise InvalidValue(f"candid {candid} disagrees with candidate.candid "
                           f"{ids.shown(inner)}")
    ra = _required_number(candidate, "ra")
    dec = _required_number(candidate, "dec")
    time = _checked_jd(_required_number(candidate, "jd"), "jd")
    jdstarthist = _number(candidate, "jdstarthist")
    fid = _integer(candidate, "fid")
    if fid is not None and fid not in BANDS:
        raise InvalidValue(f"candidate.fid {fid} is not a ZTF filter (1=g, 2=r, 3=i)")
    quality: dict[str, Any] = {"candid": candid, "fid": fid}
    quality["isdiffpos"] = isdiffpos_to_bool(candidate.get("isdiffpos"))
    for key in QUALITY_FLOATS:
        quality[key] = _number(candidate, key)
    for key in QUALITY_INTS:
        quality[key] = _integer(candidate, key)
    for key in QUALITY_STRINGS:
        quality[key] = _string(candidate, key)
    if extra_quality:
        quality.update(extra_quality)
    return Alert(
        alert_id=str(candid),
        object_id=object_id,
        survey=survey,
        ra_deg=ra,
        dec_deg=dec,
        time=time,
        band=BANDS.get(fid) if fid is not None else None,
        magnitude=_number(candidate, "magpsf"),
        magnitude_err=_number(candidate, "sigmapsf"),
        first_detection=None if jdstarthist is None else _checked_jd(jdstarthist, "jdstarthist"),
        quality=quality,
        broker=broker,
        distance_mpc=distance_mpc,
        history=finish_history(history, time, FIRST_LIGHT),
        history_source=None if history is None else history_source,
        cutouts=dict(cutouts or {}),
    )


def alert_from_packet(packet: Mapping[str, Any]) -> Alert:
    """Map one decoded ZTF alert packet (top level: objectId, candid, candidate...) to an Alert."""
    if "objectId" not in packet and "alertId" in packet:
        # The 2016 pre-survey prototype (schema v1.0: alertId, negative candid,
        # PTF-era data) has no ZTF object; it is not a survey alert.
        raise MissingField("objectId is missing: pre-survey ZTF prototype packet (alertId)")
    candidate = packet.get("candidate")
    if not isinstance(candidate, Mapping):
        raise MissingField("candidate record is missing")
    extra = {"schemavsn": packet.get("schemavsn")}  # None in the un-versioned 2018 packets
    return alert_from_candidate(
        candidate,
        object_id=packet.get("objectId"),
        candid=packet.get("candid"),
        extra_quality=extra,
        history=prv_candidate_times(packet.get("prv_candidates"), candid=packet.get("candid")),
        history_source=HISTORY_SOURCE,
        cutouts=avro.cutouts_of(packet),
    )


def sniff(raw: bytes) -> bool:
    """True if *raw* is an Avro object container whose writer schema is ``ztf.alert``."""
    if not avro.is_container(raw):
        return False
    try:
        schema = avro.container_schema(raw, max_bytes=MAX_FILE_BYTES)
    except BadMessage:
        return False
    return schema.get("name") == SCHEMA_NAME


def split(raw: bytes) -> Iterator[bytes]:
    """Cut an Avro container of many ZTF packets into one-record containers (not decoded)."""
    return avro.split_container(raw, max_bytes=MAX_FILE_BYTES, max_records=MAX_FILE_RECORDS,
                                max_items=MAX_HISTORY_ENTRIES)


def parse(raw: bytes, *, topic: str) -> Alert:
    """Decode one ZTF Kafka message (a one-record Avro container) to an Alert.

    Raises
    ------
    HostileMessage, MalformedMessage
        Oversized (message, inflated block, more than :data:`MAX_HISTORY_ENTRIES`
        history entries), not Avro, corrupt or truncated, more than one record,
        or not a ``ztf.alert`` schema.
    MissingField, InvalidValue
        See :func:`alert_from_candidate`.
    """
    container = avro.read_container(raw, max_bytes=MAX_MESSAGE_BYTES, max_records=1000,
                                    max_block_bytes=MAX_MESSAGE_BYTES,
                                    max_items=MAX_HISTORY_ENTRIES)
    name = container.schema.get("name")
    if name != SCHEMA_NAME:
        raise MalformedMessage(f"Avro schema {ids.shown(name)} is not a ZTF alert "
                               f"({SCHEMA_NAME})")
    if len(container.records) != 1:
        raise MalformedMessage(
            f"container holds {len(container.records)} records; a ZTF message holds one"
        )
    return alert_from_packet(container.records[0])
