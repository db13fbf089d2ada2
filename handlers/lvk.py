"""LVK gravitational-wave alerts (GCN Kafka ``igwn.gwalert``, JSON) → :class:`~mma.models.Notice`.

Since 2026-07 this topic is the only live LVK channel (the classic VOEvents are
retired). One message per superevent revision: ``EARLY_WARNING``,
``PRELIMINARY``, ``INITIAL``, ``UPDATE`` or ``RETRACTION``. The sky map travels
inline as base64 multi-order FITS in ``event.skymap`` (PROBDENSITY [sr⁻¹] plus
the distance layers); retractions carry ``event: null``.

Mock events from the LVK's continuous Mock Data Challenge use ``M…`` superevent
ids (``MS181101ab``) and playground/test events ``T…`` ids; both are marked
``test=True`` so they never reach production output.

Event class (it sets the time window, see ``docs/windows.md``): ``gw.burst`` when
``event.group`` is ``Burst`` (any case: a mock sample spells it ``burst``), else
``gw.cbc``. A retraction carries no event, hence no group: its class is None
(not stated), so it never relabels the event it withdraws.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mma.errors import BadSkymap, InvalidValue, MissingField
from mma.formats.gcn_envelope import finite, utc_time
from mma.formats.gcn_json import b64decode_capped, load_json
from mma.models import Notice, RegionSpec

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "lvk"
KIND = "notice"
DEFAULT_TOPICS: tuple[str, ...] = ("igwn.gwalert",)

# GCN Kafka refuses messages above ~4 MiB; a Burst map with an external
# combined map is ~2 MB. Twice the broker limit leaves room for files on disk.
# O1, the first observing run, began on 2015-09-12 (GW150914 came two days later).
FIRST_LIGHT = datetime(2015, 9, 12, tzinfo=UTC)

MAX_MESSAGE_BYTES = 8 * 2**20
MAX_SKYMAP_BYTES = 6 * 2**20

ALERT_TYPES = frozenset({"EARLY_WARNING", "PRELIMINARY", "INITIAL", "UPDATE", "RETRACTION"})
# S (production), MS (mock data challenge), TS (playground), GW (confirmed name).
_SUPEREVENT_ID = re.compile(r"[A-Z]{1,3}\d{6}[a-z]{1,4}")
_SUPEREVENT_KEY = re.compile(rb'"superevent_id"\s*:')
_FITS_START = (b"SIMPLE  =", b"\x1f\x8b")  # plain FITS or gzip-compressed FITS

# event fields kept verbatim in Notice.properties (FAR in Hz; probabilities 0–1).
_EVENT_PROPERTIES = (
    "far", "significant", "group", "pipeline", "search", "instruments", "classification",
    "properties", "duration", "central_frequency",
)  # fmt: skip


def _utc(value: Any, where: str) -> datetime:
    """Parse an ISO 8601 time that states its offset; return it in UTC."""
    when, assumed_utc = utc_time(value, where)
    if assumed_utc:
        raise InvalidValue(f"{where} {value[:40]!r} has no timezone; expected UTC (…Z)")
    return when


def _typed(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    """``obj[key]`` if it is absent, null or of type *kind*; otherwise InvalidValue."""
    value = obj.get(key)
    if value is not None and not isinstance(value, kind):
        raise InvalidValue(f"{where}.{key} is {type(value).__name__}, expected {kind.__name__}")
    return value


def _far(event: Mapping[str, Any]) -> float:
    far = event.get("far")
    if far is None:
        raise MissingField("event.far is missing")
    value = finite(far, "event.far")  # also refuses integers too long for a float
    if value < 0:
        raise InvalidValue(f"event.far {far!r} Hz is not a finite non-negative rate")
    return value


def _skymap(event: Mapping[str, Any], key: str = "skymap",
            where: str = "event") -> RegionSpec | None:
    encoded = event.get(key)
    if encoded is None:
        return None
    if not isinstance(encoded, str):
        raise InvalidValue(f"{where}.{key} is {type(encoded).__name__}, expected base64 text")
    data = b64decode_capped(encoded, max_bytes=MAX_SKYMAP_BYTES, what=f"{where}.{key}")
    if not data.startswith(_FITS_START):
        raise BadSkymap(f"{where}.{key} does not decode to a FITS file")
    return RegionSpec(kind="skymap", skymap=data)


# How RAVEN's external_coinc names the other event's observatory, to mma's event ids
# (handlers fermi_gbm and swift): "<prefix><gcn_notice_id>".
_EXTERNAL_NAMES = {"fermi": "FermiGBM-", "swift": "Swift-"}


def _external_coinc(coinc: Mapping[str, Any] | None, retraction: bool,
                    props: dict[str, Any], flags: list[str],
                    ) -> tuple[RegionSpec | None, tuple[str, ...]]:
    """RAVEN's ``external_coinc``: its facts into *props* (without the inline map) and
    *flags*; LVK's combined sky map and mma's name of the external trigger."""
    if coinc is None:
        return None, ()
    props["external_coinc"] = {k: v for k, v in coinc.items() if k != "combined_skymap"}
    props["has_combined_skymap"] = coinc.get("combined_skymap") is not None
    flags.append("external_coinc")
    names = _external_names(coinc)
    if not names or retraction:
        return None, names
    return _skymap(coinc, "combined_skymap", "external_coinc"), names


def _external_names(coinc: Mapping[str, Any]) -> tuple[str, ...]:
    """mma's name of the external event of a RAVEN coincidence, when it can tell."""
    trigger = coinc.get("gcn_notice_id")
    observatory = coinc.get("observatory")
    if isinstance(trigger, bool) or not isinstance(trigger, int) or trigger <= 0:
        return ()
    prefix = _EXTERNAL_NAMES.get(str(observatory).casefold())
    return () if prefix is None else (f"{prefix}{trigger}",)


