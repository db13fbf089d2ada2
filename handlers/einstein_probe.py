"""Einstein Probe WXT alerts (GCN Kafka ``gcn.notices.einstein_probe.wxt.alert``, JSON) → Notice.

The Wide-field X-ray Telescope (0.5–4 keV) reports fast X-ray transients about a
minute after the trigger: one notice per transient with a circle
``ra_dec_error`` of a few arcminutes. The schema has no
``containment_probability``, so the GCN core default of 0.9 applies (flag
``containment_default_0.9``). The notices carry no creation time either: the
issue time is the trigger time (flag ``no_issued_time``).

Event id ``EP-<id>`` from the notice's ``id`` (``01709015181``); EP names
(``EP240508a``) in ``event_name``, when present, become aliases. A notice
without an ``id`` (SkyPortal's copy of the EP240508a alert) gets
``EP-<trigger time as YYYYMMDDTHHMMSSmmm>`` and the flag ``no_trigger_id``: two
copies of one alert still land on the same event.
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
)
from mma.formats.gcn_json import load_json
from mma.formats.gcn_localization import localization
from mma.models import Notice

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "einstein_probe"
KIND = "notice"
DEFAULT_TOPICS: tuple[str, ...] = ("gcn.notices.einstein_probe.wxt.alert",)

# Einstein Probe launched on 2024-01-09.
FIRST_LIGHT = datetime(2024, 1, 9, tzinfo=UTC)

MAX_MESSAGE_BYTES = 8 * 2**20  # alerts are < 1 kB; the cap guards against floods
MAX_SKYMAP_BYTES = 6 * 2**20
_SCHEMA = "/notices/einstein_probe/"
_SNIFF = re.compile(rb'"\$schema"\s*:\s*"[^"]*/notices/einstein_probe/')
_EP_NAME = re.compile(r"EP\d{6}[a-z]{1,3}")
# Kept verbatim: count rates [counts/s], SNR, band [keV].
_PROPERTIES = ("net_count_rate", "image_snr", "image_energy_range", "additional_info")


def sniff(raw: bytes) -> bool:
    """True for a JSON object whose ``$schema`` is an Einstein Probe schema."""
    return json_head_matches(raw, _SNIFF)


def _check_kind(msg: dict[str, Any]) -> None:
    if "$schema" in msg:
        if not schema_matches(msg, _SCHEMA):
            raise InvalidValue(f"$schema {str(msg['$schema'])[:80]!r} is not an Einstein Probe "
                               "schema")
    elif msg.get("instrument") != "WXT":
        raise MissingField("neither an Einstein Probe $schema nor instrument 'WXT'")


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one Einstein Probe WXT JSON alert to a Notice.

    Mapping: ``event_id`` ← ``EP-<id>``; ``aliases`` ← EP names in
    ``event_name``; ``messenger`` ``xray``; ``instrument`` ``EP-WXT``;
    ``event_time`` ← ``trigger_time``; region ← circle ``ra_dec_error`` [deg]
    at ``containment_probability`` (0.9 when absent).

    Raises
    ------
    HostileMessage, MalformedMessage
        Oversized or not strict JSON.
    MissingField
        No ``trigger_time``; not an EP notice.
    InvalidValue
        Bad time, position outside the sphere, non-positive error, containment
        outside (0, 1), foreign ``$schema``.
    """
    msg = load_json(raw, max_bytes=MAX_MESSAGE_BYTES)
    _check_kind(msg)
    env = envelope(msg, topic=topic, default_type="alert")
    flags = list(env.flags)
    trigger_id = first_id(msg)
    if trigger_id is None:
        ms = env.event_time.microsecond // 1000
        trigger_id = f"{env.event_time:%Y%m%dT%H%M%S}{ms:03d}"
        flags.append("no_trigger_id")
    event_names = names(msg.get("event_name"), "event_name")
    aliases = tuple(n for n in event_names if _EP_NAME.fullmatch(n))
    props: dict[str, Any] = {**env.properties, "trigger_id": trigger_id,
                             "event_name": list(event_names) or None}
    props.update({key: msg.get(key) for key in _PROPERTIES})
    number(msg, "net_count_rate")
    number(msg, "image_snr")
    region = None
    if not env.retraction:
        loc = localization(msg, max_skymap_bytes=MAX_SKYMAP_BYTES)
        region = loc.region
        flags.extend(loc.flags)
        props["localization"] = loc.properties
    return Notice(
        event_id=f"EP-{trigger_id}",
        messenger="xray",
        instrument="EP-WXT",
        notice_type=env.notice_type,
        event_time=env.event_time,
        issued_time=env.issued_time,
        region=region,
        retraction=env.retraction,
        test=env.test,
        aliases=aliases,
        properties=props,
        flags=tuple(flags),
        event_class="xray",
    )
