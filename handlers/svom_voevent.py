"""SVOM notices as VOEvents from the French Science Center (``gcn.notices.svom.voevent.*``).

One SVOM alert sequence has one burst id (``Burst_Id``, ``sbYYMMDDnn``, also in
the ivorn ``ivo://org.svom/fsc#sb26022802_eclairs-wakeup``); every notice of it
becomes the event ``SVOM-<burst id>``, the id the JSON handler :mod:`svom`
gives, so each refinement supersedes the last region. The packet type
(``Packet_Type``, FSC's notice table) says what a notice is:

=====  ==================  =========  ===============================================
type   notice              instrument  region
=====  ==================  =========  ===============================================
201    grm-trigger         GRM        none: time only (2 detectors) or a direction
                                      without error (3 detectors, ``Error2Radius`` −1)
202    eclairs-wakeup      ECLAIRs    circle, R90 (statistical + systematic)
203    eclairs-catalog     ECLAIRs    same, a flare of an on-board catalogue source
204    slewing             ECLAIRs    refined circle, R90; the platform slews
205    not-slewing         ECLAIRs    refined circle, R90; no slew (flag ``slew_rejected``)
209    mxt-initial_qf#     MXT        circle, R90 (FSC quality factors bound R90)
210    mxt-update_qf#      MXT        same, better quality factor
219    retraction          any        none: withdraws the burst
=====  ==================  =========  ===============================================

Containment: the GCN SVOM page gives ECLAIRs ~10′ and MXT ~10–100″ radii,
statistical + systematic; FSC's MXT notices state their radius as R90 and
carry ``Within_ECLAIRs_R90``, naming the ECLAIRs radius an R90 too. Both are
read at 0.9 with no systematic model added. GRM's on-board direction has no
computed error (FSC: systematics of a few tens of degrees), so GRM notices
carry no region: like a Fermi GBM ALERT, they are time-only, not flagged.

Times: ``ISOTime`` is the trigger time for GRM and ECLAIRs; an MXT notice's
is its own observation, minutes later, so MXT notices carry ``no_event_time``
(the event keeps the trigger time) and ``observation_time`` in properties.
A catalogue trigger (203) is a flare of a known X-ray source: messenger and
event class ``xray`` with the flag ``known_source``, as for Swift's BAT
transients. A retraction names the notices it withdraws
(``Citations/EventIVORN cite="retraction"``) in ``properties["retracts"]``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mma.errors import Ignored, InvalidValue, MissingField
from mma.formats.notice_fields import circle_region, grb_aliases
from mma.formats.voevent import VOEvent, parse_voevent, sniff_ivorn
from mma.models import Messenger, Notice, RegionSpec

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "PACKETS", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "svom_voevent"
KIND = "notice"
DEFAULT_TOPICS: tuple[str, ...] = tuple(
    f"gcn.notices.svom.voevent.{instrument}" for instrument in ("eclairs", "grm", "mxt")
)

# SVOM launched on 2024-06-22.
FIRST_LIGHT = datetime(2024, 6, 22, tzinfo=UTC)

STREAM_PREFIX = "ivo://org.svom/fsc#"
R90 = 0.9
RETRACTION = 219
BURST_ID = re.compile(r"sb\d{8}")
_IVORN_BURST = re.compile(r"(sb\d{8})_")


@dataclass(frozen=True)
class Packet:
    """What one SVOM packet type is.

    Attributes
    ----------
    notice_type : str
        FSC's notice type (``eclairs-wakeup``...).
    instrument : str or None
        ``ECLAIRs``, ``GRM`` or ``MXT``; None: read from the ``Instrument`` Param.
    has_position : bool
        True if a circle at :data:`R90` must be given.
    trigger_time : bool
        True if ISOTime is the trigger time (False for MXT).
    """

    notice_type: str
    instrument: str | None
    has_position: bool = True
    trigger_time: bool = True


PACKETS: dict[int, Packet] = {
    201: Packet("grm-trigger", "GRM", has_position=False),
    202: Packet("eclairs-wakeup", "ECLAIRs"),
    203: Packet("eclairs-catalog", "ECLAIRs"),
    204: Packet("slewing", "ECLAIRs"),
    205: Packet("not-slewing", "ECLAIRs"),
    209: Packet("mxt-initial", "MXT", trigger_time=False),
    210: Packet("mxt-update", "MXT", trigger_time=False),
    RETRACTION: Packet("retraction", None, has_position=False),
}
INSTRUMENTS = frozenset({"ECLAIRs", "GRM", "MXT"})
CATALOG = 203

# Param → property: SNR [sigma], durations [s], band [keV], fluxes [erg/cm2/s].
_FLOATS = {"SNR": "snr", "Timescale": "timescale_s", "Lower_Energy_Bound": "energy_min_kev",
           "Upper_Energy_Bound": "energy_max_kev", "Mean_Flux": "mean_flux",
           "Flux_Error": "flux_error", "ECLAIRs_Angle": "eclairs_angle_arcmin"}  # fmt: skip
_TEXTS = {"Notice_Level": "notice_level", "Trigger_Type": "trigger_type",
          "Slew_Status": "slew_status", "Triggered_GRDs": "triggered_grds",
          "Time_Window_Start": "time_window_start", "Time_Window_End": "time_window_end",
          "Alert_Seq_T0": "alert_seq_t0", "Source_Name": "source_name",
          "Onboard_Catalog_Id": "onboard_catalog_id"}  # fmt: skip
_MAX_TEXT = 80


def sniff(raw: bytes) -> bool:
    """True for a VOEvent whose ivorn is an SVOM FSC notice."""
    ivorn = sniff_ivorn(raw)
    return ivorn is not None and ivorn.lower().startswith(STREAM_PREFIX)


def _burst_id(event: VOEvent) -> str:
    """``Burst_Id``, checked against its pattern and against the ivorn's."""
    burst = event.param("Burst_Id")
    if not BURST_ID.fullmatch(burst):
        raise InvalidValue(f"SVOM Burst_Id {burst[:40]!r} is not sbYYMMDDnn")
    in_ivorn = _IVORN_BURST.match(event.ivorn.partition("#")[2])
    if in_ivorn is not None and in_ivorn.group(1) != burst:
        raise InvalidValue(f"SVOM Burst_Id {burst} differs from the ivorn's {in_ivorn.group(1)}")
    return burst


