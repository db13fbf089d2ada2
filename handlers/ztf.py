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
:data:`SIGMAPSF_MAX` (S/N >= 5), see :func:`prv_candidate_times`. ``jdstarthist``
is not used for it: it counts negative and 3-sigma detections too (it still
gives ``first_detection``). :data:`HISTORY_CAP` and :func:`finish_history` are
shared with the Rubin and broker handlers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from mma.errors import BadMessage, InvalidValue, MalformedMessage, MissingField
from mma.formats import avro
from mma.models import Alert

__all__ = [
    "DEFAULT_TOPICS",
    "HISTORY_CAP",
    "HISTORY_SOURCE",
    "KIND",
    "NAME",
    "SIGMAPSF_MAX",
    "alert_from_candidate",
    "detection_time",
    "finish_history",
    "history_jd",
    "isdiffpos_to_bool",
    "jd_to_datetime",
    "light_curve_times",
    "parse",
    "prv_candidate_times",
    "sniff",
    "split",
]

logger = logging.getLogger(__name__)

NAME = "ztf"
KIND = "alert"
DEFAULT_TOPICS: tuple[str, ...] = ()

SCHEMA_NAME = "ztf.alert"
MAX_MESSAGE_BYTES = 16 * 2**20  # real packets are 60–110 kB with cutouts
MAX_FILE_BYTES = 2**30
MAX_FILE_RECORDS = 1_000_000

BANDS = {1: "g", 2: "r", 3: "i"}
"""ZTF filter id ``fid`` → band name."""

SENTINEL = -999.0
"""ZTF's "no value" for numeric fields (e.g. ``ssdistnr`` when no known asteroid is near)."""

_JD_UNIX_EPOCH = 2440587.5
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# ZTF started in 2017; a JD outside 1970–2100 is a corrupt field, not a time.
_JD_MIN, _JD_MAX = 2440587.5, 2488069.5

# Candidate fields copied into Alert.quality: vetting (DESIGN 2.3) needs rb, drb,
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

HISTORY_CAP = 256
"""Most history times an Alert keeps: the newest. A ZTF packet lists 30 days, usually
a few dozen entries but over a thousand in high-cadence fields (1,382 detections in
one row of the Fink night of 2024-01-15); a Rubin packet repeats up to a year of
``prvDiaSources``. Coincidence windows are days long, so the newest 256 keep what
matching needs while an Alert stays bounded whatever a packet holds (the database
keeps fewer still: ``mma.db.schema.HISTORY_CAP``)."""

DETECTION_SNR = 5.0
SIGMAPSF_MAX = 2.5 / math.log(10) / DETECTION_SNR
"""Largest ``sigmapsf`` [mag] of a >= 5 sigma detection: 1.0857/5 = 0.2171 mag, since
sigma_mag = 2.5/ln(10) * sigma_flux/flux."""


def jd_to_datetime(jd: float) -> datetime:
    """Convert a Julian date on the UTC time scale to an aware UTC datetime.

    Exact arithmetic from the Unix epoch (JD 2440587.5), which, like ZTF's
    ``jd``, ignores leap seconds; resolution is the float's, about 40 µs.
    """
    return _UNIX_EPOCH + timedelta(days=jd - _JD_UNIX_EPOCH)


def isdiffpos_to_bool(value: Any) -> bool | None:
    """Normalise ZTF ``isdiffpos`` ('t'/'1' or 'f'/'0'; int in prototypes) to a bool.

    True means a positive difference (the source brightened against the template).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("t", "1", "true"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("f", "0", "false"):
        return False
    raise InvalidValue(f"candidate.isdiffpos {value!r} is not t/f/1/0")


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
    if not _JD_MIN <= jd <= _JD_MAX:
        raise InvalidValue(f"candidate.{key} = {jd!r} is not a Julian date in 1970–2100")
    return jd_to_datetime(jd)


def _real(value: Any) -> float | None:
    """A finite int or float as float; None for anything else (bool, str, NaN, inf...)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def history_jd(value: Any) -> datetime | None:
    """A history entry's ``jd`` [JD UTC] as an aware UTC datetime; None if not a valid time.

    Unlike the alert's own ``jd`` (which raises), a NaN, ill-typed or out-of-range
    (1970–2100) epoch in one history entry must not cost the alert: it is skipped.
    """
    jd = _real(value)
    if jd is None or not _JD_MIN <= jd <= _JD_MAX:
        return None
    return jd_to_datetime(jd)


