"""INTEGRAL IBAS notices as GCN Classic VOEvents (``gcn.classic.voevent.INTEGRAL_*``).

IBAS (the INTEGRAL Burst Alert System, IBIS/ISGRI) sent a ``Wakeup_Pos`` within
seconds of a burst, then ``Refined_Pos`` and sometimes ``Offline_Pos``;
``Weak_Pos`` reports sub-threshold candidates. IBAS ended on 2025-03-04:
this handler serves archival replays.

Event id ``INTEGRAL-<trigger>``: the packet's ``TrigID`` carries the IBAS
trigger number in its low 16 bits and a revision counter above them (the
Refined_Pos of trigger 10472 has TrigID 76008 = 10472 + 65536), so the
trigger is ``TrigID & 0xFFFF``, which is also the number in the GCN ivorn.

Error semantics in :data:`ERRORS`: ``Error2Radius`` is a 90 %
radius (≤ 4′), no separate systematic.

Test traffic: role ``test``, ``Test_Notice`` true, and the LVK's replayed
mock-data-challenge packets (``ivo://lvk.internal/INTEGRAL#…``, flag ``mdc``)
are ``test=True``. SPI-ACS and pointing packets carry no position and raise
:class:`mma.errors.Ignored`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from mma.errors import Ignored, InvalidValue
from mma.formats.notice_fields import circle_region, grb_aliases
from mma.formats.voevent import parse_voevent, sniff_ivorn
from mma.models import Notice

__all__ = ["DEFAULT_TOPICS", "ERRORS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "integral"
KIND = "notice"
# None: INTEGRAL's burst alert system (IBAS) ended with the mission's science operations on
# 2025-03-04; the module parses archival replays.
DEFAULT_TOPICS: tuple[str, ...] = ()

# INTEGRAL launched on 2002-10-17.
FIRST_LIGHT = datetime(2002, 10, 17, tzinfo=UTC)

STREAM_PREFIXES = ("ivo://nasa.gsfc.gcn/INTEGRAL#", "ivo://lvk.internal/INTEGRAL#")
MDC_PREFIX = "ivo://lvk.internal/"

# Packet_Type number → notice type (the GCN ivorn's packet type for the same packets).
PACKET_TYPES: dict[int, str] = {
    53: "Wakeup_Pos", 54: "Refined_Pos", 55: "Offline_Pos", 56: "Weak_Pos",
}  # fmt: skip
NO_POSITION_TYPES: dict[int, str] = {51: "PointDir", 52: "SPIACS"}

# Notice type → probability enclosed by Error2Radius (statistical + systematic).
ERRORS: dict[str, float] = {
    "Wakeup_Pos": 0.9, "Refined_Pos": 0.9, "Offline_Pos": 0.9, "Weak_Pos": 0.9,
}  # fmt: skip


def sniff(raw: bytes) -> bool:
    """True for a VOEvent whose ivorn is an INTEGRAL packet (GCN or LVK MDC replay)."""
    ivorn = sniff_ivorn(raw)
    return ivorn is not None and ivorn.startswith(STREAM_PREFIXES)


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one INTEGRAL IBAS VOEvent to a Notice.

    Mapping: ``event_id`` ← ``INTEGRAL-<TrigID & 0xFFFF>``; ``notice_type`` ←
    ``Packet_Type`` (53 Wakeup_Pos, 54 Refined_Pos, 55 Offline_Pos, 56
    Weak_Pos); ``event_time`` ← ISOTime; ``issued_time`` ← Who/Date; region ←
    90 % circle.

    Raises
    ------
    Ignored
        A ``utility`` packet, or SPI-ACS/pointing packets (no position).
    HostileMessage, MalformedMessage
        Unsafe or broken XML.
    MissingField
        No Packet_Type, TrigID, ISOTime or Who/Date.
    InvalidValue
        Not an INTEGRAL packet, an unknown packet type, or a bad value.
    """
    event = parse_voevent(raw)
    if not event.ivorn.startswith(STREAM_PREFIXES):
        raise InvalidValue(f"{event.ivorn[:80]!r} is not an INTEGRAL VOEvent")
    if event.role == "utility":
        raise Ignored(f"INTEGRAL utility packet {event.ivorn[:80]}")
    number = event.param_int("Packet_Type")
    if number in NO_POSITION_TYPES:
        raise Ignored(f"INTEGRAL {NO_POSITION_TYPES[number]} packet: no localisation")
    notice_type = PACKET_TYPES.get(number)
    if notice_type is None:
        raise InvalidValue(f"INTEGRAL Packet_Type {number} is not an IBAS position")
    if event.packet_type is not None and event.packet_type != notice_type:
        raise InvalidValue(
            f"ivorn says {event.packet_type} but Packet_Type {number} is {notice_type}"
        )
    trig = event.param_int("TrigID")
    if trig < 0:
        raise InvalidValue(f"INTEGRAL TrigID {trig} is negative")
    trigger = trig & 0xFFFF
    props: dict[str, Any] = {"ivorn": event.ivorn, "trigger_id": trigger,
                             "trigger_revision": trig >> 16, "packet_type_number": number}
    for name, key in (("Inten_Sigma", "signif_sigma"), ("Time_Error", "time_error_s"),
                      ("Time_Scale", "time_scale_s")):  # fmt: skip
        if name in event.params:
            props[key] = event.param_float(name)
    flags = []
    mdc = event.ivorn.startswith(MDC_PREFIX)
    if mdc:
        flags.append("mdc")
    if event.param_bool("Def_NOT_a_GRB"):
        flags.append("not_grb")
    if notice_type == "Weak_Pos":
        flags.append("weak")
    region = circle_region(event.position(), containment=ERRORS[notice_type])
    if region is None:
        flags.append("no_position")
    test = event.role == "test" or mdc or bool(event.param_bool("Test_Notice"))
    return Notice(
        event_id=f"INTEGRAL-{trigger}",
        messenger="grb",
        instrument="INTEGRAL-IBAS",
        notice_type=notice_type,
        event_time=event.isotime(),
        issued_time=event.issued_time(),
        region=region,
        test=test,
        aliases=grb_aliases(event.why_names()),
        properties=props,
        flags=tuple(flags),
        event_class="grb",
    )
