"""Matching in both directions: new alerts against the active regions, and a new
region against the objects already stored.

The correlator keeps the active region of each event in memory (rebuilt from
the database by :meth:`Correlator.load_active`) as one level-29 range index.
A match of any detection of an object inside an event's region and window
makes the object a candidate of the event; the candidate is then judged on
all its detections in the window (:func:`mma.match.candidate.summarise`): its
combined position must lie inside the region's credible-level cut, and it is
scored there. Both directions apply this same rule, so the result does not
depend on whether the alerts or the notice came first. Rows are written with
:mod:`mma.match.revisions` in the caller's transaction; nothing is emitted here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Connection

from mma.config import Config
from mma.db import candidates as rows
from mma.db import region_store, store
from mma.db.backmatch import alerts_in_region
from mma.match.candidate import Summary, Thresholds, coincidence_id, payload_of, summarise
from mma.match.rates import Background, BackgroundRates, background_cdf, tile_dec
from mma.match.revisions import Ledger, record, retract
from mma.match.scoring import Score, ln_b_distance, score_match
from mma.models import StoredEvent, StoredObject
from mma.skymaps.index import RegionIndex
from mma.skymaps.region import Region, hpx29

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
    # DISTMU=+inf), and the background range of the distance factor [Mpc]: the
    # farthest such tile's DISTMU + 4 DISTSIGMA. None without distance layers.
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


class Correlator:
    """Both match directions over the active regions."""

    def __init__(self, config: Config, thresholds: Thresholds | None = None) -> None:
        self.config = config
        self.thresholds = thresholds or Thresholds.of(config, {})
        self.max_cl = float(config.section("scoring")["max_credible_level"])
        self.min_covered_days = float(config.section("scoring")["rate_min_span_days"])
        self.rates = BackgroundRates(config)
        self.active: dict[int, ActiveRegion] = {}  # by event_pk
        # All active regions' tiles inside max_cl, as one level-29 range index (by event_pk).
        self.index = RegionIndex(max_credible_level=self.max_cl)
        self._tile_dec: dict[int, np.ndarray] = {}  # tile-centre Dec [deg] by region_pk
        self._bg_cache: dict[tuple[int, str, int], np.ndarray] = {}

    def ledger(self) -> Ledger:
        """A fresh record of one transaction's candidate changes."""
        return Ledger(self.thresholds)

    # -- the index ---------------------------------------------------------------------------
    def load_active(self, conn: Connection) -> None:
        """Rebuild the in-memory index from the active regions in the database."""
        self.active.clear()
        self.index = RegionIndex(max_credible_level=self.max_cl)
        for region_pk, version, event_pk in region_store.active_regions(conn):
            self._load(conn, region_pk, version, event_pk)
        log.info("loaded %d active regions", len(self.active))

    def sync_active(self, conn: Connection) -> None:
        """Bring the index to the database's active regions, reading only those it lacks.

        Daemons sharing a database store, supersede and retract regions for each
        other; this runs before every alert batch, so it costs one small query when
        nothing changed. (After a failed transaction the index may hold regions the
        database never got, under reused keys: :meth:`load_active` rebuilds it whole.)
        """
        live = {pk: (version, event_pk)
                for pk, version, event_pk in region_store.active_regions(conn)}
        held = {a.region_pk: (a.version, a.event_pk) for a in self.active.values()}
        if live == held:
            return
        for region_pk, (version, event_pk) in held.items():
            if live.get(region_pk) != (version, event_pk):
                self.deactivate(event_pk)
        for region_pk, (version, event_pk) in live.items():
            if held.get(region_pk) != (version, event_pk):
                self._load(conn, region_pk, version, event_pk)
        log.info("index synced with the database: %d active regions (%d were held)",
                 len(self.active), len(held))

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
        active = ActiveRegion(region_pk, version, event,
                              self.config.window_days(event.event_class), region,
                              *region.distance_support())
        self.active[event.pk] = active
        self.index.add(event.pk, region)
        return active

    def deactivate(self, event_pk: int) -> None:
        """Forget the event's region (retraction, expiry, or superseded elsewhere)."""
        self.active.pop(event_pk, None)
        self.index.remove(event_pk)

    # -- direction 1: a region against stored objects ---------------------------------------
    def on_region(self, conn: Connection, ledger: Ledger, active: ActiveRegion,
                  now: datetime, reason: str = "region") -> None:
        """Match a new or updated region against every object stored in its window.

        Candidates of the event that the region no longer holds are retracted
        with the flag ``left_region``.
        """
        found = alerts_in_region(conn, active.region_pk, active.start, active.end, self.max_cl)
        kept = self._refresh(conn, ledger, active, {r.object_pk for r in found}, now, reason)
        for row in rows.live_of_event(conn, active.event_pk):
            if row.coincidence_id not in kept:
                retract(conn, ledger, row, "left_region", "left_region", active.key)
        log.info("event %s: region v%d holds %d objects detected in its window",
                 active.event.event_id, active.version, len(kept))

    # -- direction 2: new alerts against active regions -------------------------------------
    def on_alerts(self, conn: Connection, ledger: Ledger, ipix: Sequence[int],
                  times: Sequence[datetime], object_pks: Sequence[int],
                  now: datetime) -> tuple[dict[int, set[str]], set[int]]:
        """Match newly stored alerts against every active region, in one index lookup.

        Parameters
        ----------
        ipix, times, object_pks
            Per alert: level-29 index of its position, its time (UTC), its object.

        Returns
        -------
        (per object matched, the ids of its candidates; the events matched)
        """
        if not len(ipix) or not self.active:
            return {}, set()
        points, keys, _tiles = self.index.match(np.asarray(ipix, dtype=np.int64))
        wanted: dict[int, set[int]] = {}
        for i, event_pk in zip(points.tolist(), keys.tolist(), strict=True):
            active = self.active[event_pk]
            if active.start <= times[i] <= active.end:
                wanted.setdefault(event_pk, set()).add(object_pks[i])
        out: dict[int, set[str]] = {}
        for event_pk in sorted(wanted):  # one order in every daemon: rows lock alike
            active = self.active[event_pk]
            for object_pk, cid in self._candidates(conn, ledger, active, wanted[event_pk],
                                                   now, "new_detection").items():
                out.setdefault(object_pk, set()).add(cid)
        return out, set(wanted)

    def _refresh(self, conn: Connection, ledger: Ledger, active: ActiveRegion,
                 object_pks: Iterable[int], now: datetime, reason: str) -> set[str]:
        """Score each object against *active*; the ids of those inside the region."""
        return set(self._candidates(conn, ledger, active, object_pks, now, reason).values())

    def _candidates(self, conn: Connection, ledger: Ledger, active: ActiveRegion,
                    object_pks: Iterable[int], now: datetime,
                    reason: str) -> dict[int, str]:
        """Record the candidate of each object inside *active*; by object, their ids."""
        event = active.event
        objects = rows.objects_until(conn, object_pks, active.end)
        inside: dict[int, str] = {}
        for obj in sorted(objects.values(), key=lambda o: o.pk):
            summary = summarise(obj, event.event_time, active.start, active.end)
            if summary is None:
                continue
            cid = coincidence_id(event.event_id, obj.survey, obj.object_id)
            tile = int(active.region.lookup(hpx29(summary.ra_deg, summary.dec_deg)))
            if tile < 0 or active.region.credible_level[tile] > self.max_cl:
                self._left(conn, ledger, active, cid)
                continue
            inside[obj.pk] = cid
            score = self._score(conn, active, obj, summary, tile, now)
            payload = payload_of(cid, event, active.version, obj, summary, score)
            record(conn, ledger, cid, payload, score, event_pk=event.pk, object_pk=obj.pk,
                   alert_pk=summary.latest_alert_pk, region=active.key,
                   vetoed=summary.vetoed, reason=reason,
                   event_retracted=event.status == "retracted")
        return inside

    def _left(self, conn: Connection, ledger: Ledger, active: ActiveRegion, cid: str) -> None:
        """The object's combined position is outside the region: retract a live candidate."""
        row = rows.lock(conn, cid)
        if row is not None and row.status != "retracted":
            retract(conn, ledger, row, "left_region", "left_region", active.key)

    def rescore(self, conn: Connection, ledger: Ledger, now: datetime) -> None:
        """Re-measure the backgrounds and re-score every active region's candidates.

        The scheduler's periodic job in the daemon; the last step of a replay.
        """
        for survey in list(self.rates.surveys()):
            self.rates.background(conn, survey, now, force=True)
        # One order in every daemon, so that concurrent re-scores lock rows alike.
        for active in sorted(self.active.values(), key=lambda a: a.event_pk):
            self.on_region(conn, ledger, active, now, reason="rescore")

    def withdraw_alert(self, conn: Connection, ledger: Ledger, survey: str, alert_id: str,
                       vetoes: list[str], now: datetime) -> dict[int, str]:
        """A survey withdrew a source: veto the stored alert and re-judge its object.

        A candidate left with no vetted detection is retracted (flags
        ``veto:withdrawn`` and ``source_withdrawn``). Returns the object's live
        candidates before, by event.
        """
        found = rows.object_of_alert(conn, survey, alert_id)
        if found is None:
            return {}
        alert_pk, object_pk = found
        rows.veto_alert(conn, alert_pk, vetoes)
        events = {row.event_pk: row.coincidence_id
                  for row in rows.live_of_object(conn, object_pk)}
        for event_pk in sorted(set(events) & set(self.active)):
            self._refresh(conn, ledger, self.active[event_pk], [object_pk], now,
                          "source_withdrawn")
        log.warning("%s alert %s withdrawn by the survey: its object's candidates of %d "
                    "events re-judged", survey, alert_id, len(events))
        return events

    def expire(self, conn: Connection, now: datetime) -> list[str]:
        """Close the regions whose time window ended before *now* (status ``expired``).

        Their candidates stay as they are; no new alert can match them.
        Returns the event ids expired.
        """
        done = [a for a in self.active.values() if a.end < now]
        for active in done:
            region_store.expire_region(conn, active.region_pk)
            self.deactivate(active.event_pk)
            log.info("event %s: region v%d expired (window ended %s)",
                     active.event.event_id, active.version, active.end.isoformat())
        return [a.event.event_id for a in done]

    def retract(self, conn: Connection, ledger: Ledger, event_pk: int) -> None:
        """Retract an event: its regions, and every live candidate (flag ``event_retracted``).

        The retraction is sticky: the event keeps status ``retracted``, and later
        notices of it activate no region (:mod:`mma.ingest`).
        """
        active = self.active.get(event_pk)
        store.retract_event(conn, event_pk)
        for row in rows.live_of_event(conn, event_pk):
            retract(conn, ledger, row, "event_retracted", "retraction",
                    active.key if active else (row.region_pk, 0))
        self.deactivate(event_pk)

    # -- scoring -----------------------------------------------------------------------------
    def _score(self, conn: Connection, active: ActiveRegion, obj: StoredObject,
               summary: Summary, tile: int, now: datetime) -> Score:
        region = active.region
        dt_days = (summary.reference_time - active.event.event_time).total_seconds() / 86400.0
        ln_b_d = 0.0
        distance = summary.distance_mpc
        if (distance and active.distance_ok is not None and active.distance_ok[tile]
                and active.distance_reach_mpc):
            pdf = float(region.distance_pdf(tile, float(distance)))
            ln_b_d = ln_b_distance(pdf, float(distance), active.distance_reach_mpc)
        background = self.rates.background(conn, obj.survey, now)
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