def detection_time(entry: Any) -> datetime | None:
    """Time of a ZTF detection record if it is positive and at >= 5 sigma, else None.

    Parameters
    ----------
    entry : mapping
        A ZTF ``prv_candidate`` or ``candidate``-like record: ``jd`` [JD UTC],
        ``isdiffpos`` and ``sigmapsf`` [mag].

    Returns
    -------
    datetime or None
        Aware UTC time of ``jd`` when ``isdiffpos`` is true and
        0 < ``sigmapsf`` <= :data:`SIGMAPSF_MAX`; None otherwise, and for any
        ill-typed, NaN or out-of-range value: one bad history entry must not
        cost the alert, so it is skipped rather than raised.
    """
    if not isinstance(entry, Mapping):
        return None
    try:
        positive = isdiffpos_to_bool(entry.get("isdiffpos"))
    except InvalidValue:
        return None
    sigma = _real(entry.get("sigmapsf"))
    if positive is not True or sigma is None or not 0 < sigma <= SIGMAPSF_MAX:
        return None
    return history_jd(entry.get("jd"))


def prv_candidate_times(prv: Any, *, candid: Any = None) -> list[datetime] | None:
    """Times of the positive >= 5 sigma detections in a ZTF ``prv_candidates`` array.

    Parameters
    ----------
    prv : list or None
        The packet's ``prv_candidates``: detections (``candid`` set) and upper
        limits (``candid`` null), each with ``jd`` [JD UTC].
    candid : int, optional
        The alert's own ``candid``: an entry repeating it is the current
        detection, not history.

    Returns
    -------
    list of datetime or None
        Aware UTC times, unsorted (see :func:`finish_history`); None when *prv*
        is not an array at all (null or absent: the packet tells nothing).
        Upper limits, negative and < 5 sigma detections and entries with bad
        values are left out.
    """
    if not isinstance(prv, list | tuple):
        return None
    times = []
    for entry in prv:
        if not isinstance(entry, Mapping):
            continue
        own = entry.get("candid")
        # An upper limit has no candid; a string or float id is not a ZTF detection.
        if isinstance(own, bool) or not isinstance(own, int) or own == candid:
            continue
        when = detection_time(entry)
        if when is not None:
            times.append(when)
    return times


def light_curve_times(rows: Iterable[Mapping[str, Any]],
                      latest: Mapping[str, Any]) -> list[datetime] | None:
    """History from a broker's ZTF light curve: rows that are all detections.

    Parameters
    ----------
    rows : iterable of mapping
        The detections (``jd`` [JD UTC], ``isdiffpos``, ``sigmapsf``), the
        alert's own among them.
    latest : mapping
        The row that became the alert (left out, compared by identity).

    Returns
    -------
    list of datetime or None
        Times of the other rows passing :func:`detection_time`; None when there
        are other rows but none carries ``isdiffpos`` and ``sigmapsf`` (the
        light curve cannot tell a positive 5-sigma detection: not told). With no
        other row, an empty list: the light curve says there is no earlier one.
    """
    earlier = [r for r in rows if r is not latest]
    if earlier and not any("isdiffpos" in r and "sigmapsf" in r for r in earlier):
        return None
    return [t for r in earlier if (t := detection_time(r)) is not None]


