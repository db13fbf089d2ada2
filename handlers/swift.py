"""Swift notices as GCN Classic VOEvents (``gcn.classic.voevent.SWIFT_*``).

A BAT trigger produces a quick-look and a full BAT position (arcmin), then,
once the spacecraft has slewed, XRT (arcsec) and UVOT (sub-arcsec) positions.
All carry the BAT ``TrigID`` and become one event ``Swift-<TrigID>``, so each
refinement supersedes the previous region. GRB names in
``Why/Inference/Name`` become aliases once GCN has given the letter suffix.

Error semantics, in :data:`ERRORS`: every Swift
``Error2Radius`` is a 90 % radius with systematics included, so no systematic
model is named. BAT transient positions (``BAT_Trans_Pos``) are hard X-ray
transients, messenger and event class ``xray``; every other position is of a
burst, event class ``grb``, XRT and UVOT included (they refine the BAT burst).

Times: a BAT packet's ISOTime is the trigger time. An XRT or UVOT packet's
ISOTime is the time of *its* observation (minutes after the trigger), not a
revised trigger time: such notices carry the flag ``no_event_time`` so the
event keeps the BAT trigger time; the observation time stays in
``properties["observation_time"]``.

Packets without a new localisation (``FOM_Obs``, ``BAT_Lightcurve``,
``SC_Slew``, NACKs...) are recognised and raise :class:`mma.errors.Ignored`:
they repeat the BAT position with radius 0 and add nothing a region needs.

Swift sends no retraction packets. Vetoes it states are kept as flags:
``not_grb`` (``Def_NOT_a_GRB``), ``startrack_lost_lock``
(``StarTrack_Lost_Lock``/``ImTrig_during_ST_LoL``: the attitude, hence the
position, is suspect), ``grb_not_identified``, ``known_source``,
``low_image_significance``, ``cosmic_ray`` (XRT).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mma.errors import Ignored, InvalidValue
from mma.formats.notice_fields import circle_region, grb_aliases
from mma.formats.voevent import VOEvent, parse_voevent, sniff_ivorn
from mma.models import Messenger, Notice

__all__ = ["DEFAULT_TOPICS", "ERRORS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "swift"
KIND = "notice"
# Not SWIFT_BAT_TRANS: it re-reports BAT triggers already on BAT_GRB_POS_ACK/BAT_QL_POS
# (every one of 75 archived BAT_Trans_Pos packets, 2014-2023, shares their TrigID), bursts
# and catalogued hard X-ray sources alike; it is no GRB position stream of its own.
DEFAULT_TOPICS: tuple[str, ...] = tuple(
    f"gcn.classic.voevent.SWIFT_{kind}"
    for kind in ("BAT_GRB_POS_ACK", "BAT_QL_POS", "XRT_POSITION", "UVOT_POS")
)

# Swift launched on 2004-11-20.
FIRST_LIGHT = datetime(2004, 11, 20, tzinfo=UTC)

STREAM_PREFIX = "ivo://nasa.gsfc.gcn/SWIFT#"


@dataclass(frozen=True)
class ErrorModel:
    """How to read one Swift position notice.

    Attributes
    ----------
    containment : float
        Probability enclosed by ``Error2Radius`` (systematics included).
    messenger : str
        ``grb`` for burst positions, ``xray`` for BAT transients.
    event_class : str
        ``grb`` or ``xray`` likewise (sets the time window).
    trigger_time : bool
        True if ISOTime is the BAT trigger time; False for XRT/UVOT, whose
        ISOTime is their own observation time.
    """

    containment: float
    messenger: Messenger
    event_class: str
    trigger_time: bool = True


ERRORS: dict[str, ErrorModel] = {
    "BAT_GRB_Pos": ErrorModel(0.9, "grb", "grb"),
    "BAT_QuickLook_Pos": ErrorModel(0.9, "grb", "grb"),
    "BAT_Trans_Pos": ErrorModel(0.9, "xray", "xray"),
    "XRT_Pos": ErrorModel(0.9, "grb", "grb", trigger_time=False),
    "UVOT_Pos": ErrorModel(0.9, "grb", "grb", trigger_time=False),
}

# Swift booleans that veto or qualify a notice → flag (kept, never a drop).
_FLAG_PARAMS = {
    "Def_NOT_a_GRB": "not_grb",
    "StarTrack_Lost_Lock": "startrack_lost_lock",
    "ImTrig_during_ST_LoL": "startrack_lost_lock",
    "Target_in_Flt_Catalog": "known_source",
    "Target_in_Gnd_Catalog": "known_source",
    "Target_in_Blk_Catalog": "known_source",
    "Lo_Image_Signif": "low_image_significance",
    "VERY_Lo_Image_Signif": "low_image_significance",
    "Cosmic_Ray": "cosmic_ray",
    "Near_Bright_Star": "near_bright_star",
    "Values_Out_of_Range": "values_out_of_range",
    "CRC_Error": "crc_error",
}


def sniff(raw: bytes) -> bool:
    """True for a VOEvent whose ivorn is a GCN Swift packet."""
    ivorn = sniff_ivorn(raw)
    return ivorn is not None and ivorn.startswith(STREAM_PREFIX)


def _flags(event: VOEvent) -> list[str]:
    flags = [flag for name, flag in _FLAG_PARAMS.items() if event.param_bool(name)]
    if event.param_bool("GRB_Identified") is False:
        flags.append("grb_not_identified")
    return list(dict.fromkeys(flags))


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one Swift position VOEvent to a Notice.

    Mapping: ``event_id`` ← ``Swift-<TrigID>``; ``notice_type`` ← packet type
    of the ivorn (``BAT_GRB_Pos``, ``XRT_Pos``...); ``event_time`` ← ISOTime;
    ``issued_time`` ← Who/Date; region ← 90 % circle; ``aliases`` ← named GRBs;
    ``test`` ← role ``test`` or ``Test_Submission``.

    Raises
    ------
    Ignored
        A ``utility`` packet, or a Swift packet without a localisation.
    HostileMessage, MalformedMessage
        Unsafe or broken XML.
    MissingField
        No TrigID, ISOTime or Who/Date.
    InvalidValue
        Not a Swift packet, or a bad value (position, radius, id).
    """
    event = parse_voevent(raw)
    if not event.ivorn.startswith(STREAM_PREFIX):
        raise InvalidValue(f"{event.ivorn[:80]!r} is not a Swift VOEvent")
    notice_type = event.packet_type or ""
    if event.role == "utility":
        raise Ignored(f"Swift utility packet {event.ivorn[:80]}")
    model = ERRORS.get(notice_type)
    if model is None:
        raise Ignored(f"Swift {notice_type or event.ivorn[:80]} packet: no new localisation")
    trigger = event.param_int("TrigID")
    time = event.isotime()
    props: dict[str, Any] = {"ivorn": event.ivorn, "trigger_id": trigger}
    for name, key in (("Packet_Type", "packet_type_number"), ("Segment_Num", "segment_num")):
        if name in event.params:
            props[key] = event.param_int(name)
    for name, key in (("Det_Signif", "det_signif_sigma"), ("Integ_Time", "integ_time_s")):
        if name in event.params:
            props[key] = event.param_float(name)
    flags = _flags(event)
    if not model.trigger_time:
        props["observation_time"] = time.isoformat()
        flags.append("no_event_time")
    region = circle_region(event.position(), containment=model.containment)
    if region is None:
        flags.append("no_position")
    why = event.why_names()
    if why:
        props["why_names"] = list(why)
    return Notice(
        event_id=f"Swift-{trigger}",
        messenger=model.messenger,
        instrument="Swift-" + notice_type.split("_", 1)[0],
        notice_type=notice_type,
        event_time=time,
        issued_time=event.issued_time(),
        region=region,
        test=event.role == "test" or bool(event.param_bool("Test_Submission")),
        aliases=grb_aliases(why),
        properties=props,
        flags=tuple(flags),
        event_class=model.event_class,
    )
