"""Matching in both directions: a new alert against the active regions, and a
new region against the alerts already stored.

The correlator keeps the active region of each event in memory (rebuilt from
the database at start-up by :meth:`Correlator.load_active`), finds matches with
the level-29 range index of :class:`mma.skymaps.region.Region`, scores them
with :mod:`mma.match.scoring` and writes coincidences with :mod:`mma.match.candidate`
in the caller's transaction. It never emits: emitters read what it committed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, select, update

from mma.config import Config
from mma.db import store
from mma.db.backmatch import alerts_in_region
from mma.db.schema import alerts, coincidences, regions
from mma.match.candidate import coincidence_id, payload_of, record, rerank, withdraw_others
from mma.match.rates import Background, BackgroundRates, background_cdf, tile_dec
from mma.match.scoring import Score, ln_b_distance, score_match
from mma.skymaps.index import RegionIndex
from mma.skymaps.region import Region

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ActiveRegion:
    """An event's current region with what scoring needs about the event."""

    region_pk: int
    version: int
    event_pk: int
    event: Mapping[str, Any]  # store.event_row(): event_id, aliases, messenger...
    window_days: tuple[float, float]
    region: Region
    # Tiles whose distance layers carry information (LVK maps mark the others
    # DISTMU=+inf), and the background range of the distance factor [Mpc]: the
    # farthest such tile's DISTMU + 4 DISTSIGMA. None without distance layers.
    distance_ok: np.ndarray | None = None
    distance_reach_mpc: float | None = None

    @property
    def start(self) -> datetime:
        """Earliest alert time that can match (UTC)."""
        return self.event["event_time"] + timedelta(days=self.window_days[0])

    @property
    def end(self) -> datetime:
        """Latest alert time that can match (UTC)."""
        return self.event["event_time"] + timedelta(days=self.window_days[1])


