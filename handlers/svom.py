"""SVOM ECLAIRs and GRM triggers (GCN JSON, ``svom/trigger.schema.json``) → Notice.

SVOM's live notices are VOEvents on ``gcn.notices.svom.voevent.*``; the JSON
stream (``gcn.notices.svom``) is documented but not public yet.
This handler reads the JSON schema examples and gwcelery's wakeup fixture,
which uses the pre-4.0 localisation fields (``uncertainty_shape: "circle"``,
``ra_uncertainty: [r]``; flag ``legacy_uncertainty_fields``).

Every SVOM JSON example so far has ``alert_tense: "test"`` (→ test=True, flag
``alert_tense_test``) and times without a ``Z`` (read as UTC, flag
``naive_time_assumed_utc``). The error circle is ECLAIRs' (≈10′, stat+sys) or
GRM's rough one; no ``containment_probability`` → 0.9, flagged.

Event id ``SVOM-<burst id>`` (``SVOM-sb24022203``), shared by ECLAIRs and GRM
notices of one burst; GRB names in ``event_name`` are aliases, other names
(``M1``) stay in properties. ``slew_status`` (``accepted``/``rejected``...) and
the trigger statistics are properties.
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
from mma.formats.notice_fields import grb_aliases
from mma.models import Notice

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "svom"
KIND = "notice"
# Not public as of 2026-08 (live SVOM notices are the VOEvents of svom_voevent):
# kept for replays of files, subscribed to by no default.
DEFAULT_TOPICS: tuple[str, ...] = ()

# SVOM launched on 2024-06-22, but the schema's examples (and gwcelery's fixture)
# are ground-segment tests dated 2024-02-22: the start of 2024 keeps them valid.
FIRST_LIGHT = datetime(2024, 1, 1, tzinfo=UTC)

MAX_MESSAGE_BYTES = 8 * 2**20
MAX_SKYMAP_BYTES = 6 * 2**20
INSTRUMENTS = frozenset({"ECLAIRs", "GRM"})
_SNIFF = re.compile(rb'"\$schema"\s*:\s*"[^"]*/notices/svom/')
# SNR, durations [s], bands [keV], trigger type, slew decision, GRM detectors.
_PROPERTIES = (
    "notice_level", "image_snr", "image_duration", "image_energy_range", "rate_snr",
    "rate_duration", "rate_energy_range", "trigger_type", "slew_status", "triggered_GRDs",
    "p_astro", "additional_info", "data_archive_page",
)  # fmt: skip


def sniff(raw: bytes) -> bool:
    """True for a JSON object whose ``$schema`` is an SVOM schema."""
    return json_head_matches(raw, _SNIFF)


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one SVOM ECLAIRs/GRM JSON trigger notice to a Notice.

    Mapping: ``event_id`` ← ``SVOM-<id>``; ``messenger`` ``grb``;
    ``instrument`` ``SVOM-ECLAIRs`` or ``SVOM-GRM``; ``notice_type`` ←
    ``alert_type``; ``event_time`` ← ``trigger_time``; ``issued_time`` ←
    ``alert_datetime``; region ← circle [deg] at 0.9 unless stated.

    Raises
    ------
    HostileMessage, MalformedMessage
        Oversized or not strict JSON.
    MissingField
        No ``id``, ``instrument`` or ``trigger_time``.
    InvalidValue
        Foreign ``$schema``, unknown instrument, bad time, position or error.
    """
    msg = load_json(raw, max_bytes=MAX_MESSAGE_BYTES)
    if "$schema" in msg and not schema_matches(msg, "/notices/svom/"):
        raise InvalidValue(f"$schema {str(msg['$schema'])[:80]!r} is not an SVOM schema")
    instrument = msg.get("instrument")
    if instrument is None:
        raise MissingField("instrument is missing (ECLAIRs or GRM)")
    if instrument not in INSTRUMENTS:
        raise InvalidValue(f"instrument {str(instrument)[:30]!r} is not one of "
                           f"{sorted(INSTRUMENTS)}")
    env = envelope(msg, topic=topic, default_type="alert")
    burst_id = first_id(msg)
    if burst_id is None:
        raise MissingField("id is missing")
    flags = list(env.flags)
    event_names = names(msg.get("event_name"), "event_name")
    for key in ("image_snr", "rate_snr", "p_astro"):
        number(msg, key)
    props: dict[str, Any] = {**env.properties, "burst_id": burst_id,
                             "event_name": list(event_names) or None}
    props.update({key: msg.get(key) for key in _PROPERTIES})
    if msg.get("slew_status") == "rejected":
        flags.append("slew_rejected")  # no MXT/VT follow-up: the ECLAIRs circle stays final
    region = None
    if not env.retraction:
        loc = localization(msg, max_skymap_bytes=MAX_SKYMAP_BYTES)
        region = loc.region
        flags.extend(loc.flags)
        props["localization"] = loc.properties
    return Notice(
        event_id=f"SVOM-{burst_id}",
        messenger="grb",
        instrument=f"SVOM-{instrument}",
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