def gw_event_class(group: Any) -> str:
    """``gw.burst`` for the LVK Burst group (case-insensitive), else ``gw.cbc``."""
    return "gw.burst" if isinstance(group, str) and group.casefold() == "burst" else "gw.cbc"


def _probabilities(values: Mapping[str, Any] | None, where: str) -> None:
    """Check a class → probability object (``classification``, ``properties``: HasNS...).

    Its numbers reach the priors, the channels' rules and the messages, which
    expect probabilities: anything else is refused here, naming the entry.
    """
    for name, value in (values or {}).items():
        if not 0.0 <= finite(value, f"{where}.{name}") <= 1.0:
            raise InvalidValue(f"{where}.{name} {value!r} is not a probability in [0, 1]")


def _event_properties(event: Mapping[str, Any]) -> dict[str, Any]:
    props = {key: event.get(key) for key in _EVENT_PROPERTIES}
    props["far"] = _far(event)
    _typed(event, "significant", bool, "event")
    for key in ("group", "pipeline", "search"):
        _typed(event, key, str, "event")
    for key in ("classification", "properties"):
        _probabilities(_typed(event, key, dict, "event"), f"event.{key}")
    for key in ("duration", "central_frequency"):  # Burst: [s] and [Hz]
        if event.get(key) is not None and finite(event[key], f"event.{key}") < 0:
            raise InvalidValue(f"event.{key} {event[key]!r} is negative")
    instruments = _typed(event, "instruments", list, "event")
    if instruments is not None and not all(isinstance(i, str) for i in instruments):
        raise InvalidValue("event.instruments must be a list of detector names")
    return props


