"""Supernova neutrino bursts: SNEWS (VOEvent, SNEWS 2.0 JSON) and Super-Kamiokande → Notice.

A Galactic core-collapse supernova is announced by its neutrino burst hours
before the light: the time is precise, the direction coarse or absent.

SNEWS 1.0 VOEvents (``gcn.classic.voevent.SNEWS``, packet 149)
    Event id ``SNEWS-<TrigID>``. The position of every packet so far is the
    placeholder (0, 0) with ``Error2Radius`` 360°: region None, flag
    ``all_sky`` (time only). A radius under 180° would be used as a 90 %
    circle. Role ``test`` or the ``Test`` bit → test=True.
SNEWS 2.0 coincidence JSON (``snews2/coincidence.schema.json``, unmerged; no topic announced)
    Event id ``SNEWS-<id>`` (spaces → ``_``). Time only (region None, flag
    ``time_only``), or a triangulated ``healpix_url`` → a map-only ``skymap``
    region. Tier, detectors, p-values
    and false-alarm probability are properties.
Super-Kamiokande SN alerts (``gcn.notices.superk.sn_alert``, JSON)
    Event id ``SuperK-<id>``. A circle ``ra_dec_error`` [deg] at the stated
    ``containment_probability`` (0.68 in the examples: read, never assumed);
    ``luminosity_distance`` [Mpc] and its error are properties.

All three: messenger ``neutrino``, event class ``neutrino.sn_burst`` (its own
time window: the light follows the burst by minutes to about a day, then rises
for days to weeks); ``alert_tense`` test/injection → test=True.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from mma.errors import InvalidValue, MissingField
from mma.formats import notice_fields, voevent
from mma.formats.gcn_envelope import envelope, first_id, json_head_matches, number, schema_matches
from mma.formats.gcn_json import load_json
from mma.formats.gcn_localization import localization
from mma.models import Notice

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "snews"
KIND = "notice"
# The GCN site also spells the Super-K topic "gcn.notice.superk.sn_alert": a misspelling,
# no such topic exists.
DEFAULT_TOPICS: tuple[str, ...] = (
    "gcn.classic.voevent.SNEWS",
    "gcn.notices.superk.sn_alert",
)

# The oldest of its sources, Super-Kamiokande, began observing on 1996-04-01
# (SNEWS itself has run automatically since 2005).
FIRST_LIGHT = datetime(1996, 4, 1, tzinfo=UTC)

MAX_MESSAGE_BYTES = 8 * 2**20
MAX_SKYMAP_BYTES = 6 * 2**20
_SNIFF_JSON = re.compile(rb'"\$schema"\s*:\s*"[^"]*/notices/(?:snews2?|superk)/')
_SNEWS_STREAM = re.compile(r"ivo://nasa\.gsfc\.gcn/SNEWS(?:#.*)?")
_SNEWS2_PROPS: tuple[str, ...] = (
    "snews_schema_version", "snews2_tier", "far", "detector_status", "event_times_utc",
    "tier_data",
)  # fmt: skip
_SUPERK_PROPS: tuple[str, ...] = (
    "pipeline", "processed_sample", "trigger_number", "n_events", "n_ibd_events",
    "detection_interval", "rate_energy_range", "luminosity_distance",
    "luminosity_distance_error",
)  # fmt: skip


def sniff(raw: bytes) -> bool:
    """True for SNEWS/Super-K GCN JSON or a SNEWS VOEvent (by ivorn)."""
    if json_head_matches(raw, _SNIFF_JSON):
        return True
    ivorn = voevent.sniff_ivorn(raw)
    return ivorn is not None and _SNEWS_STREAM.fullmatch(ivorn) is not None


def _parse_voevent(raw: bytes, topic: str) -> Notice:
    event = voevent.parse_voevent(raw, max_bytes=voevent.MAX_VOEVENT_BYTES)
    if not _SNEWS_STREAM.fullmatch(event.ivorn):
        raise InvalidValue(f"VOEvent {event.ivorn[:80]!r} is not a SNEWS packet")
    flags: list[str] = []
    test = event.role == "test" or ".test." in f".{topic}."
    if event.role == "test":
        flags.append("role_test")
    if event.param_bool("Test"):
        test = True
        flags.append("test")
    retraction = bool(event.param_bool("Retraction"))
    position = None if retraction else event.position()
    if position is not None and (position.error_radius_deg or 0.0) >= 180.0:
        flags.append("all_sky")  # SNEWS 1.0 sends (0, 0) ± 360°: no direction at all
        position = None
    region = notice_fields.circle_region(position, containment=0.9)
    if region is None and "all_sky" not in flags and not retraction:
        flags.append("no_error_region")
    props = {"ivorn": event.ivorn, "subtype": event.params.get("SubType"),
             "event_signal": event.params.get("Event_Signal"),
             "detectors": {k: v for k, v in event.groups.get("Misc_Flags", {}).items()
                           if k.endswith("_Participate")}}
    return Notice(
        event_id=f"SNEWS-{event.param_int('TrigID')}",
        messenger="neutrino",
        instrument="SNEWS",
        notice_type="SNEWS",
        event_time=event.isotime(),
        issued_time=event.issued_time(),
        region=region,
        retraction=retraction,
        test=test,
        properties=props,
        flags=tuple(flags),
        event_class="neutrino.sn_burst",
    )


def _parse_json(msg: dict[str, Any], topic: str) -> Notice:
    if schema_matches(msg, "/notices/superk/") or msg.get("mission") == "Super-Kamiokande":
        prefix, instrument, keys = "SuperK", "Super-Kamiokande", _SUPERK_PROPS
    elif schema_matches(msg, "/notices/snews") or msg.get("mission") == "SNEWS":
        prefix, instrument, keys = "SNEWS", "SNEWS", _SNEWS2_PROPS
    elif "$schema" in msg:
        raise InvalidValue(f"$schema {str(msg['$schema'])[:80]!r} is not a SNEWS or "
                           "Super-K schema")
    else:
        raise MissingField("neither a SNEWS/Super-K $schema nor mission SNEWS/Super-Kamiokande")
    env = envelope(msg, topic=topic, default_type="alert")
    alert_id = first_id(msg)
    if alert_id is None:
        raise MissingField("id is missing")
    for key in ("far", "luminosity_distance", "luminosity_distance_error"):
        number(msg, key)
    flags = list(env.flags)
    props: dict[str, Any] = {**env.properties, "alert_id": alert_id}
    props.update({key: msg.get(key) for key in keys})
    region = None
    if not env.retraction:
        loc = localization(msg, max_skymap_bytes=MAX_SKYMAP_BYTES)
        region = loc.region
        flags.extend(loc.flags)
        props["localization"] = loc.properties
        if region is None and "all_sky" not in flags:
            flags.append("time_only")
    return Notice(
        event_id=f"{prefix}-{alert_id.replace(' ', '_')}",
        messenger="neutrino",
        instrument=instrument,
        notice_type=env.notice_type,
        event_time=env.event_time,
        issued_time=env.issued_time,
        region=region,
        retraction=env.retraction,
        test=env.test,
        properties=props,
        flags=tuple(flags),
        event_class="neutrino.sn_burst",
    )


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one SNEWS VOEvent, SNEWS 2.0 JSON or Super-K SN JSON alert to a Notice.

    Mapping: see the module docstring; ``event_time`` is the neutrino burst
    time (``ISOTime`` / ``trigger_time``), ``issued_time`` the packet's
    ``Who/Date`` / ``alert_datetime``.

    Raises
    ------
    HostileMessage, MalformedMessage
        Oversized, not strict JSON, or not safe well-formed XML.
    MissingField
        No ``TrigID``/``id`` or time; not a SNEWS/Super-K message.
    InvalidValue
        Foreign schema or ivorn; bad time, position, error or containment.
    """
    if raw[:64].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return _parse_voevent(raw, topic)
    return _parse_json(load_json(raw, max_bytes=MAX_MESSAGE_BYTES), topic)
