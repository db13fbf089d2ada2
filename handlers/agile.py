"""AGILE notices as GCN Classic VOEvents (``gcn.classic.voevent.AGILE_*``).

AGILE ended operations on 2024-01-18; this handler serves
archival replays. GRB positions (SuperAGILE wakeup, ground, refined) are
circles; MCAL alerts (``Packet_Type`` 105, ivorn type ``A_Alert``) are
time-only triggers whose Position2D is a placeholder with radius 0.

Event id ``AGILE-<TrigID>``. MCAL alerts carry ``TrigID`` 0, so their id is
made from the trigger time instead: ``AGILE-MCAL-20190305T194033.67``.

Error semantics in :data:`ERRORS`: GCN does not document the containment of
AGILE radii; 0.9 (the GCN Classic convention for stat+sys error circles) is
assumed and marked as such in ``properties["containment_assumed"]``.
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

NAME = "agile"
KIND = "notice"
# None: AGILE was retired on 2024-01-18 (it re-entered weeks later); the module parses
# archival replays.
DEFAULT_TOPICS: tuple[str, ...] = ()

# AGILE launched on 2007-04-23.
FIRST_LIGHT = datetime(2007, 4, 23, tzinfo=UTC)

STREAM_PREFIX = "ivo://nasa.gsfc.gcn/AGILE#"

# Packet_Type number → pygcn name (used when the ivorn gives no packet type).
PACKET_TYPES: dict[int, str] = {
    100: "GRB_WAKEUP", 101: "GRB_GROUND", 102: "GRB_REFINED", 105: "MCAL_ALERT",
    108: "TRANS", 109: "GRB_POS_TEST",
}  # fmt: skip
NO_POSITION_TYPES = frozenset({105})  # MCAL: trigger time only
TEST_TYPES = frozenset({109})
IGNORED_TYPES: dict[int, str] = {107: "POINTDIR"}

# Packet_Type number → probability enclosed by Error2Radius (assumed, see module doc).
ERRORS: dict[int, float] = {100: 0.9, 101: 0.9, 102: 0.9, 108: 0.9, 109: 0.9}


def sniff(raw: bytes) -> bool:
    """True for a VOEvent whose ivorn is a GCN AGILE packet."""
    ivorn = sniff_ivorn(raw)
    return ivorn is not None and ivorn.startswith(STREAM_PREFIX)


def _mcal_id(time: datetime) -> str:
    centi = time.microsecond // 10_000
    return f"AGILE-MCAL-{time:%Y%m%dT%H%M%S}.{centi:02d}"


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one AGILE VOEvent to a Notice.

    Mapping: ``event_id`` ← ``AGILE-<TrigID>`` (time-based for MCAL alerts);
    ``notice_type`` ← packet type of the ivorn (``A_Alert``), else the pygcn
    name; ``event_time`` ← ISOTime; ``issued_time`` ← Who/Date; region ← circle
    (none for MCAL alerts).

    Raises
    ------
    Ignored
        A ``utility`` or pointing packet.
    HostileMessage, MalformedMessage
        Unsafe or broken XML.
    MissingField
        No Packet_Type, TrigID, ISOTime or Who/Date.
    InvalidValue
        Not an AGILE packet, an unknown packet type, or a bad value.
    """
    event = parse_voevent(raw)
    if not event.ivorn.startswith(STREAM_PREFIX):
        raise InvalidValue(f"{event.ivorn[:80]!r} is not an AGILE VOEvent")
    if event.role == "utility":
        raise Ignored(f"AGILE utility packet {event.ivorn[:80]}")
    number = event.param_int("Packet_Type")
    if number in IGNORED_TYPES:
        raise Ignored(f"AGILE {IGNORED_TYPES[number]} packet: no burst localisation")
    name = PACKET_TYPES.get(number)
    if name is None:
        raise InvalidValue(f"AGILE Packet_Type {number} is not a known AGILE notice")
    trigger = event.param_int("TrigID")
    time = event.isotime()
    event_id = f"AGILE-{trigger}" if trigger > 0 else _mcal_id(time)
    if trigger <= 0 and number not in NO_POSITION_TYPES:
        raise InvalidValue(f"AGILE {name} notice with TrigID {trigger}")
    props: dict[str, Any] = {"ivorn": event.ivorn, "trigger_id": trigger,
                             "packet_type_number": number, "packet_type_name": name}
    flags = []
    region = None
    if number not in NO_POSITION_TYPES:
        region = circle_region(event.position(), containment=ERRORS[number])
        props["containment_assumed"] = True
    if region is None:
        flags.append("no_position")
    return Notice(
        event_id=event_id,
        messenger="grb",
        instrument="AGILE",
        notice_type=event.packet_type or name,
        event_time=time,
        issued_time=event.issued_time(),
        region=region,
        test=event.role == "test" or number in TEST_TYPES,
        aliases=grb_aliases(event.why_names()),
        properties=props,
        flags=tuple(flags),
        event_class="grb",
    )
