"""Fermi LAT JSON notices (GCN Kafka ``gcn.notices.fermi.lat.*``) → Notice, or Ignored.

Two kinds of LAT JSON exist or are announced (both feature-flagged
off on the public site):

``fermi/lat/flare.schema.json`` — Flare Advocate notices
    A catalogued extragalactic source (4FGL) brightened by ``flux_ratio`` ≥ 10
    with TS > 30 over a one-day ``observation_start``–``observation_stop``
    window. A blazar flare has no trigger, no error region (the position is the
    catalogue position) and recurs; matching optical alerts of a known AGN
    against it would only rediscover the AGN. These raise
    :class:`~mma.errors.Ignored` naming the source, flux ratio and TS, so they
    are counted, not dead-lettered.
LAT GRB localisations
    LAT's GRB notices are still GCN Classic (``FERMI_LAT_POS_*`` VOEvents, read
    by the Fermi VOEvent handler). A JSON LAT notice with a ``trigger_time`` and
    a position is read with the GCN core fields: event id
    ``FermiLAT-<id>``, messenger ``grb``, circle ``ra_dec_error`` [deg] at
    ``containment_probability`` (LAT's classic radii are 90 % statistical;
    without the field the core default 0.9 applies, flagged). GRB names in
    ``event_name`` are aliases.
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
from mma.formats.notice_fields import grb_aliases
from mma.models import Notice

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "fermi_lat"
KIND = "notice"
DEFAULT_TOPICS: tuple[str, ...] = ("gcn.notices.fermi.lat.flare",)

# Fermi launched on 2008-06-11.
FIRST_LIGHT = datetime(2008, 6, 11, tzinfo=UTC)

MAX_MESSAGE_BYTES = 8 * 2**20
MAX_SKYMAP_BYTES = 6 * 2**20
_SNIFF = re.compile(rb'"\$schema"\s*:\s*"[^"]*/notices/fermi/lat/')
_PROPERTIES = ("flux", "flux_error", "flux_unit", "TS", "far", "additional_info")


def sniff(raw: bytes) -> bool:
    """True for a JSON object whose ``$schema`` is a Fermi LAT schema."""
    return json_head_matches(raw, _SNIFF)


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
    """Decode one Fermi LAT JSON notice: a GRB position → Notice; a flare → Ignored.

    Raises
    ------
    Ignored
        A Flare Advocate notice (valid, of no interest to mma).
    HostileMessage, MalformedMessage
        Oversized or not strict JSON.
    MissingField
        Not a LAT notice; a GRB notice without ``id`` or ``trigger_time``.
    InvalidValue
        Foreign ``$schema``; bad time, position or error.
    """
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
