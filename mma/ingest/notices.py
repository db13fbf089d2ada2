"""The notice path: a notice, its event, its region in notice order, its retraction.

Regions are built before the transaction opens (CPU-heavy); the notice, its
region and the candidates it causes then commit together. Every daemon reads
every notice: one stored by another daemon first is a duplicate here, whose
region or retraction is taken into the index from the database.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Connection

from mma.db import locks, region_store, store
from mma.errors import BadMessage, TransientError
from mma.ingest.bursts import BurstRules, burst_of, combined_region
from mma.ingest.joint_events import is_joint, store_lvk_combined, sync_joint_events
from mma.ingest.stage import Handler, Outcome, Stage
from mma.match.pairs import PairRules, pair_event
from mma.match.revisions import Ledger
from mma.models import Notice, RegionSpec, StoredEvent
from mma.skymaps.region import Region, build_region
from mma.skymaps.spec import region_table
from mma.watch import window_days

log = logging.getLogger(__name__)

#: Flag of a notice that only adds to an event already known under one of its names
#: (a GCN circular's aliases or retraction); one naming no known event is dropped.
ATTACH_ONLY = "attach_only"


def region_of(stage: Stage, spec: RegionSpec, skymap: bytes | None = None) -> Region | None:
    """Build a region (CPU-heavy: done before a transaction opens).

    None when the spec is a map URL only and *skymap* (fetched bytes) is None.
    """
    table = region_table(spec, max_bytes=stage.max_skymap_bytes, skymap=skymap,
                         max_tiles=stage.max_region_tiles)
    return None if table is None else build_region(table, max_tiles=stage.max_region_tiles)


def store_notice(stage: Stage, handler: Handler, notice: Notice, raw: bytes, origin: str,
            now: datetime) -> Outcome:
    # Every daemon reads every notice; another one sharing the database may have
    # stored it first, with its region or retraction: take those into the index
    # from the database, without decoding the map again.
    with stage.engine.connect() as conn:
        if store.notice_stored(conn, raw):
            return _duplicate(stage, conn, notice, origin)
        if ATTACH_ONLY in notice.flags and store.find_event(
                conn, (notice.event_id, *notice.aliases)) is None:
            # A circular about an event mma never heard of: nothing to attach to, and
            # a circular alone (no time, no region) makes no event worth keeping.
            log.info("%s: %s %s names no known event (%s): not stored", origin,
                     notice.instrument, notice.notice_type,
                     ", ".join((notice.event_id, *notice.aliases))[:200])
            return Outcome("ignored")
    spec = None if notice.retraction else notice.region
    region = None if spec is None else region_of(stage, spec)
    combined = (None if notice.retraction or notice.joint_region is None
                else region_of(stage, notice.joint_region))
    with stage.engine.begin() as conn:
        locks.hold_regions(conn)  # a notice may change the active regions: see mma.db.locks
        burst = None
        if store.find_event(conn, (notice.event_id, *notice.aliases)) is None:
            stage.correlator.sync_active(conn)
            burst = burst_of(conn, BurstRules.of(stage.config), notice, handler.NAME, region,
                             stage.correlator.active)
        stored = store.add_notice(conn, notice, raw, handler=handler.NAME, origin=origin,
                                  burst_of=burst)
        if not stored.is_new:  # stored meanwhile
            return _duplicate(stage, conn, notice, origin)
        if notice.retraction:
            ledger = stage.correlator.ledger()
            stage.correlator.retract(conn, ledger, stored.event_pk)
            joined = pair_with_others(stage, conn, ledger, stored.event_pk, now)
            touched = stage.finish(conn, ledger, {stored.event_pk}) | joined
            log.warning("event %s: retracted by %s; %d candidates withdrawn",
                        notice.event_id, origin, len(touched))
            return Outcome("notice", touched)
        if stored.inert:
            log.warning("event %s: %s %s from %s came after its retraction: stored, "
                        "flagged after_retraction, no region activated", notice.event_id,
                        notice.instrument, notice.notice_type, origin)
            if region is not None and spec is not None:
                store_region(stage, conn, stored, region, spec.kind, origin, now,
                                   retracted=True)
            return Outcome("notice")
        if region is not None and spec is not None:
            touched = store_region(stage, conn, stored, region, spec.kind, origin, now)
        else:  # a time-only notice: the event may still pair with others on time
            ledger = stage.correlator.ledger()
            joined = pair_with_others(stage, conn, ledger, stored.event_pk, now)
            touched = stage.finish(conn, ledger, {stored.event_pk}) | joined
        if combined is not None:
            touched |= store_lvk_combined(stage, conn, stored.event_pk, notice, combined, now,
                                          store_region)
    if spec is not None and spec.skymap_url and spec.skymap is None:
        touched |= _upgrade(stage, stored, notice, spec, now)
    return Outcome("notice", touched)

def _duplicate(stage: Stage, conn: Connection, notice: Notice, origin: str) -> Outcome:
    stage.correlator.sync_active(conn)
    log.info("%s: notice for %s already stored", origin, notice.event_id)
    return Outcome("duplicate")

def store_region(stage: Stage, conn: Connection, stored: store.StoredNotice, region: Region,
                 kind: str, origin: str, now: datetime,
                 retracted: bool = False) -> set[str]:
    """Store *region* in notice order; if it is the newest (and the event not
    retracted), match it against the stored objects. An event of several
    missions then gets their combined region (:mod:`mma.ingest.bursts`).
    Returns the candidates published."""
    event = store.load_event(conn, stored.event_pk)
    ledger = stage.correlator.ledger()
    placed = _place(stage, conn, ledger, event, stored.notice_pk, region, kind, now, retracted)
    if not retracted:
        combined = combined_region(conn, event)
        if combined is not None:
            placed = _place(stage, conn, ledger, event, combined[1], combined[0],
                            region_store.COMBINED, now, False)
            region, kind = combined[0], region_store.COMBINED
    joined = pair_with_others(stage, conn, ledger, stored.event_pk, now)
    touched = stage.finish(conn, ledger, {stored.event_pk}) | joined
    log.info("event %s: region v%d (%s%s) from %s, %d tiles, A90 %.1f deg2, %d "
             "candidates published", event.event_id, placed.version, kind,
             "" if placed.active else ", older than the active one: superseded", origin,
             region.n_tiles, region.area_deg2(0.9), len(touched))
    return touched


def _place(stage: Stage, conn: Connection, ledger: Ledger, event: StoredEvent,
           notice_pk: int, region: Region, kind: str, now: datetime,
           retracted: bool) -> region_store.StoredRegion:
    """Store one region of *event*; match it if it became the active one."""
    start, end = window_days(event.event_class, event.properties,
                             stage.config.window_days(event.event_class))
    t0 = event.event_time
    if event.messenger != "gw":
        # Distance layers mean something only for a GW map (a GUANO or IceCube
        # product may be an LVK map with distance): never score others on them.
        region = region.without_distance()
    placed = region_store.add_region(
        conn, event_pk=event.pk, notice_pk=notice_pk, kind=kind,
        tiles=region_store.Tiles(region.lo, region.hi, region.probdensity, region.distmu,
                                 region.distsigma, region.distnorm,
                                 region.credible_level),
        window=(t0 + timedelta(days=start), t0 + timedelta(days=end)),
        area50_deg2=region.area_deg2(0.5), area90_deg2=region.area_deg2(0.9),
        retracted=retracted)
    if placed.active:
        active = stage.correlator.activate(placed.region_pk, placed.version, event, region)
        stage.correlator.on_region(conn, ledger, active, now)
    else:  # an older notice: kept for audit; the active region may have been renumbered
        stage.correlator.sync_active(conn)
    return placed


def pair_with_others(stage: Stage, conn: Connection, ledger: Ledger, event_pk: int,
                     now: datetime) -> set[str]:
    """Find, revise or withdraw the event's coincidences with other events
    (:mod:`mma.match.pairs`), and their joint events (:mod:`mma.ingest.joint_events`),
    in the notice's transaction. Returns the joint events' candidates published."""
    event = store.load_event(conn, event_pk)
    if is_joint(event):
        return set()
    # Another daemon may have changed the other events' regions: pairs are judged on
    # the database's (this transaction holds the regions lock, so they cannot move).
    stage.correlator.sync_active(conn)
    pair_event(conn, ledger, PairRules.of(stage.config), event, stage.correlator.active, now)
    return sync_joint_events(stage, conn, event_pk, now, store_region)


def _upgrade(stage: Stage, stored: store.StoredNotice, notice: Notice, spec: RegionSpec,
             now: datetime) -> set[str]:
    """Fetch the map a notice gives by URL and make it the event's region.

    The shape stored with the notice (if any) stays in force when the
    download fails; a map that downloads but does not decode is kept as a
    dead letter.
    """
    url = spec.skymap_url
    assert url is not None
    if stage.fetch is None:
        log.info("event %s: skymap %s not fetched (fetching is off)", notice.event_id, url)
        return set()
    try:
        data = stage.fetch(url)
    except (TransientError, BadMessage) as exc:
        log.warning("event %s: skymap %s not fetched, keeping the notice's own region: "
                    "%s", notice.event_id, url, exc)
        return set()
    try:
        region = region_of(stage, spec, skymap=data)
    except BadMessage as exc:
        stage.dead_letter("skymap_fetch", url, exc, data)
        return set()
    assert region is not None
    with stage.engine.begin() as conn:
        locks.hold_regions(conn)
        # A retraction may have overtaken the download: the map is then kept, retracted,
        # as it would be had it arrived after the retraction (the same final state).
        retracted = store.lock_event(conn, stored.event_pk) == "retracted"
        return store_region(stage, conn, stored, region, "skymap", url, now,
                            retracted=retracted)

