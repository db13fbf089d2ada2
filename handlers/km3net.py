"""KM3NeT neutrino alerts (GCN Kafka ``gcn.notices.km3net.alert``, JSON) → Notice.

KM3NeT (ARCA/ORCA) sends two kinds of alert through one schema
(``km3net/alert.schema.json``; the topic is still onboarding):

- single high-energy events (``pipeline`` ``*_HE``, ``number_of_events`` 1);
- multiplets (``alert_topology`` ``Multiplet``): several neutrinos close in
  time and direction, listed in ``event_details`` with their own circles.

The region is the alert's combined circle ``ra_dec_error`` [deg], a 90 %
radius per the mission page but with no ``containment_probability`` in the
notice, so the GCN default 0.9 applies (flag ``containment_default_0.9``);
``src_error_50`` (the 50 % radius) and every event of ``event_details`` are
properties. ``healpix_url`` becomes ``skymap_url`` only when it names a FITS
file; the examples' portal URL does not (flag ``healpix_url_not_fits``).
A multiplet is flagged ``multiplet``; ``potential_counterpart`` true is flagged
``potential_counterpart`` with ``counterpart_info`` kept.

Event id ``KM3NeT-<id>``; the KM3NeT name (``KM3-240901A``) is an alias.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from mma.errors import InvalidValue, MissingField
from mma.formats.gcn_envelope import (
    envelope,
    first_id,
    json_head_matches,
    names,
    number,
    schema_matches,
    utc_time,
)
from mma.formats.gcn_json import load_json
from mma.formats.gcn_localization import localization
from mma.models import Notice

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "km3net"
KIND = "notice"
# None: gcn.notices.km3net.alert is not public (claim it in the configuration once it is).
DEFAULT_TOPICS: tuple[str, ...] = ()

# The first KM3NeT detection unit (ARCA) was deployed in December 2015.
FIRST_LIGHT = datetime(2015, 12, 1, tzinfo=UTC)

MAX_MESSAGE_BYTES = 8 * 2**20
MAX_SKYMAP_BYTES = 6 * 2**20
MAX_EVENTS = 1000  # a multiplet is a handful of neutrinos; more is a crafted message
_SNIFF = re.compile(rb'"\$schema"\s*:\s*"[^"]*/notices/km3net/')
_KM3_NAME = re.compile(r"KM3-\d{6}[A-Z]{1,2}")
# FAR [Hz], topology, pipeline, 50 % radius [deg], free text.
_PROPERTIES = (
    "pipeline", "far", "alert_topology", "number_of_events", "src_error_50",
    "additional_info", "potential_counterpart", "counterpart_info",
)  # fmt: skip


def sniff(raw: bytes) -> bool:
    """True for a JSON object whose ``$schema`` is a KM3NeT schema."""
    return json_head_matches(raw, _SNIFF)


def _events(value: Any) -> list[dict[str, Any]]:
    """``event_details``, checked: each neutrino's id, time [UTC], position and error [deg]."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_EVENTS:
        raise InvalidValue(f"event_details must be a list of at most {MAX_EVENTS} events")
    out = []
    for i, item in enumerate(value):
        where = f"event_details[{i}]."
        if not isinstance(item, dict):
            raise InvalidValue(f"event_details[{i}] is not an object")
        loc = localization(item, max_skymap_bytes=0, where=where)
        time = utc_time(item.get("trigger_time"), f"{where}trigger_time")[0] \
            if item.get("trigger_time") is not None else None
        out.append({
            "id": names(item.get("id"), f"{where}id")[0] if item.get("id") else None,
            "trigger_time": time.isoformat() if time else None,
            "ra": loc.properties["ra"], "dec": loc.properties["dec"],
            "ra_dec_error": item.get("ra_dec_error"),
            "energy_measured": number(item, "energy_measured", where),
            "prob_evt_topology": item.get("prob_evt_topology"),
            "cos_zenith": number(item, "cos_zenith", where),
        })
    return out


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one KM3NeT JSON alert (single event or multiplet) to a Notice.

    Mapping: ``event_id`` ← ``KM3NeT-<id>``; ``aliases`` ← ``event_name``;
    ``messenger`` ``neutrino``; ``instrument`` ``KM3NeT-<detector>``;
    ``notice_type`` ← ``alert_type``; ``event_time`` ← ``trigger_time``;
    ``issued_time`` ← ``alert_datetime``; region ← circle at 0.9.

    Raises
    ------
    HostileMessage, MalformedMessage
        Oversized or not strict JSON.
    MissingField
        No ``id`` or ``trigger_time``.
    InvalidValue
        Foreign ``$schema``, bad time, position, error or ``event_details``.
    """
    msg = load_json(raw, max_bytes=MAX_MESSAGE_BYTES)
    if "$schema" in msg and not schema_matches(msg, "/notices/km3net/"):
        raise InvalidValue(f"$schema {str(msg['$schema'])[:80]!r} is not a KM3NeT schema")
    if "$schema" not in msg and msg.get("mission") != "KM3NeT":
        raise MissingField("neither a KM3NeT $schema nor mission 'KM3NeT'")
    env = envelope(msg, topic=topic, default_type="alert")
    alert_id = first_id(msg)
    if alert_id is None:
        raise MissingField("id is missing")
    detector = msg.get("instrument")
    if detector is not None and (not isinstance(detector, str) or not detector.isalnum()):
        raise InvalidValue(f"instrument {str(detector)[:30]!r} is not a detector name")
    for key in ("far", "src_error_50"):
        number(msg, key)
    event_names = names(msg.get("event_name"), "event_name")
    flags = list(env.flags)
    props: dict[str, Any] = {**env.properties, "alert_id": alert_id, "detector": detector,
                             "event_name": list(event_names) or None}
    props.update({key: msg.get(key) for key in _PROPERTIES})
    props["event_details"] = _events(msg.get("event_details"))
    if msg.get("alert_topology") == "Multiplet" or len(props["event_details"]) > 1:
        flags.append("multiplet")
    if msg.get("potential_counterpart") is True:
        flags.append("potential_counterpart")
    region = None
    if not env.retraction:
        loc = localization(msg, max_skymap_bytes=MAX_SKYMAP_BYTES)
        region = loc.region
        flags.extend(loc.flags)
        props["localization"] = loc.properties
    return Notice(
        event_id=f"KM3NeT-{alert_id}",
        messenger="neutrino",
        instrument=f"KM3NeT-{detector}" if detector else "KM3NeT",
        notice_type=env.notice_type,
        event_time=env.event_time,
        issued_time=env.issued_time,
        region=region,
        retraction=env.retraction,
        test=env.test,
        aliases=tuple(n for n in event_names if _KM3_NAME.fullmatch(n)),
        properties=props,
        flags=tuple(flags),
        event_class="neutrino.track",
    )
