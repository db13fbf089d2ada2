"""MAXI GSC notices (GCN Kafka ``gcn.notices.maxi.gsc.{known,unknown}``, JSON) → Notice.

MAXI's Gas Slit Camera on the ISS reports X-ray flares about 200 minutes after
they happen: ``gsc.known`` for catalogued sources, ``gsc.unknown`` for new
transients. An unknown-source notice localises in one of four ways, all at
``containment_probability`` (0.9 in the examples, stat only when
``systematic_included`` is false):

- no error at all (an early ``initial``): region None, flag ``no_error_region``;
- a circle or an ellipse ``[a, b, PA]`` in ``ra_dec_error`` [deg];
- ``rectangular_error_corners``, four [RA, Dec] corners of a tilted box, kept
  in properties and used as the ellipse of equal area and orientation (flag
  ``rectangle_as_ellipse``): :class:`~mma.models.RegionSpec` boxes are
  RA/Dec-aligned, MAXI's are not.

A known-source notice gives the catalogue position without an error: region
None, flag ``known_source``. Its ``event_name`` is the *source* name (``Swift
J1858.6-0814``), kept as ``source_name`` and never an alias (an alias would merge
every flare of the source into one event); GRB names (``GRB 230220A``) in an
unknown-source notice are aliases. ``retraction`` → retraction=True, region None.

Event id ``MAXI-<id>`` (``MAXI-9995289617``).
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

NAME = "maxi"
KIND = "notice"
DEFAULT_TOPICS: tuple[str, ...] = ("gcn.notices.maxi.gsc.known", "gcn.notices.maxi.gsc.unknown")

# MAXI went to the ISS with STS-127, launched on 2009-07-15.
FIRST_LIGHT = datetime(2009, 7, 15, tzinfo=UTC)

MAX_MESSAGE_BYTES = 8 * 2**20
MAX_SKYMAP_BYTES = 6 * 2**20
_SNIFF = re.compile(rb'"\$schema"\s*:\s*"[^"]*/notices/maxi/')
# Fluxes [erg cm^-2 s^-1] in flux_spectral_band [keV], timescale, Galactic coordinates.
_PROPERTIES = (
    "flux", "flux_error", "flux_spectral_band", "flux_spectral_unit", "detection_timescale",
    "detection_timescale_units", "band_flux_low", "band_flux_med", "band_flux_high",
    "latitude", "longitude",
)  # fmt: skip


def sniff(raw: bytes) -> bool:
    """True for a JSON object whose ``$schema`` is a MAXI schema."""
    return json_head_matches(raw, _SNIFF)


def _source_class(msg: dict[str, Any]) -> str:
    """``known`` or ``unknown`` from ``$schema`` (else the topic cannot tell)."""
    if schema_matches(msg, "/maxi/gsc.known"):
        return "known"
    if schema_matches(msg, "/maxi/gsc.unknown"):
        return "unknown"
    if "$schema" in msg:
        raise InvalidValue(f"$schema {str(msg['$schema'])[:80]!r} is not a MAXI GSC schema")
    raise MissingField("$schema is missing: cannot tell a MAXI known from an unknown source")


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one MAXI GSC JSON notice to a Notice.

    Mapping: ``event_id`` ← ``MAXI-<id>``; ``messenger`` ``xray``;
    ``instrument`` ``MAXI-GSC``; ``notice_type`` ← ``alert_type``;
    ``event_time`` ← ``trigger_time``; ``issued_time`` ← ``alert_datetime``;
    properties ← fluxes, band, timescale, ``source_class`` (known/unknown).

    Raises
    ------
    HostileMessage, MalformedMessage
        Oversized or not strict JSON.
    MissingField
        No ``id``, ``trigger_time`` or ``$schema``; one coordinate without the other.
    InvalidValue
        Bad time, position, error (b > a, non-positive), containment outside (0, 1),
        corners that do not make a rectangle.
    """
    msg = load_json(raw, max_bytes=MAX_MESSAGE_BYTES)
    source_class = _source_class(msg)
    env = envelope(msg, topic=topic, default_type="alert")
    trigger_id = first_id(msg)
    if trigger_id is None:
        raise MissingField("id is missing")
    flags = list(env.flags)
    event_names = names(msg.get("event_name"), "event_name")
    props: dict[str, Any] = {**env.properties, "source_class": source_class,
                             "trigger_id": trigger_id}
    for key in ("flux", "flux_error", "latitude", "longitude"):
        number(msg, key)
    props.update({key: msg.get(key) for key in _PROPERTIES})
    if source_class == "known":
        aliases: tuple[str, ...] = ()
        props["source_name"] = event_names[0] if event_names else None
        flags.append("known_source")
    else:
        aliases = grb_aliases(event_names)
        props["event_name"] = list(event_names) or None
    region = None
    if not env.retraction:
        loc = localization(msg, max_skymap_bytes=MAX_SKYMAP_BYTES)
        region = loc.region
        flags.extend(loc.flags)
        props["localization"] = loc.properties
    return Notice(
        event_id=f"MAXI-{trigger_id}",
        messenger="xray",
        instrument="MAXI-GSC",
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
