"""One event per burst: notices of several missions about one GRB share one event.

A notice none of whose names a stored event knows joins an active event of
another mission (``[joint.bursts]``) when their trigger times lie within
``window_s`` and their regions overlap (the overlap integral of
:mod:`mma.match.joint` at least ``min_overlap``: the two localisations agree
better than two unrelated ones would), or, when either has no region yet,
when their times lie within ``time_only_window_s``. Its names become aliases
of the event; each mission keeps its own regions, and the event's region for
matching is the normalised product of every mission's newest one (independent
instruments), or the smallest of them when they share no sky.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Connection

from mma.config import Config
from mma.db import pairs, region_store, store
from mma.match import joint
from mma.match.active import ActiveRegion
from mma.match.pairs import JOINT
from mma.models import Notice, StoredEvent
from mma.skymaps.region import Region

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BurstRules:
    """The ``[joint.bursts]`` settings."""

    messengers: tuple[str, ...]
    window_s: float
    time_only_window_s: float
    min_overlap: float

    @classmethod
    def of(cls, config: Config) -> BurstRules:
        """Read ``[joint.bursts]``."""
        s = config.section("joint.bursts")
        return cls(tuple(s["messengers"]), float(s["window_s"]),
                   float(s["time_only_window_s"]), float(s["min_overlap"]))


def burst_of(conn: Connection, rules: BurstRules, notice: Notice, handler: str,
             region: Region | None, active: dict[int, ActiveRegion]) -> int | None:
    """The event of another mission this notice's burst is, or None.

    Call in the notice's transaction (regions lock held), before the notice is
    stored, only for a notice whose names no event knows. The best match is
    the one whose region overlaps most, then the nearest in time.
    """
    if (notice.messenger not in rules.messengers or notice.retraction
            or "no_event_time" in notice.flags):  # its time is not a trigger's
        return None
    best: tuple[float, float, int] | None = None
    for other in pairs.events_near(conn, notice.event_time, rules.window_s, exclude_pk=0):
        if (other.messenger != notice.messenger or other.status != "active"
                or other.test != notice.test or other.instrument == JOINT
                or store.home_handler(conn, other.pk) == handler):
            continue
        dt = abs((other.event_time - notice.event_time).total_seconds())
        theirs = active.get(other.pk)
        if region is None or theirs is None:
            overlap = 0.0 if dt <= rules.time_only_window_s else None
        else:
            value = joint.overlap_integral(region, theirs.region)
            overlap = value if value >= rules.min_overlap else None
        if overlap is not None and (best is None or (-overlap, dt) < best[:2]):
            best = (-overlap, dt, other.pk)
        log.info("event %s: %s trigger %+.2f s away, overlap %s: %s", notice.event_id,
                 other.event_id, dt, overlap, "same burst" if overlap is not None
                 else "not the same burst")
    return None if best is None else best[2]


def combined_region(conn: Connection, event: StoredEvent) -> tuple[Region, int] | None:
    """The event's region from several missions, and the notice it hangs on.

    None when fewer than two missions gave the event a region. The product of
    every mission's newest region, normalised; the smallest (90 % area) of
    them when the product holds no probability. It hangs on the event's
    newest notice in notice order, so that it supersedes every region before.
    """
    latest = region_store.latest_by_source(conn, event.pk)
    if len(latest) < 2:
        return None
    shown = []
    for region_pk, _ in latest.values():
        tiles = region_store.region_tiles_of(conn, region_pk)
        shown.append(Region.from_tiles(tiles.lo, tiles.hi, tiles.probdensity))
    product: Region | None = shown[0]
    for other in shown[1:]:
        product = None if product is None else joint.product_region(product, other)
    if product is None:
        product = min(shown, key=lambda r: r.area_deg2(0.9))
        log.warning("event %s: the regions of %s share no sky; the smallest is used",
                    event.event_id, ", ".join(sorted(latest)))
    return product, region_store.newest_notice(conn, event.pk)