class Correlator:
    """Both match directions over the active regions."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.max_cl = float(config.section("scoring")["max_credible_level"])
        self.min_covered_days = float(config.section("scoring")["rate_min_span_days"])
        self.rates = BackgroundRates(config)
        self.active: dict[int, ActiveRegion] = {}  # by event_pk
        # All active regions' tiles inside max_cl, as one level-29 range index (by event_pk).
        self.index = RegionIndex(max_credible_level=self.max_cl)
        self._tile_dec: dict[int, np.ndarray] = {}  # tile-centre Dec [deg] by region_pk
        self._bg_cache: dict[tuple[int, str, int], np.ndarray] = {}

    def load_active(self, conn: Connection) -> None:
        """Rebuild the in-memory index from the active regions in the database."""
        self.active.clear()
        self.index = RegionIndex(max_credible_level=self.max_cl)
        for row in conn.execute(select(regions).where(regions.c.status == "active")):
            self._load(conn, row)
        log.info("loaded %d active regions", len(self.active))

    def sync_active(self, conn: Connection) -> None:
        """Bring the index to the database's active regions, reading only those it lacks.

        Daemons sharing a database store, supersede and retract regions for each
        other; this runs before every alert batch, so it costs one small query when
        nothing changed. (After a failed transaction the index may hold regions the
        database never got, under reused keys: :meth:`load_active` rebuilds it whole.)
        """
        live = {row.id: row for row in conn.execute(
            select(regions).where(regions.c.status == "active"))}
        held = {a.region_pk: a.event_pk for a in self.active.values()}
        if live.keys() == held.keys():
            return
        for region_pk, event_pk in held.items():
            if region_pk not in live:
                self.deactivate(event_pk)
        for region_pk, row in live.items():
            if region_pk not in held:
                self._load(conn, row)
        log.info("index synced with the database: %d active regions (%d were held)",
                 len(self.active), len(held))

    def _load(self, conn: Connection, row: Any) -> None:
        """Activate the stored region *row* (a ``regions`` row) from its tiles."""
        event = store.event_row(conn, row.event_pk)
        tiles = store.region_tiles_of(conn, row.id)
        region = Region.from_tiles(tiles.lo, tiles.hi, tiles.probdensity,
                                   distmu=tiles.distmu, distsigma=tiles.distsigma,
                                   distnorm=tiles.distnorm)
        self.activate(row.id, row.version, event, region)

    def activate(self, region_pk: int, version: int, event: Mapping[str, Any],
                 region: Region) -> ActiveRegion:
        """Make *region* the current one of its event (superseding any older one)."""
        active = ActiveRegion(region_pk, version, int(event["id"]), event,
                              self.config.window_days(event["messenger"]), region,
                              *region.distance_support())
        self.active[active.event_pk] = active
        self.index.add(active.event_pk, region)
        return active

    def deactivate(self, event_pk: int) -> None:
        """Forget the event's region (retraction or expiry)."""
        self.active.pop(event_pk, None)
        self.index.remove(event_pk)

    # -- direction 1: a new region against stored alerts -------------------------------------
    def on_region(self, conn: Connection, active: ActiveRegion, now: datetime) -> set[str]:
        """Match a new or updated region against every alert stored in its window.

        Coincidences of the event that the new region no longer contains are
        marked retracted with the flag ``left_region``.

        Returns
        -------
        Ids of coincidences created or changed.
        """
        # By alert: coincidence rows are locked in the same order by every daemon.
        rows = sorted(alerts_in_region(conn, active.region_pk, active.start, active.end,
                                       self.max_cl), key=lambda r: r.id)
        touched: set[str] = set()
        kept: set[str] = set()
        if rows:
            ipix = np.fromiter((r.hpx29 for r in rows), dtype=np.int64, count=len(rows))
            for row, tile in zip(rows, active.region.lookup(ipix).tolist(), strict=True):
                cid, changed = self._record(conn, active, row._asdict(), row.object_first,
                                            tile, now)
                kept.add(cid)
                if changed:
                    touched.add(cid)
        touched |= withdraw_others(conn, active.event_pk, active.version, kept)
        log.info("event %s: region v%d matched %d stored alerts in window",
                 active.event["event_id"], active.version, len(kept))
        return touched

    # -- direction 2: a new alert against active regions -------------------------------------
    def on_alerts(self, conn: Connection, rows: Sequence[Mapping[str, Any]],
                  object_first: Sequence[datetime], now: Sequence[datetime],
                  ) -> tuple[list[set[str]], set[int]]:
        """Match newly stored alerts against every active region, in one index lookup.

        Parameters
        ----------
        rows
            The stored alerts (``id``, ``alert_id``, ``survey``, ``ra_deg``,
            ``dec_deg``, ``time``, ``hpx29``, ``vetoes``, ``distance_mpc``).
        object_first, now
            Per alert: its object's first detection, and the stream time (UTC).

        Returns
        -------
        (per alert, the coincidence ids it created or changed; the events they belong to)
        """
        touched: list[set[str]] = [set() for _ in rows]
        events_touched: set[int] = set()
        if not rows or not self.active:
            return touched, events_touched
        ipix = np.fromiter((r["hpx29"] for r in rows), dtype=np.int64, count=len(rows))
        points, keys, tiles = self.index.match(ipix)
        # Sorted by point, so alerts are recorded in arrival order (an object's
        # later alert sees its earlier one's coincidence, as one at a time would).
        for i, event_pk, tile in zip(points.tolist(), keys.tolist(), tiles.tolist(),
                                     strict=True):
            active = self.active[event_pk]
            row = rows[i]
            if not (active.start <= row["time"] <= active.end):
                continue
            cid, changed = self._record(conn, active, row, object_first[i], tile, now[i])
            if changed:
                touched[i].add(cid)
                events_touched.add(active.event_pk)
        return touched, events_touched

    def rescore(self, conn: Connection, now: datetime) -> set[str]:
        """Re-measure the backgrounds and re-score every active region's coincidences.

        The scheduler's periodic job in the daemon; the last step of a replay.
        Returns the ids of the coincidences whose numbers changed.
        """
        for survey in list(self.rates.surveys()):
            self.rates.background(conn, survey, now, force=True)
        touched: set[str] = set()
        # One order in every daemon, so that concurrent re-scores lock rows alike.
        for active in sorted(self.active.values(), key=lambda a: a.event_pk):
            touched |= self.on_region(conn, active, now)
        rerank(conn, {a.event_pk for a in self.active.values()})
        return touched

    def withdraw_alert(self, conn: Connection, survey: str, alert_id: str,
                       vetoes: list[str]) -> set[str]:
        """A survey withdrew a source: veto the stored alert and retract its coincidences
        (flag ``source_withdrawn``). Returns the ids retracted."""
        alert_pk = conn.execute(select(alerts.c.id).where(
            alerts.c.survey == survey, alerts.c.alert_id == alert_id)).scalar_one_or_none()
        if alert_pk is None:
            return set()
        conn.execute(update(alerts).where(alerts.c.id == alert_pk).values(
            vetoes=list(vetoes), passes_vetting=False))
        rows = conn.execute(select(coincidences).where(
            coincidences.c.alert_pk == alert_pk, coincidences.c.status != "retracted")
            .with_for_update()).all()
        for row in rows:
            payload = dict(row.payload)
            payload["flags"] = [*payload["flags"], "source_withdrawn"]
            conn.execute(update(coincidences).where(
                coincidences.c.coincidence_id == row.coincidence_id).values(
                status="retracted", vetoed=True, revision=row.revision + 1, payload=payload))
        rerank(conn, {row.event_pk for row in rows})
        log.warning("%s alert %s withdrawn by the survey: %d coincidences retracted", survey,
                    alert_id, len(rows))
        return {row.coincidence_id for row in rows}

    def expire(self, conn: Connection, now: datetime) -> list[str]:
        """Close the regions whose time window ended before *now* (status ``expired``).

        Their coincidences stay as they are; no new alert can match them.
        Returns the event ids expired.
        """
        done = [a for a in self.active.values() if a.end < now]
        for active in done:
            conn.execute(update(regions).where(regions.c.id == active.region_pk)
                         .values(status="expired"))
            self.deactivate(active.event_pk)
            log.info("event %s: region v%d expired (window ended %s)",
                     active.event["event_id"], active.version, active.end.isoformat())
        return [a.event["event_id"] for a in done]

    # -- retraction --------------------------------------------------------------------------
    def retract(self, conn: Connection, event_pk: int) -> set[str]:
        """Retract an event: its regions, and every live coincidence (flag ``event_retracted``).

        Returns the ids of the coincidences retracted, which must be announced
        on every channel that carried them.
        """
        live = store.retract_event(conn, event_pk)
        for cid in live:
            row = conn.execute(select(coincidences.c.payload, coincidences.c.revision).where(
                coincidences.c.coincidence_id == cid).with_for_update()).one()
            payload = dict(row.payload)
            payload["flags"] = [*payload["flags"], "event_retracted"]
            conn.execute(update(coincidences).where(coincidences.c.coincidence_id == cid)
                         .values(status="retracted", revision=row.revision + 1, payload=payload))
        self.deactivate(event_pk)
        return set(live)

    # -- scoring and persistence -------------------------------------------------------------
    def _score(self, conn: Connection, active: ActiveRegion, alert: Mapping[str, Any],
               tile: int, now: datetime) -> Score:
        region = active.region
        dt_days = (alert["time"] - active.event["event_time"]).total_seconds() / 86400.0
        ln_b_d = 0.0
        distance = alert.get("distance_mpc")
        if (distance and active.distance_ok is not None and active.distance_ok[tile]
                and active.distance_reach_mpc):
            pdf = float(region.distance_pdf(tile, float(distance)))
            ln_b_d = ln_b_distance(pdf, float(distance), active.distance_reach_mpc)
        background = self.rates.background(conn, alert["survey"], now)
        covered = background.covered_days(active.start, active.end, self.min_covered_days)
        return score_match(
            prob_density_sr=float(region.probdensity[tile]),
            credible_level=float(region.credible_level[tile]),
            searched_area_deg2=float(region.searched_area_deg2[tile]),
            dt_days=dt_days, window=active.window_days,
            rate_per_day=background.rate_per_day,
            background_fraction=float(self._background_cdf(active, background)[tile]),
            covered_days=covered, ln_b_d=ln_b_d,
        )

    def _background_cdf(self, active: ActiveRegion, background: Background) -> np.ndarray:
        """Per tile: the background fraction in the tiles at least as dense as it.

        Ordered like the searched area (crossmatch's density order), weighted by
        where the survey observes; cached per region and background version.
        """
        key = (active.region_pk, background.survey, background.version)
        cached = self._bg_cache.get(key)
        if cached is not None:
            return cached
        live = {a.region_pk for a in self.active.values()}
        dec = self._tile_dec.get(active.region_pk)
        if dec is None:
            dec = tile_dec(active.region)
            self._tile_dec = {k: v for k, v in self._tile_dec.items() if k in live}
            self._tile_dec[active.region_pk] = dec
        cdf = background_cdf(active.region, dec, background)
        # Keep only current versions for regions still active.
        self._bg_cache = {k: v for k, v in self._bg_cache.items()
                          if k[0] in live and k[:2] != key[:2]}
        self._bg_cache[key] = cdf
        return cdf

    def _record(self, conn: Connection, active: ActiveRegion, alert: Mapping[str, Any],
                object_first: datetime, tile: int, now: datetime) -> tuple[str, bool]:
        """Insert or re-score the coincidence of *alert* with *active*.

        Returns
        -------
        (coincidence_id, changed)
        """
        score = self._score(conn, active, alert, tile, now)
        event = active.event
        cid = coincidence_id(event["event_id"], alert["survey"], alert["alert_id"])
        payload = payload_of(cid, event, active.version, alert, score, object_first)
        changed = record(conn, cid, payload, score, event_pk=active.event_pk,
                         region_pk=active.region_pk, alert_pk=alert["id"],
                         vetoed=bool(alert["vetoes"]),
                         event_retracted=event["status"] == "retracted")
        return cid, changed
