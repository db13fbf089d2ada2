"""The active regions: each event's current region, in memory, as one range index.

Rebuilt from the database at start-up (:meth:`ActiveRegions.load`) and kept in
step with it (:meth:`ActiveRegions.sync`): daemons sharing a database store,
supersede and retract regions for each other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Connection

from mma.config import Config
from mma.db import region_store, store
from mma.match.distance import DistanceSettings, distance_quantile_mpc
from mma.models import StoredEvent
from mma.skymaps.index import RegionIndex
from mma.skymaps.region import Region
from mma.watch import window_days

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveRegion:
    """An event's current region with what scoring needs about the event."""

    region_pk: int
    version: int
    event: StoredEvent
    window_days: tuple[float, float]
    region: Region
    # Tiles whose distance layers carry information (LVK maps mark the others
    # DISTMU=+inf), and the background range of the distance factor [Mpc]: the map's
    # probability-weighted 99 % distance quantile. None without distance layers.
    distance_ok: np.ndarray | None = None
    distance_reach_mpc: float | None = None

    @property
    def event_pk(self) -> int:
        """``events.id``."""
        return self.event.pk

    @property
    def start(self) -> datetime:
        """Earliest alert time that can match (UTC)."""
        return self.event.event_time + timedelta(days=self.window_days[0])

    @property
    def end(self) -> datetime:
        """Latest alert time that can match (UTC)."""
        return self.event.event_time + timedelta(days=self.window_days[1])

    @property
    def key(self) -> tuple[int, int]:
        """(region_pk, version), as the revision history records it."""
        return self.region_pk, self.version


class ActiveRegions:
    """The current region of every live event (by event_pk), and their range index."""

    def __init__(self, config: Config, max_credible_level: float) -> None:
        self.config = config
        self.max_cl = max_credible_level
        self.reach_quantile = DistanceSettings.from_section(
            config.section("distance")).reach_quantile
        self.by_event: dict[int, ActiveRegion] = {}
        # All active regions' tiles inside max_cl, as one level-29 range index (by event_pk).
        self.index = RegionIndex(max_credible_level=max_credible_level)

    def load(self, conn: Connection) -> None:
        """Rebuild the in-memory index from the active regions in the database."""
        self.by_event.clear()
        self.index = RegionIndex(max_credible_level=self.max_cl)
        for region_pk, version, event_pk in region_store.active_regions(conn):
            self._load(conn, region_pk, version, event_pk)
        log.info("loaded %d active regions", len(self.by_event))

    def sync(self, conn: Connection) -> None:
        """Bring the index to the database's active regions, reading only those it lacks.

        Daemons sharing a database store, supersede and retract regions for each
        other; this runs before every alert batch, so it costs one small query when
        nothing changed. (After a failed transaction the index may hold regions the
        database never got, under reused keys: :meth:`load` rebuilds it whole.)
        """
        live = {pk: (version, event_pk)
                for pk, version, event_pk in region_store.active_regions(conn)}
        held = {a.region_pk: (a.version, a.event_pk) for a in self.by_event.values()}
        if live == held:
            return
        for region_pk, (version, event_pk) in held.items():
            if live.get(region_pk) != (version, event_pk):
                self.deactivate(event_pk)
        for region_pk, (version, event_pk) in live.items():
            if held.get(region_pk) != (version, event_pk):
                self._load(conn, region_pk, version, event_pk)
        log.info("index synced with the database: %d active regions (%d were held)",
                 len(self.by_event), len(held))

    def _load(self, conn: Connection, region_pk: int, version: int, event_pk: int) -> None:
        """Activate a stored region from its tiles."""
        tiles = region_store.region_tiles_of(conn, region_pk)
        region = Region.from_tiles(tiles.lo, tiles.hi, tiles.probdensity,
                                   distmu=tiles.distmu, distsigma=tiles.distsigma,
                                   distnorm=tiles.distnorm)
        self.activate(region_pk, version, store.load_event(conn, event_pk), region)

    def activate(self, region_pk: int, version: int, event: StoredEvent,
                 region: Region) -> ActiveRegion:
        """Make *region* the current one of its event (superseding any older one)."""
        ok, _ = region.distance_support()
        reach = None if ok is None or not ok.any() else distance_quantile_mpc(
            region, self.reach_quantile)
        window = window_days(event.event_class, event.properties,
                             self.config.window_days(event.event_class))
        active = ActiveRegion(region_pk, version, event, window, region, ok, reach)
        self.by_event[event.pk] = active
        self.index.add(event.pk, region)
        return active

    def deactivate(self, event_pk: int) -> None:
        """Forget the event's region (retraction, expiry, or superseded elsewhere)."""
        self.by_event.pop(event_pk, None)
        self.index.remove(event_pk)
