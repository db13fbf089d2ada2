"""HAWC burst monitor (``gcn.classic.voevent.HAWC_BURST_MONITOR``) → Notice.

HAWC, the water-Cherenkov gamma-ray array at Sierra Negra (100 GeV-100 TeV,
two thirds of the sky each day), searches its own data for GRB-like excesses
in sliding time windows (``deltaT`` 10 s or 100 s in the packets); AMON relays
them to GCN as notice type 171, minutes after the burst, a few a year.

Mapping (read from the packets, ivorn ``ivo://nasa.gsfc.gcn/AMON#HAWC_BURST_MONITOR_Event…``):

``event_id``
    ``HAWC-<run_id>_<event_id>`` (integers without padding); ``rev`` is kept.
time
    ``ISOTime``, the burst time; the search window ``deltaT`` [s] is kept as
    ``time_window_s``.
region
    A circle with radius ``src_err_90`` (stated in arcmin, statistical only,
    90 % containment; flag ``statistical_error_only``); ``Error2Radius`` says
    the same in degrees and is used only when ``src_err_90`` is absent.
``far``
    ``FAR`` converted to Hz with its Param unit (``yr^-1``); ``Pvalue`` kept.
flags
    ``Retraction`` → retraction; ``Test`` or role ``test`` → test;
    ``Gnd_Generated`` → ``ground_generated`` (found on the ground, not on line).
    The ``SkyMap`` Param has always been the placeholder
    ``http://not.yet.available``: a map URL is used only if it is a real one.

Messenger and event class ``grb``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from mma.errors import InvalidValue
from mma.formats import notice_fields, voevent
from mma.handlers.amon import angle_deg, far_hz
from mma.models import Notice, RegionSpec

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "hawc"
KIND = "notice"
DEFAULT_TOPICS: tuple[str, ...] = ("gcn.classic.voevent.HAWC_BURST_MONITOR",)

# HAWC was inaugurated in March 2015 (GCN's HAWC mission page); the burst
# monitor runs on its full-array data from then on.
FIRST_LIGHT = datetime(2015, 3, 1, tzinfo=UTC)

STREAM = "ivo://nasa.gsfc.gcn/AMON#HAWC_BURST_MONITOR_Event"
PACKET_TYPE = 171
_PLACEHOLDER_URL = "http://not.yet.available"


def sniff(raw: bytes) -> bool:
    """True for a HAWC burst-monitor VOEvent (by ivorn)."""
    return voevent.sniff_stream(raw) == STREAM


def _region(event: voevent.VOEvent, flags: list[str]) -> RegionSpec | None:
    position = event.position()
    radius_90 = angle_deg(event, "src_err_90")
    if position is not None and radius_90 is not None:
        position = position._replace(error_radius_deg=radius_90)
    url = event.params.get("SkyMap")
    skymap_url = notice_fields.http_url(url) if url != _PLACEHOLDER_URL else None
    region = notice_fields.circle_region(position, containment=0.9, skymap_url=skymap_url)
    if region is None:
        flags.append("no_position")
    return region


def _properties(event: voevent.VOEvent, run: int, number: int) -> dict[str, Any]:
    props: dict[str, Any] = {"ivorn": event.ivorn, "run_id": run, "event_id": number,
                             "far": far_hz(event)}  # fmt: skip
    for name, key in (("rev", "revision"), ("stream", "stream"),
                      ("Pkt_Ser_Num", "packet_serial")):
        if event.params.get(name):
            props[key] = event.param_int(name)
    for name, key in (("FAR", "far_stated"), ("Pvalue", "p_value"),
                      ("deltaT", "time_window_s")):
        if event.params.get(name):
            props[key] = event.param_float(name)
    p_value = props.get("p_value")
    if p_value is not None and not 0.0 <= p_value <= 1.0:
        raise InvalidValue(f"VOEvent Param Pvalue {p_value!r} is outside [0, 1]")
    return props


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one HAWC burst-monitor VOEvent to a Notice (see the module docstring).

    Messenger ``grb``, instrument ``HAWC``, event class ``grb``; the region is a
    90 % circle [deg] (FK5 J2000).

    Raises
    ------
    HostileMessage, MalformedMessage
        Unsafe or broken XML.
    MissingField
        No run_id, event_id, ISOTime or Who/Date.
    InvalidValue
        Not a HAWC burst-monitor packet, a Packet_Type other than 171, or a bad
        value (id, position, radius, FAR, p-value, unit).
    """
    event = voevent.parse_voevent(raw)
    if event.stream != STREAM:
        raise InvalidValue(f"{event.ivorn[:80]!r} is not a HAWC burst-monitor VOEvent")
    if event.params.get("Packet_Type") not in (None, str(PACKET_TYPE)):
        raise InvalidValue(f"Packet_Type {event.params['Packet_Type'][:10]!r} is not "
                           f"HAWC_BURST_MONITOR ({PACKET_TYPE})")
    run, number = event.param_int("run_id"), event.param_int("event_id")
    if run < 0 or number < 0:
        raise InvalidValue(f"HAWC run_id {run} / event_id {number} must not be negative")
    flags = ["statistical_error_only"]
    if event.param_bool("Gnd_Generated"):
        flags.append("ground_generated")
    retraction = bool(event.param_bool("Retraction"))
    props = _properties(event, run, number)
    region = None if retraction else _region(event, flags)
    return Notice(
        event_id=f"HAWC-{run}_{number}",
        messenger="grb",
        instrument="HAWC",
        notice_type="HAWC_BURST_MONITOR",
        event_time=event.isotime(),
        issued_time=event.issued_time(),
        region=region,
        retraction=retraction,
        test=event.role == "test" or bool(event.param_bool("Test")),
        properties=props,
        flags=tuple(flags),
        event_class="grb",
    )