def finish_history(times: Iterable[datetime] | None, before: datetime) -> tuple[datetime, ...]:
    """Make ``Alert.history`` from detection times: earlier only, sorted, unique, capped.

    Parameters
    ----------
    times : iterable of datetime, or None
        Aware UTC times of qualifying detections (None: no history told).
    before : datetime
        The alert's own detection time (UTC): that time and later ones are not
        *earlier* detections (the current one, or a packet listing later epochs).

    Returns
    -------
    tuple of datetime
        Ascending, without repeats (two CCD quadrants of one exposure give one
        time), the newest :data:`HISTORY_CAP`.
    """
    if times is None:
        return ()
    kept = sorted({t for t in times if t < before})
    return tuple(kept[-HISTORY_CAP:])


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
) -> Alert:
    """Build an Alert from a ZTF ``candidate`` record (any container: Avro, parquet, JSON).

    Parameters
    ----------
    candidate : mapping
        The ZTF candidate fields: ``ra``, ``dec`` [deg, ICRS J2000], ``jd`` [JD UTC,
        start of exposure], ``fid``, ``magpsf``/``sigmapsf`` [AB mag], vetting fields.
    object_id : str
        ZTF ``objectId`` (e.g. ``ZTF18abudxnw``).
    candid : int
        ZTF ``candid`` of this detection (positive); becomes ``alert_id``.
    survey, broker : str
        Stored as given (``broker`` is None for the ZTF stream itself).
    extra_quality : mapping, optional
        Broker fields added to ``quality`` (JSON-serialisable).
    distance_mpc : float, optional
        Host luminosity distance [Mpc] supplied by a broker.
    history : iterable of datetime, optional
        Aware UTC times of the object's positive >= 5 sigma detections that the
        container lists (e.g. :func:`prv_candidate_times`); those at or after
        ``jd`` are dropped, the rest sorted, deduplicated and capped
        (:func:`finish_history`). None: the container lists no history.
    history_source : str, optional
        Name of the array *history* came from (:data:`HISTORY_SOURCE`...);
        ignored (None) when *history* is None.

    Raises
    ------
    MissingField
        ``objectId``, ``candid``, ``ra``, ``dec`` or ``jd`` absent.
    InvalidValue
        Ill-typed or out-of-range values (NaN position, unknown ``fid``...).
    """
    if not isinstance(object_id, str) or not object_id.strip():
        raise MissingField(f"objectId is missing or not a string ({object_id!r})")
    if isinstance(candid, bool) or not isinstance(candid, int):
        raise MissingField(f"candid is missing or not an integer ({candid!r})")
    if candid <= 0:
        raise InvalidValue(f"candid {candid} is not a positive ZTF candidate id")
    inner = candidate.get("candid")
    if inner is not None and inner != candid:
        raise InvalidValue(f"candid {candid} disagrees with candidate.candid {inner!r}")
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
        history=finish_history(history, time),
        history_source=None if history is None else history_source,
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
    """Cut an Avro container of many ZTF packets into one-record containers."""
    return avro.split_container(raw, max_bytes=MAX_FILE_BYTES, max_records=MAX_FILE_RECORDS)


def parse(raw: bytes, *, topic: str) -> Alert:
    """Decode one ZTF Kafka message (a one-record Avro container) to an Alert.

    Raises
    ------
    HostileMessage, MalformedMessage
        Oversized, not Avro, corrupt or truncated, more than one record, or not
        a ``ztf.alert`` schema.
    MissingField, InvalidValue
        See :func:`alert_from_candidate`.
    """
    container = avro.read_container(raw, max_bytes=MAX_MESSAGE_BYTES, max_records=1000)
    name = container.schema.get("name")
    if name != SCHEMA_NAME:
        raise MalformedMessage(f"Avro schema {name!r} is not a ZTF alert ({SCHEMA_NAME})")
    if len(container.records) != 1:
        raise MalformedMessage(
            f"container holds {len(container.records)} records; a ZTF message holds one"
        )
    return alert_from_packet(container.records[0])
