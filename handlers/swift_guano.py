"""Swift BAT-GUANO and new-style Swift position notices (GCN JSON) → Notice.

BAT-GUANO (``gcn.notices.swift.bat.guano``) is the ground search of BAT event
data around other missions' triggers and sub-threshold BAT triggers. A burst
gets a sequence of notices (``record_number``):

``initial``
    No position: region None, flag ``no_position``.
``update``
    Either an arcminute circle ``ra_dec_error`` [deg] at
    ``containment_probability`` 0.9 with systematics included (about a quarter
    of bursts), or, for poorly localised ones, an inline base64 multi-order map
    ``healpix_file`` → a ``skymap`` region with the FITS bytes (size-capped
    before decoding; the circle, if both are given, goes to properties).
``retraction``
    retraction=True, region None.

Without ``$schema`` (gwcelery's fixtures, schema < 4.0) the instrument field
identifies the notice and ``ra_uncertainty: [r]`` is the circle radius.

The same module reads the proposed new-style Swift BAT/XRT/UVOT position
notices (``swift/{bat,xrt,uvot}/position.schema.json``, unmerged; their
topics are not announced, so none is claimed: map them in the configuration
when they are). The UVOT notice has no trigger time: its event time is
``observation_start`` with the flag ``no_event_time``, so it never revises the
burst's trigger time.

Event id ``Swift-<trigger id>``, the scheme of the Swift VOEvent handler
(``Swift-<TrigID>``), so GUANO, BAT, XRT and UVOT notices of one trigger share
one event. ``classification`` whose most probable class is not ``GRB`` is
flagged ``classification_not_grb``; an XRT ``possible_cosmic_ray`` is flagged.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from mma.errors import InvalidValue, MissingField
from mma.formats.gcn_envelope import envelope, first_id, json_head_matches, number, schema_matches
from mma.formats.gcn_json import load_json
from mma.formats.gcn_localization import localization
from mma.models import Notice

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "swift_guano"
KIND = "notice"
DEFAULT_TOPICS: tuple[str, ...] = ("gcn.notices.swift.bat.guano",)

# Swift launched on 2004-11-20 (GUANO searches BAT data).
FIRST_LIGHT = datetime(2004, 11, 20, tzinfo=UTC)

# GCN Kafka refuses messages above ~4 MiB; a GUANO map is ~1–3 MB of base64.
MAX_MESSAGE_BYTES = 8 * 2**20
MAX_SKYMAP_BYTES = 6 * 2**20
_SNIFF = re.compile(
    rb'"\$schema"\s*:\s*"[^"]*/notices/swift/|"instrument"\s*:\s*"BAT-GUANO"'
)
_SCHEMA_INSTRUMENTS = {
    "/swift/bat/Guano": "BAT-GUANO",
    "/swift/bat/position": "BAT",
    "/swift/xrt/position": "XRT",
    "/swift/uvot/position": "UVOT",
}
_TRIGGER_ID = re.compile(r"\d{1,12}")
# SNR, durations [s], bands [keV], FAR [Hz], classification, the followed-up trigger.
_PROPERTIES = (
    "rate_snr", "rate_duration", "rate_energy_range", "image_snr", "image_duration",
    "image_energy_range", "far", "classification", "follow_up_event", "follow_up_type",
    "data_archive_page", "merit_value", "trigger_index", "energy_flux",
    "possible_cosmic_ray", "mag", "mag_error", "mag_system", "filter",
    "xrt_bat_distance", "uvot_xrt_distance",
)  # fmt: skip


def sniff(raw: bytes) -> bool:
    """True for a JSON object with a Swift ``$schema`` or ``instrument: "BAT-GUANO"``."""
    return json_head_matches(raw, _SNIFF)


def _instrument(msg: dict[str, Any]) -> str:
    """``BAT-GUANO``, ``BAT``, ``XRT`` or ``UVOT`` from ``$schema``, else ``instrument``."""
    if "$schema" in msg:
        for fragment, name in _SCHEMA_INSTRUMENTS.items():
            if schema_matches(msg, fragment):
                return name
        raise InvalidValue(f"$schema {str(msg['$schema'])[:80]!r} is not a Swift "
                           "GUANO/BAT/XRT/UVOT schema")
    if msg.get("instrument") == "BAT-GUANO":
        return "BAT-GUANO"
    raise MissingField("neither a Swift $schema nor instrument 'BAT-GUANO'")


def _classification(value: Any, flags: list[str]) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not value:
        raise InvalidValue("classification must be an object of class → probability")
    probs = {str(k): number(value, k, "classification.") for k in value}
    best = max(probs, key=lambda k: probs[k] or 0.0)
    if best != "GRB":
        flags.append("classification_not_grb")


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one Swift GUANO (or BAT/XRT/UVOT position) JSON notice to a Notice.

    Mapping: ``event_id`` ← ``Swift-<id>``; ``messenger`` ``grb``;
    ``instrument`` ``Swift-BAT-GUANO`` (or ``Swift-BAT``/``-XRT``/``-UVOT``);
    ``notice_type`` ← ``alert_type``; ``event_time`` ← ``trigger_time``;
    ``issued_time`` ← ``alert_datetime``; region ← ``healpix_file`` map,
    else the circle at its ``containment_probability``.

    Raises
    ------
    HostileMessage
        Message or ``healpix_file`` over its cap (refused before decoding).
    MalformedMessage
        Not strict JSON; ``healpix_file`` not base64.
    MissingField
        No ``id`` or trigger time; not a Swift notice.
    InvalidValue
        Bad id, time, position, error or classification.
    BadSkymap
        ``healpix_file`` decodes to something other than FITS.
    """
    msg = load_json(raw, max_bytes=MAX_MESSAGE_BYTES)
    instrument = _instrument(msg)
    flags: list[str] = []
    time_key = "trigger_time"
    if msg.get("trigger_time") is None and msg.get("observation_start") is not None:
        time_key = "observation_start"  # UVOT: its exposure start, not the trigger
        flags.append("no_event_time")
    env = envelope(msg, topic=topic, default_type="alert", time_key=time_key)
    flags[:0] = env.flags
    trigger_id = first_id(msg)
    if trigger_id is None:
        raise MissingField("id is missing")
    if not _TRIGGER_ID.fullmatch(trigger_id):
        raise InvalidValue(f"id {trigger_id[:40]!r} is not a Swift trigger number")
    for key in ("far", "rate_snr", "image_snr"):
        number(msg, key)
    _classification(msg.get("classification"), flags)
    if msg.get("possible_cosmic_ray") is True:
        flags.append("possible_cosmic_ray")
    props: dict[str, Any] = {**env.properties, "trigger_id": trigger_id}
    props.update({key: msg.get(key) for key in _PROPERTIES if key in msg})
    region = None
    if not env.retraction:
        loc = localization(msg, max_skymap_bytes=MAX_SKYMAP_BYTES)
        region = loc.region
        flags.extend(loc.flags)
        props["localization"] = loc.properties
    return Notice(
        event_id=f"Swift-{trigger_id}",
        messenger="grb",
        instrument=f"Swift-{instrument}",
        notice_type=env.notice_type,
        event_time=env.event_time,
        issued_time=env.issued_time,
        region=region,
        retraction=env.retraction,
        test=env.test,
        properties=props,
        flags=tuple(flags),
        event_class="grb",
    )