def sniff(raw: bytes) -> bool:
    """True if *raw* looks like an igwn.gwalert JSON object (it has a ``superevent_id`` key).

    A byte search, not a decode: a quoted key followed by ``:`` cannot occur
    inside a JSON string value (its quotes would be escaped), and bytes.find is
    memchr-fast even on 2 MB messages. ``parse`` does the real validation.
    """
    if raw[:64].lstrip(b"\xef\xbb\xbf \t\r\n")[:1] != b"{":  # slice first: no copy of big files
        return False
    return _SUPEREVENT_KEY.search(raw) is not None


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one igwn.gwalert JSON message to a Notice.

    Mapping: ``event_id`` ← ``superevent_id``; ``notice_type`` ← ``alert_type``;
    ``event_time`` ← ``event.time``; ``issued_time`` ← ``time_created``; region
    ← ``event.skymap`` (decoded FITS bytes, multi-order, not flattened);
    ``event_class`` ← ``event.group`` (see :func:`gw_event_class`; None in a
    retraction); ``properties`` ← FAR [Hz], significance, group/pipeline/search,
    detectors, classification, source properties (HasNS...), URLs, ``alert_type``
    and the external coincidence (without its inline combined map).

    A retraction has no event, hence no event time: ``event_time`` is then set to
    ``issued_time`` and the flag ``no_event_time`` says so; consumers must not
    treat it as a revised trigger time.

    Raises
    ------
    HostileMessage
        Message or sky map over its size cap.
    MalformedMessage
        Not strict JSON (bad UTF-8, NaN, duplicate keys...) or not an object.
    MissingField
        ``superevent_id``, ``alert_type``, ``time_created``, or (except in a
        retraction) ``event``, ``event.time``, ``event.far``.
    InvalidValue
        Unknown ``alert_type``, malformed id, ill-typed field, time without a
        timezone or beyond year 9999 in UTC, negative or non-finite FAR, a
        ``classification`` or ``properties`` entry that is not a probability.
    BadSkymap
        ``event.skymap`` is base64 but not FITS.
    """
    msg = load_json(raw, max_bytes=MAX_MESSAGE_BYTES)
    superevent_id = msg.get("superevent_id")
    if superevent_id is None:
        raise MissingField("superevent_id is missing")
    if not isinstance(superevent_id, str) or not _SUPEREVENT_ID.fullmatch(superevent_id):
        raise InvalidValue(f"superevent_id {str(superevent_id)[:40]!r} is not an LVK id")
    alert_type = msg.get("alert_type")
    if alert_type is None:
        raise MissingField("alert_type is missing")
    if alert_type not in ALERT_TYPES:
        raise InvalidValue(
            f"alert_type {str(alert_type)[:40]!r} is not one of {sorted(ALERT_TYPES)}"
        )
    issued = _utc(msg.get("time_created"), "time_created")
    urls = _typed(msg, "urls", dict, "message")
    event = _typed(msg, "event", dict, "message")
    retraction = alert_type == "RETRACTION"
    flags: list[str] = []
    props: dict[str, Any] = {"alert_type": alert_type, "urls": urls}
    region = None
    klass: str | None = None
    if event is not None:
        event_time = _utc(event.get("time"), "event.time")
        props.update(_event_properties(event))
        region = _skymap(event)
        klass = gw_event_class(props["group"])
    elif retraction:
        event_time = issued
        flags.append("no_event_time")
    else:
        raise MissingField(f"event is missing from a {alert_type} alert")
    coinc = _typed(msg, "external_coinc", dict, "message")
    joint_region, joint_with = _external_coinc(coinc, retraction, props, flags)
    if alert_type == "EARLY_WARNING":
        flags.append("early_warning")
    if props.get("significant") is False:
        flags.append("low_significance")
    if superevent_id.startswith("M"):
        flags.append("mock")
    elif superevent_id.startswith("T"):
        flags.append("test_event")
    test = superevent_id.startswith(("M", "T")) or props.get("search") == "MDC"
    return Notice(
        event_id=superevent_id,
        messenger="gw",
        instrument="LVK",
        notice_type=alert_type,
        event_time=event_time,
        issued_time=issued,
        region=region,
        retraction=retraction,
        test=test,
        properties=props,
        flags=tuple(flags),
        event_class=klass,
        joint_region=joint_region,
        joint_with=joint_with,
    )