def _instrument(event: VOEvent, packet: Packet) -> str:
    stated = event.param("Instrument")
    if stated not in INSTRUMENTS:
        raise InvalidValue(f"SVOM Instrument {stated[:30]!r} is not one of {sorted(INSTRUMENTS)}")
    if packet.instrument is not None and stated != packet.instrument:
        raise InvalidValue(f"SVOM {packet.notice_type} packet from instrument {stated}")
    return stated


def _cited(event: VOEvent, cite: str) -> list[str]:
    """The ivorns the packet cites with ``cite`` (``retraction``, ``followup``)."""
    out = []
    for el in event.root.iter("{*}EventIVORN"):
        text = (el.text or "").strip()
        if el.get("cite") == cite and text:
            out.append(text[:200])
    return out


def _properties(event: VOEvent, burst: str) -> dict[str, Any]:
    props: dict[str, Any] = {"ivorn": event.ivorn, "burst_id": burst,
                             "packet_type_number": event.param_int("Packet_Type")}
    for name, key in _FLOATS.items():
        if name in event.params:
            props[key] = event.param_float(name)
    for name, key in _TEXTS.items():
        if event.params.get(name):
            props[key] = event.params[name][:_MAX_TEXT]
    return props


def _flags(event: VOEvent, packet_type: int) -> list[str]:
    flags = []
    if event.params.get("Slew_Status") == "rejected":
        flags.append("slew_rejected")  # no MXT/VT follow-up: the ECLAIRs circle stays final
    if packet_type == CATALOG:
        flags.append("known_source")
    if event.param_bool("Within_ECLAIRs_R90") is False:
        flags.append("outside_eclairs_r90")  # the MXT source may not be the ECLAIRs burst
    return flags


def _region(event: VOEvent, packet: Packet, props: dict[str, Any]) -> RegionSpec:
    """The R90 circle an ECLAIRs or MXT notice must state."""
    position = event.position()
    if position is None:
        raise MissingField(f"SVOM {packet.notice_type} {event.ivorn[:80]} has no Position2D")
    if not position.error_radius_deg:  # absent or 0: no error circle
        raise InvalidValue(f"SVOM {packet.notice_type} {event.ivorn[:80]}: Error2Radius "
                           "missing or not positive")
    props["error_radius_stated_deg"] = position.error_radius_deg
    region = circle_region(position, containment=R90)
    if region is None:
        raise InvalidValue(f"SVOM error radius {position.error_radius_deg} deg says nothing")
    return region


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one SVOM FSC VOEvent to a Notice.

    Mapping: ``event_id`` ← ``SVOM-<Burst_Id>``; ``notice_type`` ← FSC notice
    type of ``Packet_Type`` (:data:`PACKETS`); ``instrument`` ← ``SVOM-`` +
    ``Instrument``; ``event_time`` ← ISOTime (UTC); ``issued_time`` ←
    Who/Date; region ← R90 circle [deg] for ECLAIRs and MXT, none for GRM and
    retractions; ``test`` ← role ``test``.

    Raises
    ------
    Ignored
        A ``utility`` packet or a packet type mma has no model for (VT, 211).
    HostileMessage, MalformedMessage
        Unsafe, oversized or broken XML.
    MissingField
        No Packet_Type, Burst_Id, Instrument, ISOTime or Who/Date; an ECLAIRs or
        MXT notice without Position2D.
    InvalidValue
        Not an SVOM packet; a bad burst id, instrument, time, position or radius.
    """
    event = parse_voevent(raw)
    if not event.ivorn.lower().startswith(STREAM_PREFIX):
        raise InvalidValue(f"{event.ivorn[:80]!r} is not an SVOM FSC VOEvent")
    if event.role == "utility":
        raise Ignored(f"SVOM utility packet {event.ivorn[:80]}")
    packet_type = event.param_int("Packet_Type")
    packet = PACKETS.get(packet_type)
    if packet is None:
        raise Ignored(f"SVOM packet type {packet_type} ({event.ivorn[:80]}) has no mma model")
    burst = _burst_id(event)
    instrument = _instrument(event, packet)
    props = _properties(event, burst)
    flags = _flags(event, packet_type)
    time = event.isotime()
    if not packet.trigger_time:
        props["observation_time"] = time.isoformat()
        flags.append("no_event_time")
    retraction = packet_type == RETRACTION
    if retraction:
        props["retracts"] = _cited(event, "retraction")
    region = _region(event, packet, props) if packet.has_position else None
    messenger: Messenger = "xray" if packet_type == CATALOG else "grb"
    logger.debug("SVOM %s %s from %s", burst, packet.notice_type, instrument)
    return Notice(
        event_id=f"SVOM-{burst}",
        messenger=messenger,
        instrument=f"SVOM-{instrument}",
        notice_type=packet.notice_type,
        event_time=time,
        issued_time=event.issued_time(),
        region=region,
        retraction=retraction,
        test=event.role == "test",
        aliases=grb_aliases(event.why_names()),
        properties=props,
        flags=tuple(flags),
        event_class=messenger,
    )
