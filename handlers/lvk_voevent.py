"""Legacy LIGO/Virgo/KAGRA VOEvents (``gcn.classic.voevent.LVC_*``), for archival replays.

LVK stopped sending VOEvents on 2026-07-08; ``igwn.gwalert`` JSON
(:mod:`mma.handlers.lvk`) is the live channel. The VOEvents of O2–O4 still
matter for replays, GW170817 first of all.

Mapping kept compatible with the JSON handler so both channels describe one
event alike: ``event_id`` ← ``GraceID`` (superevent ``S190425z``, or an O2 event
``G298048``); ``notice_type`` ← ``AlertType`` upper-cased (``INITIAL``...);
``event_time`` ← ISOTime (merger time); ``issued_time`` ← Who/Date;
``properties["far"]`` in Hz.

The sky map is never inline: the region is ``RegionSpec(kind="skymap",
skymap_url=…)`` from ``skymap_fits`` (O3/O4) or, for O2 packets,
``skymap_fits_basic``/``_shib``/``_x509``. A value that is not an http(s) URL
(fixtures carry relative paths) gives no region and the flag
``no_skymap_url``.

Retractions (``AlertType`` Retraction or ``Retraction`` true) have
``retraction=True`` and no region. Test traffic is ``test=True``: role
``test``, mock ``M…`` ids (flag ``mock``), ``T…`` playground ids, and hardware
injections (flag ``hardware_injection``).

Event class as in the JSON handler: ``gw.burst`` when the ``Group`` Param is
``Burst`` (any case), else ``gw.cbc``; a retraction without ``Group`` has class
None (not stated).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from mma.errors import Ignored, InvalidValue, MissingField
from mma.formats.notice_fields import http_url
from mma.formats.voevent import VOEvent, parse_voevent, sniff_ivorn
from mma.handlers.lvk import gw_event_class
from mma.models import Notice, RegionSpec

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "lvk_voevent"
KIND = "notice"
# None: GCN retired the classic LVC_* notices on 2026-07-08 (igwn.gwalert, handled by
# mma.handlers.lvk, replaces them); the module parses archival replays.
DEFAULT_TOPICS: tuple[str, ...] = ()

# O1, the first observing run (alerts to partners as VOEvents), began 2015-09-12.
FIRST_LIGHT = datetime(2015, 9, 12, tzinfo=UTC)

STREAM_PREFIX = "ivo://gwnet/"
ALERT_TYPES = {
    "preliminary": "PRELIMINARY", "initial": "INITIAL", "update": "UPDATE",
    "retraction": "RETRACTION", "earlywarning": "EARLY_WARNING",
    "early_warning": "EARLY_WARNING",
}  # fmt: skip
# G (O2 event), S (superevent), MS (mock), TS (playground), GW (confirmed name).
_GRACE_ID = re.compile(r"[A-Z]{1,3}\d{5,7}[a-z]{0,4}")
_SKYMAP_PARAMS = ("skymap_fits", "skymap_fits_basic", "skymap_fits_shib", "skymap_fits_x509")
_CLASSES = ("BNS", "NSBH", "BBH", "MassGap", "Terrestrial")
_SOURCE_PROPERTIES = ("HasNS", "HasRemnant", "HasMassGap", "ProbHasNS", "ProbHasRemnant")


def sniff(raw: bytes) -> bool:
    """True for a VOEvent whose ivorn is an LVC/LVK GCN packet (``ivo://gwnet/…``)."""
    ivorn = sniff_ivorn(raw)
    return ivorn is not None and ivorn.startswith(STREAM_PREFIX)


def _floats(event: VOEvent, names: tuple[str, ...]) -> dict[str, float]:
    return {name: event.param_float(name) for name in names if event.params.get(name)}


def _properties(event: VOEvent, alert_type: str) -> dict[str, Any]:
    props: dict[str, Any] = {"ivorn": event.ivorn, "alert_type": alert_type}
    if event.params.get("FAR"):
        far = event.param_float("FAR")
        if far < 0:
            raise InvalidValue(f"FAR {far!r} Hz is negative")
        props["far"] = far
    for name in ("Group", "Pipeline", "Search", "EventPage"):
        if event.params.get(name):
            props[name.lower()] = event.params[name]
    if event.params.get("Instruments"):
        props["instruments"] = event.params["Instruments"].split(",")
    classification = _floats(event, _CLASSES)
    if classification:
        props["classification"] = classification
    source = _floats(event, _SOURCE_PROPERTIES)
    if source:
        props["properties"] = source
    return props


def _region(event: VOEvent, props: dict[str, Any], flags: list[str]) -> RegionSpec | None:
    stated = [event.params[n] for n in _SKYMAP_PARAMS if event.params.get(n)]
    for value in stated:
        url = http_url(value)
        if url is not None:
            props["skymap_url"] = url
            return RegionSpec(kind="skymap", skymap_url=url)
    if stated:
        props["skymap_fits"] = stated[0][:200]
    flags.append("no_skymap_url")
    return None


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one LVC/LVK VOEvent to a Notice.

    Raises
    ------
    Ignored
        A ``utility`` packet, or an AlertType of no interest (``Counterpart``).
    HostileMessage, MalformedMessage
        Unsafe or broken XML.
    MissingField
        No GraceID, AlertType, Who/Date, or (except in a retraction) ISOTime.
    InvalidValue
        Not an LVK packet, a malformed GraceID, a negative or non-numeric FAR.
    """
    event = parse_voevent(raw)
    if not event.ivorn.startswith(STREAM_PREFIX):
        raise InvalidValue(f"{event.ivorn[:80]!r} is not an LVK VOEvent")
    if event.role == "utility":
        raise Ignored(f"LVK utility packet {event.ivorn[:80]}")
    grace_id = event.param("GraceID")
    if not _GRACE_ID.fullmatch(grace_id):
        raise InvalidValue(f"GraceID {grace_id[:40]!r} is not an LVK event id")
    stated_type = event.param("AlertType")
    alert_type = ALERT_TYPES.get(stated_type.lower())
    if alert_type is None:
        raise Ignored(f"LVK {stated_type[:40]} VOEvent for {grace_id}: not a GW alert")
    retraction = alert_type == "RETRACTION" or bool(event.param_bool("Retraction"))
    issued = event.issued_time()
    props = _properties(event, alert_type)
    flags: list[str] = []
    try:
        event_time = event.isotime()
    except MissingField:
        if not retraction:
            raise
        event_time = issued  # as the JSON handler does: not a revised trigger time
        flags.append("no_event_time")
    region = None if retraction else _region(event, props, flags)
    injection = event.params.get("HardwareInj", "0") not in ("0", "false", "")
    if injection:
        flags.append("hardware_injection")
    if grace_id.startswith("M"):
        flags.append("mock")
    elif grace_id.startswith("T"):
        flags.append("test_event")
    if event.params.get("Significant") == "0":
        flags.append("low_significance")
    test = event.role == "test" or injection or grace_id.startswith(("M", "T"))
    group = event.params.get("Group")
    klass = None if retraction and not group else gw_event_class(group)
    return Notice(
        event_id=grace_id,
        messenger="gw",
        instrument="LVK",
        notice_type="RETRACTION" if retraction else alert_type,
        event_time=event_time,
        issued_time=issued,
        region=region,
        retraction=retraction,
        test=test,
        properties=props,
        flags=tuple(flags),
        event_class=klass,
    )
