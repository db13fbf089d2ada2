"""GECAM notices as GCN Classic VOEvents (``gcn.classic.voevent.GECAM_FLT`` / ``_GND``).

GECAM-B (GECAM-A has not observed) sends a flight localisation
(``Packet_Type`` 188, ivorn ``…/GECAM#FLT_Event_…``) and a ground one (189,
``…#GND_Event_…``) of each trigger, minutes apart; both carry
``Trigger_Number`` and ``MISSION`` (``B``) and become one event
``GECAM-<MISSION>-<Trigger_Number>`` (``GECAM-B-260``), the ground position
superseding the flight one. GCN: real notices have trigger numbers 1 to
99999999, test notices 100000000 and above (``test``).

Error semantics: ``Error2Radius`` is a statistical radius at 68 % containment
(GCN GECAM page: "~1-10 deg (radius, stat, 68% containment)"; the packets
state no containment Param; GCN's JSON converter writes 0.6827, the 1-D
one-sigma fraction), read at :data:`CONTAINMENT` with no systematic model,
none being published for GECAM. A radius of 0 (GCN: no position) gives
``no_position``.

The classifier's ``SRC_CLASS`` (``GRB``, ``SFLARE``, ``KNOWN_SOURCE``,
``GENERIC_SOURCE``) is a property; anything but ``GRB`` is kept as the flag
``not_grb:<class>`` (``not_grb:sflare``), never dropped.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime
from typing import Any

from mma.errors import Ignored, InvalidValue, MissingField
from mma.formats.notice_fields import circle_region, grb_aliases
from mma.formats.voevent import VOEvent, parse_voevent, sniff_ivorn
from mma.models import Notice

__all__ = ["CONTAINMENT", "DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "gecam"
KIND = "notice"
DEFAULT_TOPICS: tuple[str, ...] = ("gcn.classic.voevent.GECAM_FLT",
                                   "gcn.classic.voevent.GECAM_GND")  # fmt: skip

# GECAM was launched on 2020-12-09.
FIRST_LIGHT = datetime(2020, 12, 9, tzinfo=UTC)

STREAM_PREFIX = "ivo://nasa.gsfc.gcn/GECAM#"
CONTAINMENT = math.erf(1 / math.sqrt(2))  # 0.6827
PACKETS = {188: "GECAM_FLT", 189: "GECAM_GND"}
MISSIONS = frozenset({"A", "B"})
FIRST_TEST_TRIGGER = 100_000_000
_SRC_CLASS = re.compile(r"[A-Z][A-Z_]{0,29}")
# Param → property: significance [sigma], durations [s], rate [counts/s], angles [deg].
_NUMBERS = {"TRIGGER_SIGNIF": "trigger_signif_sigma", "TRIGGER_DUR": "trigger_dur_s",
            "BURST_INTEN": "burst_inten_cps", "BURST_DUR": "burst_dur_s",
            "TRIGGER_ERANGE_LoEnergy": "energy_min_kev",
            "TRIGGER_ERANGE_HiEnergy": "energy_max_kev",
            "Phi": "instrument_phi_deg", "Theta": "instrument_theta_deg"}  # fmt: skip


def sniff(raw: bytes) -> bool:
    """True for a VOEvent whose ivorn is a GCN GECAM packet."""
    ivorn = sniff_ivorn(raw)
    return ivorn is not None and ivorn.startswith(STREAM_PREFIX)


def _mission(event: VOEvent) -> str:
    mission = event.param("MISSION").strip()
    if mission not in MISSIONS:
        raise InvalidValue(f"GECAM MISSION {mission[:20]!r} is not one of {sorted(MISSIONS)}")
    return mission


def _classification(event: VOEvent, props: dict[str, Any]) -> list[str]:
    """``SRC_CLASS`` into the properties; a flag when it is not a GRB."""
    src_class = event.params.get("SRC_CLASS", "").strip()
    if not src_class:
        return []
    if not _SRC_CLASS.fullmatch(src_class):
        raise InvalidValue(f"GECAM SRC_CLASS {src_class[:40]!r} is not a class name")
    props["src_class"] = src_class
    return [] if src_class == "GRB" else [f"not_grb:{src_class.lower()}"]


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one GECAM VOEvent to a Notice.

    Mapping: ``event_id`` ← ``GECAM-<MISSION>-<Trigger_Number>``;
    ``notice_type`` ← ``GECAM_FLT``/``GECAM_GND`` of ``Packet_Type``;
    ``event_time`` ← ISOTime (trigger time, UTC); ``issued_time`` ← Who/Date;
    region ← circle [deg] at :data:`CONTAINMENT`; ``test`` ← role ``test`` or a
    test trigger number.

    Raises
    ------
    Ignored
        A ``utility`` packet or a GECAM packet type without a model.
    HostileMessage, MalformedMessage
        Unsafe, oversized or broken XML.
    MissingField
        No Packet_Type, Trigger_Number, MISSION, Position2D, ISOTime or Who/Date.
    InvalidValue
        Not a GECAM packet; a bad number, mission, class, time, position or radius.
    """
    event = parse_voevent(raw)
    if not event.ivorn.startswith(STREAM_PREFIX):
        raise InvalidValue(f"{event.ivorn[:80]!r} is not a GECAM VOEvent")
    if event.role == "utility":
        raise Ignored(f"GECAM utility packet {event.ivorn[:80]}")
    packet_type = event.param_int("Packet_Type")
    notice_type = PACKETS.get(packet_type)
    if notice_type is None:
        raise Ignored(f"GECAM packet type {packet_type} ({event.ivorn[:80]}) has no mma model")
    trigger = event.param_int("Trigger_Number")
    if trigger < 1:
        raise InvalidValue(f"GECAM Trigger_Number {trigger} is not positive")
    mission = _mission(event)
    props: dict[str, Any] = {"ivorn": event.ivorn, "trigger_id": trigger, "mission": mission,
                             "packet_type_number": packet_type}  # fmt: skip
    for name, key in _NUMBERS.items():
        if event.params.get(name, "").strip():
            props[key] = event.param_float(name)
    flags = _classification(event, props)
    position = event.position()
    if position is None:
        raise MissingField(f"GECAM {notice_type} {event.ivorn[:80]} has no Position2D")
    props["error_radius_stated_deg"] = position.error_radius_deg
    region = circle_region(position, containment=CONTAINMENT)
    if region is None:
        flags.append("no_position")
    logger.debug("GECAM-%s %s %s", mission, trigger, notice_type)
    return Notice(
        event_id=f"GECAM-{mission}-{trigger}",
        messenger="grb",
        instrument="GECAM",
        notice_type=notice_type,
        event_time=event.isotime(),
        issued_time=event.issued_time(),
        region=region,
        test=event.role == "test" or trigger >= FIRST_TEST_TRIGGER,
        aliases=grb_aliases(event.why_names()),
        properties=props,
        flags=tuple(flags),
        event_class="grb",
    )
