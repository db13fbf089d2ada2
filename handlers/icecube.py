"""IceCube neutrino notices (GCN JSON and AMON VOEvents) → Notice.

Three families share the event id ``IceCube-<run>_<event>`` (integers without
padding), so the JSON and VOEvent notices of one neutrino land on one event:

Gold/Bronze track alerts, JSON (``gcn.notices.icecube.gold_bronze_track_alerts``)
    ``id`` ``["<run>_<event>"]``; the name ``IceCube-YYMMDDA`` is an alias.
    Circle ``ra_dec_error`` [deg] at ``containment_probability`` (0.9),
    "circularised" from IceCube's asymmetric errors. ``record_number`` 0 is
    statistical only (flag ``statistical_error_only``); the revision adds
    systematics and ``healpix_url`` (a multi-order map in sr⁻¹) → ``skymap_url``
    beside the circle.
AMON VOEvents (``gcn.classic.voevent.ICECUBE_ASTROTRACK_{GOLD,BRONZE}``, ``ICECUBE_CASCADE``)
    ``run_id``/``event_id`` Params. ``Error2Radius`` is ``src_error_90``: a 90 %
    radius, statistical only for tracks and statistical+systematic for cascades,
    as each packet's Param description says (read, not assumed; flag
    ``statistical_error_only`` when it says "statistical only"). ``src_error_50``
    is kept; a cascade's ``skymap_fits`` URL → ``skymap_url``. The
    ``RADec_valid`` bit is false in every real AMON packet, positions included,
    so it is recorded but not used. ``Test``/``InternalTest`` or role ``test``
    → test=True; ``Retraction`` → retraction=True, region None.
IceCube follow-up of LVK alerts, JSON (``gcn.notices.icecube.lvk_nu_track_search``)
    One notice per GW alert lists the track events within ±500 s
    (``coincident_events``). It becomes **one Notice for the most significant
    neutrino** (lowest ``event_pval_generic``): event ``IceCube-<run>_<event>``
    from that neutrino's id, event time = GW ``trigger_time`` + ``event_dt``,
    its own 90 % circle (statistical only). The GW superevent (``ref_ID``) is a
    property (``gw_superevent_id``), **not an alias**: an alias would merge the
    neutrino into the GW event and its circle would supersede the GW map. The
    other neutrinos, both p-values and ``most_probable_direction`` are
    properties; flags ``gw_followup`` and ``other_coincident_neutrinos``. A
    notice with no coincident neutrino (upper limits only) raises Ignored.

Event classes (they set the time windows): gold and bronze tracks
``neutrino.track`` (a JSON alert whose ``alert_topology`` is ``Cascade``, should
one come, ``neutrino.cascade``); AMON cascades ``neutrino.cascade``; the LVK
track search ``neutrino.gw_followup`` (the neutrino is tied to the GW within
±500 s, so its optical counterpart is the GW's).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree

from mma.epochs import check_time
from mma.errors import Ignored, InvalidValue, MissingField
from mma.formats import notice_fields, voevent
from mma.formats.gcn_envelope import (
    envelope,
    finite,
    json_head_matches,
    names,
    number,
    schema_matches,
)
from mma.formats.gcn_json import load_json
from mma.formats.gcn_localization import localization
from mma.models import SECONDS_PER_YEAR, Notice

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "icecube"
KIND = "notice"
DEFAULT_TOPICS: tuple[str, ...] = (
    "gcn.notices.icecube.gold_bronze_track_alerts",
    # Not gcn.notices.icecube.test.gold_bronze_track_alerts: a test stream (parsed as test).
    "gcn.notices.icecube.lvk_nu_track_search",
    "gcn.classic.voevent.ICECUBE_ASTROTRACK_GOLD",
    "gcn.classic.voevent.ICECUBE_ASTROTRACK_BRONZE",
    "gcn.classic.voevent.ICECUBE_CASCADE",
)

# Realtime track alerts began 2016-04-27, but archival notices (IceCat-1) reach
# back to the full 86-string detector's first season, begun 2011-05-13.
FIRST_LIGHT = datetime(2011, 5, 13, tzinfo=UTC)

MAX_MESSAGE_BYTES = 8 * 2**20
MAX_SKYMAP_BYTES = 6 * 2**20
MAX_COINCIDENT = 1000  # ±500 s hold a few track events; more is a crafted message
MAX_EVENT_DT_S = 1000.0  # the search covers ±500 s around the GW; twice that is generous
_SNIFF_JSON = re.compile(rb'"\$schema"\s*:\s*"[^"]*/notices/icecube/')
# stream_of(ivorn) → (classic notice type, pygcn packet number, event class)
_AMON_STREAMS = {
    "ivo://nasa.gsfc.gcn/AMON#ICECUBE_GOLD_Event":
        ("ICECUBE_ASTROTRACK_GOLD", 173, "neutrino.track"),
    "ivo://nasa.gsfc.gcn/AMON#ICECUBE_BRONZE_Event":
        ("ICECUBE_ASTROTRACK_BRONZE", 174, "neutrino.track"),
    "ivo://nasa.gsfc.gcn/AMON#ICECUBE_Cascade_Event":
        ("ICECUBE_CASCADE", 176, "neutrino.cascade"),
}
_RUN_EVENT = re.compile(r"(\d{1,12})_(\d{1,12})")
_NAME = re.compile(r"IceCube(?:Cascade)?-\d{6}[A-Za-z]{1,2}")
# signalness (0–1), FAR [yr⁻¹], energy [TeV], radii [deg], revision, map URLs.
_AMON_PARAMS = ("AMON_ID", "Rev", "Stream", "signalness", "FAR", "energy", "src_error_90",
                "src_error_50", "skymap_fits", "skymap_png", "event_name")  # fmt: skip
_JSON_PROPERTIES = ("pipeline", "alert_topology", "number_of_events", "nu_energy",
                    "p_astro", "far")  # fmt: skip


def sniff(raw: bytes) -> bool:
    """True for an IceCube GCN JSON notice or an AMON IceCube VOEvent (by ivorn)."""
    if json_head_matches(raw, _SNIFF_JSON):
        return True
    return voevent.sniff_stream(raw) in _AMON_STREAMS


def _event_id(run: int, event: int) -> str:
    return f"IceCube-{run}_{event}"


def _run_event(text: str, where: str) -> str:
    match = _RUN_EVENT.fullmatch(text)
    if match is None:
        raise InvalidValue(f"{where} {text[:40]!r} is not '<run>_<event>'")
    return _event_id(int(match.group(1)), int(match.group(2)))


# ---------------------------------------------------------------- AMON VOEvents
def _param_description(event: voevent.VOEvent, name: str) -> str:
    """The Description text of What Param *name* ('' if none): it states the error model."""
    for el in event.root.iter():
        if isinstance(el.tag, str) and etree.QName(el).localname == "Param" \
                and el.get("name") == name:
            for child in el:
                if isinstance(child.tag, str) and etree.QName(child).localname == "Description":
                    return (child.text or "").strip()
    return ""


def _parse_amon(raw: bytes, topic: str) -> Notice:
    event = voevent.parse_voevent(raw, max_bytes=voevent.MAX_VOEVENT_BYTES)
    if event.stream not in _AMON_STREAMS:
        raise InvalidValue(f"VOEvent stream {event.stream[:80]!r} is not an IceCube AMON stream")
    notice_type, packet, event_class = _AMON_STREAMS[event.stream]
    if event.params.get("Packet_Type") not in (None, str(packet)):
        raise InvalidValue(f"Packet_Type {event.params['Packet_Type'][:10]!r} contradicts "
                           f"the ivorn's {notice_type} ({packet})")
    event_id = _event_id(event.param_int("run_id"), event.param_int("event_id"))
    flags: list[str] = []
    test = event.role == "test" or ".test." in f".{topic}."
    for bit in ("Test", "InternalTest"):
        if event.param_bool(bit):
            test = True
            flags.append(bit.lower() if bit == "Test" else "internal_test")
    if event.role == "test":
        flags.append("role_test")
    retraction = bool(event.param_bool("Retraction"))
    props: dict[str, Any] = {k: event.params.get(k) for k in _AMON_PARAMS}
    props["radec_valid_bit"] = event.param_bool("RADec_valid")
    for key in ("signalness", "FAR", "energy", "src_error_50"):
        if event.params.get(key):
            props[key] = event.param_float(key)
    if isinstance(props.get("FAR"), float):
        # AMON states the FAR per year; mma's property ``far`` is in Hz for every
        # messenger (priors, channel rules and messages read it).
        props["far"] = props["FAR"] / SECONDS_PER_YEAR
    region = None
    if not retraction:
        model = _param_description(event, "src_error_90").lower()
        props["error_model"] = model or None
        if "statistical only" in model:
            flags.append("statistical_error_only")
        position = event.position()
        if position is not None and position.error_radius_deg is not None \
                and position.error_radius_deg >= 180.0:
            flags.append("all_sky")
            position = None
        region = notice_fields.circle_region(
            position, containment=0.9, skymap_url=notice_fields.http_url(props["skymap_fits"]))
        if region is None:
            flags.append("no_error_region")
    aliases = tuple(n for n in (props["event_name"],) if n and _NAME.fullmatch(n))
    return Notice(
        event_id=event_id,
        messenger="neutrino",
        instrument="IceCube",
        notice_type=notice_type,
        event_time=event.isotime(),
        issued_time=event.issued_time(),
        region=region,
        retraction=retraction,
        test=test,
        aliases=aliases,
        properties={**props, "ivorn": event.ivorn},
        flags=tuple(flags),
        event_class=event_class,
    )


# ---------------------------------------------------------------- JSON
def _parse_track_alert(msg: dict[str, Any], topic: str) -> Notice:
    env = envelope(msg, topic=topic, default_type="alert")
    ids = names(msg.get("id"), "id")
    if not ids:
        raise MissingField("id is missing")
    event_names = names(msg.get("event_name"), "event_name")
    for key in ("nu_energy", "p_astro", "far"):
        number(msg, key)
    flags = list(env.flags)
    props: dict[str, Any] = {**env.properties, "event_name": list(event_names) or None}
    props.update({key: msg.get(key) for key in _JSON_PROPERTIES})
    region = None
    if not env.retraction:
        loc = localization(msg, max_skymap_bytes=MAX_SKYMAP_BYTES)
        region = loc.region
        flags.extend(loc.flags)
        props["localization"] = loc.properties
    return Notice(
        event_id=_run_event(ids[0], "id"),
        messenger="neutrino",
        instrument="IceCube",
        notice_type=env.notice_type,
        event_time=env.event_time,
        issued_time=env.issued_time,
        region=region,
        retraction=env.retraction,
        test=env.test,
        aliases=tuple(n for n in event_names if _NAME.fullmatch(n)),
        properties=props,
        flags=tuple(flags),
        event_class=_track_alert_class(msg.get("alert_topology")),
    )


def _track_alert_class(topology: Any) -> str:
    """``neutrino.cascade`` if ``alert_topology`` says Cascade, else ``neutrino.track``."""
    if isinstance(topology, str) and topology.casefold() == "cascade":
        return "neutrino.cascade"
    return "neutrino.track"


def _event_dt(value: Any, where: str) -> float:
    """A neutrino's time after the GW [s], within ±:data:`MAX_EVENT_DT_S` (it is added
    to the trigger time: a huge one would overflow the date arithmetic)."""
    dt = finite(value, where)
    if abs(dt) > MAX_EVENT_DT_S:
        raise InvalidValue(f"{where} {dt!r} s is outside ±{MAX_EVENT_DT_S:g} s (the search "
                           "covers ±500 s)")
    return dt


def _neutrinos(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or len(value) > MAX_COINCIDENT:
        raise InvalidValue(f"coincident_events must be a list of at most {MAX_COINCIDENT}")
    out = []
    for i, item in enumerate(value):
        where = f"coincident_events[{i}]."
        if not isinstance(item, dict):
            raise InvalidValue(f"coincident_events[{i}] is not an object")
        loc_obj = item.get("localization")
        if not isinstance(loc_obj, dict):
            raise MissingField(f"{where}localization is missing")
        loc = localization(loc_obj, max_skymap_bytes=0, where=f"{where}localization.")
        ids = names(item.get("id"), f"{where}id")
        if not ids:
            raise MissingField(f"{where}id is missing")
        out.append({
            "id": ids[0],
            "event_id": _run_event(ids[0], f"{where}id"),
            "event_dt": _event_dt(item.get("event_dt"), f"{where}event_dt"),
            "event_pval_generic": number(item, "event_pval_generic", where),
            "event_pval_bayesian": number(item, "event_pval_bayesian", where),
            "localization": loc.properties,
            "_loc": loc,
        })
    return out


def _parse_nu_search(msg: dict[str, Any], topic: str) -> Notice:
    gw_id = msg.get("ref_ID")
    if not isinstance(gw_id, str) or not gw_id:
        raise MissingField("ref_ID (the LVK superevent) is missing")
    env = envelope(msg, topic=topic, default_type="lvk_nu_track_search")
    # Checked before the arithmetic below (year 9999 plus 500 s overflows).
    check_time(env.event_time, what="trigger_time", since=FIRST_LIGHT)
    for key in ("pval_generic", "pval_bayesian", "n_events_coincident"):
        number(msg, key)
    neutrinos = _neutrinos(msg.get("coincident_events") or [])
    if not neutrinos:
        raise Ignored(f"IceCube LVK track search for {gw_id[:20]}: no coincident neutrino "
                      "(upper limits only)")
    # Lowest p-value first; a missing p-value ranks last, ties keep notice order.
    best = min(neutrinos, key=lambda n: (n["event_pval_generic"] is None,
                                         n["event_pval_generic"] or 0.0))
    loc = best["_loc"]
    flags = [*env.flags, "gw_followup", *loc.flags]
    if len(neutrinos) > 1:
        flags.append("other_coincident_neutrinos")
    others = [{k: v for k, v in n.items() if k != "_loc"} for n in neutrinos if n is not best]
    props: dict[str, Any] = {
        **env.properties, "gw_superevent_id": gw_id, "gw_trigger_time": msg.get("trigger_time"),
        "reference": msg.get("reference"), "pval_generic": msg.get("pval_generic"),
        "pval_bayesian": msg.get("pval_bayesian"),
        "n_events_coincident": msg.get("n_events_coincident"),
        "most_probable_direction": msg.get("most_probable_direction"),
        "neutrino": {k: v for k, v in best.items() if k != "_loc"},
        "other_neutrinos": others,
    }
    return Notice(
        event_id=best["event_id"],
        messenger="neutrino",
        instrument="IceCube",
        notice_type=env.notice_type,
        event_time=env.event_time + timedelta(seconds=best["event_dt"]),
        issued_time=env.issued_time,
        region=loc.region,
        retraction=env.retraction,
        test=env.test,
        properties=props,
        flags=tuple(flags),
        event_class="neutrino.gw_followup",
    )


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one IceCube notice (JSON track alert, LVK track search, AMON VOEvent).

    Mapping: see the module docstring. ``messenger`` ``neutrino``,
    ``instrument`` ``IceCube``; regions are 90 % circles [deg] (ICRS), with a
    map URL where the notice gives one.

    Raises
    ------
    Ignored
        An LVK track search with no coincident neutrino.
    HostileMessage, MalformedMessage
        Oversized, not strict JSON, or not safe well-formed XML.
    MissingField
        No id / run and event, trigger or event time, ``ref_ID``.
    InvalidValue
        Foreign schema or stream, bad id, time, position, error or p-value.
    """
    head = raw[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return _parse_amon(raw, topic)
    msg = load_json(raw, max_bytes=MAX_MESSAGE_BYTES)
    if schema_matches(msg, "/icecube/lvk_nu_track_search") or "coincident_events" in msg:
        return _parse_nu_search(msg, topic)
    if schema_matches(msg, "/icecube/single_neutrino_alerts") or (
            "$schema" not in msg and msg.get("mission") == "IceCube"):
        return _parse_track_alert(msg, topic)
    if "$schema" in msg:
        raise InvalidValue(f"$schema {str(msg['$schema'])[:80]!r} is not an IceCube schema")
    raise MissingField("neither an IceCube $schema nor mission 'IceCube'")
