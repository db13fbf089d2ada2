"""InterPlanetary Network GRB notices (``gcn.classic.voevent.IPN_*``) → Notice.

The IPN times a gamma-ray burst on spacecraft far apart (Konus-Wind, INTEGRAL
SPI-ACS, Mars Odyssey, Fermi...) and triangulates it: each pair of arrival
times gives an annulus on the sky, and two or more annuli intersect in an
error box. GCN Classic has three packet types, ivorn ``ivo://nasa.gsfc.gcn/IPN#…``:

``IPN_RAW`` (31)
    Every real one (430 packets, 2014-2023) is a timestamp only: ``Times_Only``
    set, ``Coords_Type`` 0, position and annulus all -1. It becomes a
    **time-only notice** (region None, flag ``time_only``): the burst time, with
    the spacecraft that saw it (``contributors``), can still pair on time with a
    GW or neutrino event. Not subscribed by default (no localisation).
``IPN_SEG`` (32), or any packet stating an annulus
    An annulus (centre, radius, width) or a segment of one is neither a circle,
    an ellipse nor a box, and approximating it by one would put probability
    where the IPN excludes the burst. It becomes a time-only notice with the
    flag ``annulus_not_representable``; the annulus is kept in ``properties``
    [deg]. Not subscribed by default.
``IPN_POS`` (39)
    The error box of intersecting annuli, given as ``Position2D`` and
    ``Error2Radius``: a circle. Its containment is not stated, so 0.9 is
    assumed and flagged ``containment_default_0.9``. No real IPN_POS packet was
    found in the 2014-2023 VOEvent archives; this branch is tested on a packet
    derived from a real IPN_RAW one.

Event id ``IPN-<TrigID>`` when a TrigID is given (>= 0), else (TrigID -1, as in
every RAW packet) ``IPN-<burst time, YYYYmmddTHHMMSS.ss>``, so the packets of
one burst share it. Messenger and event class ``grb``; role ``test`` → test.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from mma.errors import InvalidValue
from mma.formats import notice_fields, voevent
from mma.models import Notice, RegionSpec

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "ipn"
KIND = "notice"
# IPN_RAW and IPN_SEG carry no localisation mma can use (timestamps, annuli):
# claim them in the configuration to pair their bursts on time.
DEFAULT_TOPICS: tuple[str, ...] = ("gcn.classic.voevent.IPN_POS",)

# The third IPN began with Ulysses, launched on 1990-10-06.
FIRST_LIGHT = datetime(1990, 10, 6, tzinfo=UTC)

STREAM_PREFIX = "ivo://nasa.gsfc.gcn/IPN#"
PACKET_TYPES = {31: "IPN_RAW", 32: "IPN_SEG", 39: "IPN_POS"}
_ANNULUS = ("IPN_RA_Center", "IPN_Dec_Center", "IPN_Radius", "IPN_Width")
_CONTRIBUTED = "_contributed"


def sniff(raw: bytes) -> bool:
    """True for a GCN IPN VOEvent (by ivorn)."""
    ivorn = voevent.sniff_ivorn(raw)
    return ivorn is not None and ivorn.startswith(STREAM_PREFIX)


def _annulus(event: voevent.VOEvent) -> dict[str, float] | None:
    """The stated annulus [deg], or None when its values are GCN's -1 placeholders."""
    if not all(event.params.get(name) for name in _ANNULUS):
        return None
    values = {name: event.param_float(name) for name in _ANNULUS}
    if values["IPN_Radius"] <= 0.0 or values["IPN_Width"] <= 0.0:
        return None
    if not (0.0 <= values["IPN_RA_Center"] < 360.0 and -90.0 <= values["IPN_Dec_Center"] <= 90.0
            and values["IPN_Radius"] <= 180.0):
        raise InvalidValue(f"IPN annulus {values} is outside the sky")
    return {"ra_center_deg": values["IPN_RA_Center"], "dec_center_deg": values["IPN_Dec_Center"],
            "radius_deg": values["IPN_Radius"], "width_deg": values["IPN_Width"]}  # fmt: skip


def _event_id(event: voevent.VOEvent, time: datetime) -> str:
    trigger = event.param_int("TrigID") if event.params.get("TrigID") else -1
    if trigger >= 0:
        return f"IPN-{trigger}"
    return f"IPN-{time:%Y%m%dT%H%M%S}.{time.microsecond // 10_000:02d}"


def _contributors(event: voevent.VOEvent) -> list[str]:
    """Spacecraft instruments whose ``<name>_contributed`` bit is set (``KONUS-Wind``...)."""
    return [name.removesuffix(_CONTRIBUTED).replace("_", "-")
            for name in event.groups.get("Misc", {})
            if name.endswith(_CONTRIBUTED) and event.param_bool(name)]  # fmt: skip


def _region(event: voevent.VOEvent, notice_type: str, props: dict[str, Any],
            flags: list[str]) -> RegionSpec | None:
    annulus = _annulus(event)
    if annulus is not None or notice_type == "IPN_SEG":
        props["annulus"] = annulus
        flags.extend(("annulus_not_representable", "time_only"))
        return None
    if notice_type != "IPN_POS" or event.param_bool("Times_Only"):
        flags.append("time_only")
        return None
    region = notice_fields.circle_region(event.position(), containment=0.9)
    flags.append("containment_default_0.9" if region is not None else "no_position")
    return region


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one IPN VOEvent to a Notice (see the module docstring for each type).

    Raises
    ------
    HostileMessage, MalformedMessage
        Unsafe or broken XML.
    MissingField
        No Packet_Type, ISOTime or Who/Date.
    InvalidValue
        Not an IPN packet, an unknown Packet_Type, or a bad value (TrigID,
        annulus, position, radius).
    """
    event = voevent.parse_voevent(raw)
    if not event.ivorn.startswith(STREAM_PREFIX):
        raise InvalidValue(f"{event.ivorn[:80]!r} is not an IPN VOEvent")
    packet = event.param_int("Packet_Type")
    notice_type = PACKET_TYPES.get(packet)
    if notice_type is None:
        raise InvalidValue(f"IPN Packet_Type {packet} is not one of {sorted(PACKET_TYPES)}")
    time = event.isotime()
    props: dict[str, Any] = {"ivorn": event.ivorn, "contributors": _contributors(event)}
    if event.params.get("Pkt_Ser_Num"):
        props["packet_serial"] = event.param_int("Pkt_Ser_Num")
    flags: list[str] = []
    region = _region(event, notice_type, props, flags)
    return Notice(
        event_id=_event_id(event, time),
        messenger="grb",
        instrument="IPN",
        notice_type=notice_type,
        event_time=time,
        issued_time=event.issued_time(),
        region=region,
        test=event.role == "test",
        properties=props,
        flags=tuple(flags),
        event_class="grb",
    )
