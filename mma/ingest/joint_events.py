"""Joint events: optical matching on the combined region of an event x event coincidence.

A pair whose two events both have a region (:mod:`mma.match.pairs`) gets an
event of its own, ``<first>+<second>`` (instrument ``joint``, the first event's
messenger, class, time and window), whose region is the normalised product of
the two, or LVK's own combined sky map when its notice carried one (kind
``lvk_combined``, which the product never replaces). Optical candidates are
scored against it like any event's, and their records carry the pair's joint
FARs (``joint``). When either event gets a new region the product is stored
again, as a newer version; when the pair is withdrawn the joint event is
retracted with its candidates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row

from mma.db import pairs, store
from mma.ingest.stage import Stage
from mma.match import joint
from mma.match.pairs import JOINT, joint_event_id, ordered, pair_id
from mma.models import Notice, StoredEvent
from mma.skymaps.region import Region

log = logging.getLogger(__name__)

LVK_COMBINED = "lvk_combined"  # regions.kind (and a flag) of LVK's combined sky map
# Notice types of joint events' notices: LVK's map outranks mma's product of one instant.
LVK_COMBINED_TYPE = "LVK_COMBINED"

Place = Callable[[Stage, Connection, store.StoredNotice, Region, str, str, datetime],
                 set[str]]
"""Stores a region of an event and matches it (:func:`mma.ingest.notices.store_region`)."""


def is_joint(event: StoredEvent) -> bool:
    """A joint event (never paired nor merged itself)."""
    return event.instrument == JOINT


def sync_joint_events(stage: Stage, conn: Connection, event_pk: int, now: datetime,
                      place: Place) -> set[str]:
    """Bring the joint events of *event_pk*'s pairs up to date; the candidates published."""
    touched: set[str] = set()
    for row in pairs.pairs_of(conn, event_pk):
        name = row.payload.get("joint_event_id")
        if row.status != "retracted" and name:
            touched |= _refresh(stage, conn, row, name, now, place)
        else:  # withdrawn, or its maps no longer agree: so is its joint event, if any
            first = store.load_event(conn, row.event_pk)
            second = store.load_event(conn, row.other_event_pk)
            touched |= _retract(stage, conn, joint_event_id(first, second))
    return touched


def _refresh(stage: Stage, conn: Connection, row: Row[Any], name: str, now: datetime,
             place: Place) -> set[str]:
    """Store the pair's product region on its joint event if the inputs changed."""
    a = stage.correlator.active.get(row.event_pk)
    b = stage.correlator.active.get(row.other_event_pk)
    if a is None or b is None:
        return set()
    sources = [a.region_pk, b.region_pk]
    known = store.find_event(conn, [name])
    if known is not None:
        held = store.load_event(conn, known)
        if held.status == "retracted" or (held.properties.get(JOINT) or {}).get(
                "region_pks") == sources or LVK_COMBINED in held.flags:
            return set()
    product = joint.product_region(a.region, b.region)
    if product is None:
        return set()
    record = row.payload
    facts = {"pair_id": row.coincidence_id, "other_event_id": record["other"]["event_id"],
             "overlap_integral": record.get("overlap_integral"),
             "temporal_far_hz": record.get("temporal_far_hz"),
             "space_time_far_hz": record.get("space_time_far_hz"), "region_pks": sources}
    first = a.event
    notice = Notice(event_id=name, messenger=first.messenger,  # type: ignore[arg-type]
                    instrument=JOINT, notice_type="JOINT", event_time=first.event_time,
                    issued_time=now, test=first.test, event_class=first.event_class,
                    properties={**first.properties, JOINT: facts},
                    flags=(*first.flags, JOINT))
    raw = json.dumps({"joint_event_id": name, **facts}, sort_keys=True).encode()
    origin = f"pair {row.coincidence_id}"
    stored = store.add_notice(conn, notice, raw, handler=JOINT, origin=origin)
    if not stored.is_new or stored.inert:
        return set()
    log.info("event %s: joint region of %s and %s (v%d, v%d)", name, first.event_id,
             b.event.event_id, a.version, b.version)
    return place(stage, conn, stored, product, JOINT, origin, now)


def _retract(stage: Stage, conn: Connection, name: str) -> set[str]:
    """Retract the joint event of a withdrawn pair, with its candidates."""
    known = store.find_event(conn, [name])
    if known is None or store.lock_event(conn, known) == "retracted":
        return set()
    ledger = stage.correlator.ledger()
    stage.correlator.retract(conn, ledger, known)
    touched = stage.finish(conn, ledger, {known})
    log.warning("event %s: retracted with its pair; %d candidates withdrawn", name,
                len(touched))
    return touched


def store_lvk_combined(stage: Stage, conn: Connection, event_pk: int, notice: Notice,
                       region: Region, now: datetime, place: Place) -> set[str]:
    """Make LVK's combined sky map (RAVEN's, in the GW notice) the region of the joint
    event of the GW and the external event it names, if mma knows that event.

    The LVK's own joint FARs travel with it; mma's product of the two regions no
    longer replaces it. Returns the candidates published.
    """
    other_pk = store.find_event(conn, notice.joint_with)
    if other_pk is None:
        log.info("event %s: LVK's combined map with %s not used: that event is not known",
                 notice.event_id, ", ".join(notice.joint_with))
        return set()
    first, second = ordered(store.load_event(conn, event_pk), store.load_event(conn, other_pk))
    if first.test != second.test:
        return set()
    coinc = notice.properties.get("external_coinc") or {}
    facts = {"pair_id": pair_id(first, second), "other_event_id": second.event_id,
             "overlap_integral": None, "source": "LVK RAVEN combined sky map",
             "temporal_far_hz": coinc.get("time_coincidence_far"),
             "space_time_far_hz": coinc.get("time_sky_position_coincidence_far")}
    name = joint_event_id(first, second)
    joint_notice = Notice(
        event_id=name, messenger=first.messenger,  # type: ignore[arg-type]
        instrument=JOINT, notice_type=LVK_COMBINED_TYPE, event_time=first.event_time,
        # The same clock as mma's product (issued_time=now): at one instant LVK's map
        # outranks the product by its notice type (mma.lifecycle).
        issued_time=now, test=first.test, event_class=first.event_class,
        properties={**first.properties, JOINT: facts},
        flags=(*first.flags, JOINT, LVK_COMBINED))
    raw = json.dumps({"joint_event_id": name, "lvk_notice": notice.notice_type,
                      "issued": notice.issued_time.isoformat(), **facts},
                     sort_keys=True, default=str).encode()
    origin = f"{notice.event_id} external_coinc"
    stored = store.add_notice(conn, joint_notice, raw, handler=JOINT, origin=origin)
    if not stored.is_new or stored.inert:
        return set()
    log.info("event %s: LVK's combined sky map of %s and %s is its region", name,
             first.event_id, second.event_id)
    return place(stage, conn, stored, region, LVK_COMBINED, origin, now)
