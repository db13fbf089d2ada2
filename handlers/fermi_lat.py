"""Fermi LAT notices → Notice, or Ignored.

GCN Classic VOEvents (``gcn.classic.voevent.FERMI_LAT_*``, ivorn
``ivo://nasa.gsfc.gcn/Fermi#LAT_…``), told apart by ``Packet_Type``:

GRB positions (:data:`POSITIONS`)
    On-board initial (120, ``LAT_Initial_Pos``) and updated (121,
    ``LAT_Updated_Pos``) positions, the on-board diagnostic final position
    (122, ``LAT_Final_Pos``), the ground localisation of an on-board trigger
    (127) and the ground-detected burst (128, ``LAT_Offline_Pos``); 124 is
    LAT's test position (``test``). ``Error2Radius`` is a 90 % statistical
    radius (GCN Fermi page: "≤1° radius (statistical, 90%)"), read at 0.9
    with no systematic model. Event id ``FermiLAT-<TrigID>``: TrigID is LAT's
    own trigger number (Fermi mission seconds of the LAT trigger); no LAT
    packet names the GBM trigger of the same burst, so a LAT event shares no
    alias with a GBM one unless GCN names the GRB (``Why/Inference/Name``).
    The ground search numbers its detections itself (an offline position and
    the on-board ones of one burst have different TrigIDs). Vetoes are flags:
    ``not_grb`` (``Def_NOT_a_GRB``), ``values_out_of_range``,
    ``near_bright_star``; a radius of 0 (GCN: no position) gives ``no_position``.
Not bursts (:data:`NOT_BURSTS`)
    Unknown-source transients (123, ``FERMI_LAT_TRANS``: found over a day, no
    trigger) and known-source flares (125, ``LAT_Monitor``) raise
    :class:`~mma.errors.Ignored` naming the packet, so they are counted, not
    dead-lettered. ``sniff`` leaves ``LAT_Monitor`` packets to the VOEvent
    catch-all.

GCN JSON (``gcn.notices.fermi.lat.*``, both feature-flagged off on the public
site and not public as of 2026-08, so read only in replays):

``fermi/lat/flare.schema.json`` — Flare Advocate notices
    A catalogued extragalactic source (4FGL) brightened by ``flux_ratio`` ≥ 10
    with TS > 30 over a one-day ``observation_start``–``observation_stop``
    window. A blazar flare has no trigger, no error region (the position is the
    catalogue position) and recurs; matching optical alerts of a known AGN
    against it would only rediscover the AGN. These raise
    :class:`~mma.errors.Ignored` naming the source, flux ratio and TS.
LAT GRB localisations
    A JSON LAT notice with a ``trigger_time`` and a position is read with the
    GCN core fields: event id ``FermiLAT-<id>``, messenger ``grb``, circle
    ``ra_dec_error`` [deg] at ``containment_probability`` (without the field
    the core default 0.9 applies, flagged). GRB names in ``event_name`` are
    aliases.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from mma.errors import Ignored, InvalidValue, MissingField
from mma.formats.gcn_envelope import (
    envelope,
    first_id,
    json_head_matches,
    names,
    number,
    schema_matches,
)
from mma.formats.gcn_json import load_json
from mma.formats.gcn_localization import localization
from mma.formats.notice_fields import circle_region, grb_aliases
from mma.formats.voevent import VOEvent, parse_voevent, sniff_ivorn
from mma.models import Notice

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "NOT_BURSTS", "POSITIONS", "parse",
           "sniff"]  # fmt: skip

logger = logging.getLogger(__name__)

NAME = "fermi_lat"
KIND = "notice"
# The JSON flare topic (gcn.notices.fermi.lat.flare) is not public as of 2026-08: replays
# only. TRANS is subscribed to be counted as Ignored, not to be missed unnoticed.
DEFAULT_TOPICS: tuple[str, ...] = tuple(
    f"gcn.classic.voevent.FERMI_LAT_{kind}"
    for kind in ("POS_INI", "POS_UPD", "POS_DIAG", "GND", "OFFLINE", "TRANS")
)

# Fermi launched on 2008-06-11.
FIRST_LIGHT = datetime(2008, 6, 11, tzinfo=UTC)

MAX_MESSAGE_BYTES = 8 * 2**20
MAX_SKYMAP_BYTES = 6 * 2**20
_SNIFF = re.compile(rb'"\$schema"\s*:\s*"[^"]*/notices/fermi/lat/')

STREAM_PREFIX = "ivo://nasa.gsfc.gcn/Fermi#LAT_"
MONITOR_PREFIX = STREAM_PREFIX + "Monitor"
LAT_CONTAINMENT = 0.9  # GCN Fermi page: LAT radii are 90 % statistical
TEST_PACKET = 124
# GCN packet type → notice type (the GCN Kafka topic's suffix).
POSITIONS: dict[int, str] = {120: "LAT_POS_INI", 121: "LAT_POS_UPD", 122: "LAT_POS_DIAG",
                             TEST_PACKET: "LAT_POS_TEST", 127: "LAT_GND", 128: "LAT_OFFLINE"}
NOT_BURSTS: dict[int, str] = {
    123: "unknown-source transient found over a day (LAT_TRANS): no burst trigger",
    125: "flare of a known source (LAT_MONITOR): a recurrent source, no burst trigger",
}
_VETOES = {"Def_NOT_a_GRB": "not_grb", "Values_Out_of_Range": "values_out_of_range",
           "Near_Bright_Star": "near_bright_star"}  # fmt: skip
# Param → property: event counts, durations [s], test statistics [-ln p], booleans.
_NUMBERS = {"Burst_Inten": "burst_inten_counts", "Integ_Time": "integ_time_s",
            "Temp_Test_Stat": "temp_test_stat", "Image_Test_Stat": "image_test_stat",
            "Trigger_Signif": "trigger_signif"}  # fmt: skip
_BOOLEANS = {"Temporal_Prox_Match": "temporal_prox_match",
             "Spatial_Prox_Match": "spatial_prox_match"}  # fmt: skip
_PROPERTIES = ("flux", "flux_error", "flux_unit", "TS", "far", "additional_info")


def sniff(raw: bytes) -> bool:
    """True for a Fermi LAT JSON ``$schema`` or a GCN LAT VOEvent other than LAT_Monitor."""
    if json_head_matches(raw, _SNIFF):
        return True
    ivorn = sniff_ivorn(raw)
    return (ivorn is not None and ivorn.startswith(STREAM_PREFIX)
            and not ivorn.startswith(MONITOR_PREFIX))  # fmt: skip


def _voevent_properties(event: VOEvent, trigger: int, packet_type: int) -> dict[str, Any]:
    props: dict[str, Any] = {"ivorn": event.ivorn, "trigger_id": trigger,
                             "packet_type_number": packet_type}  # fmt: skip
    for name, key in (("Pkt_Ser_Num", "pkt_ser_num"), ("Record_Num", "record_num")):
        if name in event.params:
            props[key] = event.param_int(name)
    for name, key in _NUMBERS.items():
        if name in event.params:
            props[key] = event.param_float(name)
    for name, key in _BOOLEANS.items():
        if name in event.params:
            props[key] = event.param_bool(name)
    return props


def _parse_voevent(raw: bytes) -> Notice:
    """One GCN Classic LAT VOEvent → Notice (positions) or Ignored (see the module)."""
    event = parse_voevent(raw)
    if not event.ivorn.startswith(STREAM_PREFIX):
        raise InvalidValue(f"{event.ivorn[:80]!r} is not a Fermi LAT VOEvent")
    if event.role == "utility":
        raise Ignored(f"Fermi LAT utility packet {event.ivorn[:80]}")
    packet_type = event.param_int("Packet_Type")
    if packet_type in NOT_BURSTS:
        raise Ignored(f"Fermi LAT {NOT_BURSTS[packet_type]}: {event.ivorn[:80]}")
    notice_type = POSITIONS.get(packet_type)
    if notice_type is None:
        raise Ignored(f"Fermi LAT packet type {packet_type} ({event.ivorn[:80]}) has no mma model")
    trigger = event.param_int("TrigID")
    props = _voevent_properties(event, trigger, packet_type)
    flags = [flag for name, flag in _VETOES.items() if event.param_bool(name)]
    position = event.position()
    if position is None:  # every LAT position packet has one; radius 0 is GCN's "none"
        raise MissingField(f"Fermi LAT {notice_type} {event.ivorn[:80]} has no Position2D")
    props["error_radius_stated_deg"] = position.error_radius_deg
    region = circle_region(position, containment=LAT_CONTAINMENT)
    if region is None:
        flags.append("no_position")
    logger.debug("Fermi LAT %s %s", trigger, notice_type)
    return Notice(
        event_id=f"FermiLAT-{trigger}",
        messenger="grb",
        instrument="Fermi-LAT",
        notice_type=notice_type,
        event_time=event.isotime(),
        issued_time=event.issued_time(),
        region=region,
        test=event.role == "test" or packet_type == TEST_PACKET,
        aliases=grb_aliases(event.why_names()),
        properties=props,
        flags=tuple(dict.fromkeys(flags)),
        event_class="grb",
    )


def _flare(msg: dict[str, Any]) -> Ignored:
    """The Ignored for a Flare Advocate notice, after checking what it says."""
    source = names(msg.get("event_name"), "event_name")
    for key in ("ra", "dec", "flux", "flux_ratio", "TS"):
        number(msg, key)
    return Ignored(
        f"Fermi LAT flare of catalogued source {source[0] if source else '(unnamed)'!r} "
        f"(flux ratio {msg.get('flux_ratio')}, TS {msg.get('TS')}): a recurrent AGN flare "
        "with no trigger or error region, not a transient mma correlates"
    )


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one Fermi LAT notice: a GRB position → Notice; a flare or transient → Ignored.

    A message starting with ``<`` is a GCN Classic VOEvent: ``event_id`` ←
    ``FermiLAT-<TrigID>``; ``notice_type`` ← :data:`POSITIONS` of
    ``Packet_Type``; ``event_time`` ← ISOTime (UTC); ``issued_time`` ←
    Who/Date; region ← 90 % circle [deg]. Anything else is GCN JSON.

    Raises
    ------
    Ignored
        A flare (JSON or LAT_MONITOR), an unknown-source transient (LAT_TRANS),
        a utility packet or a LAT packet type without a model.
    HostileMessage, MalformedMessage
        Oversized, unsafe or broken XML or JSON.
    MissingField
        Not a LAT notice; no TrigID/``id``, ISOTime/``trigger_time`` or Who/Date.
    InvalidValue
        Foreign ``$schema`` or ivorn; bad time, position or error.
    """
    if raw.lstrip()[:1] == b"<":
        return _parse_voevent(raw)
    msg = load_json(raw, max_bytes=MAX_MESSAGE_BYTES)
    if "$schema" in msg:
        if not schema_matches(msg, "/notices/fermi/lat/"):
            raise InvalidValue(f"$schema {str(msg['$schema'])[:80]!r} is not a Fermi LAT schema")
    elif msg.get("instrument") != "LAT":
        raise MissingField("neither a Fermi LAT $schema nor instrument 'LAT'")
    if schema_matches(msg, "/lat/flare") or "flux_ratio" in msg:
        raise _flare(msg)
    env = envelope(msg, topic=topic, default_type="alert")
    trigger_id = first_id(msg)
    if trigger_id is None:
        raise MissingField("id is missing")
    event_names = names(msg.get("event_name"), "event_name")
    flags = list(env.flags)
    props: dict[str, Any] = {**env.properties, "trigger_id": trigger_id,
                             "event_name": list(event_names) or None}
    props.update({key: msg.get(key) for key in _PROPERTIES if key in msg})
    region = None
    if not env.retraction:
        loc = localization(msg, max_skymap_bytes=MAX_SKYMAP_BYTES)
        region = loc.region
        flags.extend(loc.flags)
        props["localization"] = loc.properties
    return Notice(
        event_id=f"FermiLAT-{trigger_id}",
        messenger="grb",
        instrument="Fermi-LAT",
        notice_type=env.notice_type,
        event_time=env.event_time,
        issued_time=env.issued_time,
        region=region,
        retraction=env.retraction,
        test=env.test,
        aliases=grb_aliases(event_names),
        properties=props,
        flags=tuple(flags),
        event_class="grb",
    )
