"""Read-only queries behind the event pages (:mod:`mma.page`).

Each returns frozen dataclasses, so the page code never sees SQL. Values are
returned as stored: JSON columns (payloads, flags, properties) may be missing,
malformed or hostile, and :mod:`mma.page` checks and escapes every one of them.
Times are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, exists, func, or_, select

from mma.db.queries import find_event_pk, list_events
from mma.db.schema import coincidence_revisions as revisions_table
from mma.db.schema import coincidences, event_aliases, events, notices, regions
from mma.report import LIVE

__all__ = ("LIVE", "ActiveEvent", "PageCandidate", "PageEvent", "PageNotice", "PageRegion",
           "PageRevision", "active_events", "changed_events", "count_candidates",
           "event_candidates", "event_notices", "event_regions", "find_event", "revisions_of")


@dataclass(frozen=True)
class PageEvent:
    """An event as its page shows it; ``properties`` and ``flags`` as stored (JSON)."""

    pk: int
    event_id: str
    aliases: tuple[str, ...]
    messenger: str
    event_class: str | None
    instrument: str
    event_time: datetime
    status: str
    test: bool
    muted_at: datetime | None
    properties: Any
    flags: Any


@dataclass(frozen=True)
class PageNotice:
    """One notice of an event (``origin``: topic:partition:offset or a file path)."""

    handler: str
    notice_type: str
    issued_time: datetime
    received_at: datetime
    origin: str | None
    properties: Any
    flags: Any


@dataclass(frozen=True)
class PageRegion:
    """One region version of an event: window [UTC] and 50/90 % areas [deg^2]."""

    pk: int
    version: int
    kind: str
    status: str
    window_start: datetime
    window_end: datetime
    area50_deg2: float
    area90_deg2: float
    n_tiles: int


@dataclass(frozen=True)
class PageCandidate:
    """One candidate with its published record (``payload``, as stored)."""

    coincidence_id: str
    status: str
    vetoed: bool
    rank: int | None
    revision: int
    log_bayes_factor: float
    p_chance: float
    payload: Any
    updated_at: datetime


@dataclass(frozen=True)
class PageRevision:
    """One row of a candidate's scoring history (``coincidence_revisions``)."""

    revision: int
    published: bool
    reason: str
    changes: Any
    region_version: int
    status: str
    credible_level: float | None
    log_bayes_factor: float | None
    p_chance: float | None
    n_detections: int | None
    rank: int | None
    n_scorings: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ActiveEvent:
    """A line of the index: an event whose window is open (``area90_deg2`` [deg^2])."""

    event_id: str
    messenger: str
    event_class: str | None
    event_time: datetime
    muted: bool
    region_version: int
    area90_deg2: float
    window_end: datetime
    n_live: int
    best_p_chance: float | None


def find_event(conn: Connection, name: str) -> PageEvent | None:
    """The event called *name* (its id or one of its aliases), else None."""
    pk = find_event_pk(conn, name)
    if pk is None:
        return None
    row = conn.execute(select(events).where(events.c.id == pk)).one()
    aliases = conn.execute(select(event_aliases.c.alias).where(
        event_aliases.c.event_pk == row.id).order_by(event_aliases.c.alias)).scalars().all()
    return PageEvent(row.id, row.event_id, tuple(a for a in aliases if a != row.event_id),
                     row.messenger, row.event_class, row.instrument, row.event_time,
                     row.status, bool(row.test), row.muted_at, row.properties, row.flags)


def event_notices(conn: Connection, event_pk: int) -> list[PageNotice]:
    """The event's notices in issue order."""
    rows = conn.execute(select(
        notices.c.handler, notices.c.notice_type, notices.c.issued_time,
        notices.c.received_at, notices.c.origin, notices.c.properties, notices.c.flags,
    ).where(notices.c.event_pk == event_pk).order_by(notices.c.issued_time, notices.c.id))
    return [PageNotice(*r) for r in rows]


def event_regions(conn: Connection, event_pk: int) -> list[PageRegion]:
    """The event's region versions, oldest first."""
    rows = conn.execute(select(
        regions.c.id, regions.c.version, regions.c.kind, regions.c.status,
        regions.c.window_start, regions.c.window_end, regions.c.area50_deg2,
        regions.c.area90_deg2, regions.c.n_tiles,
    ).where(regions.c.event_pk == event_pk).order_by(regions.c.version))
    return [PageRegion(*r) for r in rows]


def _live_ranked() -> Any:
    return and_(coincidences.c.status.in_(LIVE), coincidences.c.rank.is_not(None))


def count_candidates(conn: Connection, event_pk: int) -> tuple[int, int]:
    """How many candidates the event has: (live and ranked, all)."""
    row = conn.execute(select(
        func.count().filter(_live_ranked()), func.count(),
    ).where(coincidences.c.event_pk == event_pk, coincidences.c.other_event_pk.is_(None))).one()
    return int(row[0] or 0), int(row[1] or 0)


def event_candidates(conn: Connection, event_pk: int, *, limit: int) -> list[PageCandidate]:
    """The event's candidates, best first, at most *limit*.

    Live ranked candidates by rank come first, then the other live ones (vetoed),
    then the retracted ones, each group by ln B, highest first.
    """
    group = case((_live_ranked(), 0), (coincidences.c.status.in_(LIVE), 1), else_=2)
    rows = conn.execute(select(
        coincidences.c.coincidence_id, coincidences.c.status, coincidences.c.vetoed,
        coincidences.c.rank, coincidences.c.revision, coincidences.c.log_bayes_factor,
        coincidences.c.p_chance, coincidences.c.payload, coincidences.c.updated_at,
    ).where(coincidences.c.event_pk == event_pk, coincidences.c.other_event_pk.is_(None)
            ).order_by(group, coincidences.c.rank, coincidences.c.log_bayes_factor.desc(),
        coincidences.c.coincidence_id,
    ).limit(max(int(limit), 0)))
    return [PageCandidate(r[0], r[1], bool(r[2]), *r[3:]) for r in rows]


def revisions_of(conn: Connection, coincidence_ids: Sequence[str]
                 ) -> Mapping[str, list[PageRevision]]:
    """Each candidate's scoring history, oldest first (candidates without one: absent)."""
    history: dict[str, list[PageRevision]] = {}
    ids = list(coincidence_ids)
    r = revisions_table.c
    for start in range(0, len(ids), 500):  # bounded IN lists
        rows = conn.execute(select(
            r.coincidence_id, r.revision, r.published, r.reason, r.changes,
            r.region_version, r.status, r.credible_level, r.log_bayes_factor, r.p_chance,
            r.n_detections, r.rank, r.n_scorings, r.created_at, r.updated_at,
        ).where(r.coincidence_id.in_(ids[start:start + 500])).order_by(r.created_at, r.id))
        for row in rows:
            history.setdefault(row[0], []).append(PageRevision(
                row.revision, bool(row.published), row.reason, row.changes,
                row.region_version, row.status, row.credible_level, row.log_bayes_factor,
                row.p_chance, row.n_detections, row.rank, row.n_scorings, row.created_at,
                row.updated_at))
    return history


def active_events(conn: Connection, now: datetime) -> list[ActiveEvent]:
    """Events not retracted whose current region's window is still open at *now*, newest
    first: the events ``mma events --active`` lists (:func:`mma.db.queries.list_events`).

    ``n_live`` counts the live candidates that passed vetting; ``best_p_chance`` is
    their smallest P_chance (None without any).
    """
    return [ActiveEvent(e.event_id, e.messenger, e.event_class, e.event_time,
                        e.muted_at is not None, int(e.region_version or 0),
                        float(e.area90_deg2 or 0.0), e.window_end or now, e.n_live,
                        e.best_p_chance)
            for e in list_events(conn, now, active_only=True)]


def changed_events(conn: Connection, since: datetime) -> list[str]:
    """Ids of the events that changed, or whose candidates changed, after *since*."""
    touched = exists().where(coincidences.c.event_pk == events.c.id,
                             coincidences.c.updated_at > since)
    rows = conn.execute(select(events.c.event_id).where(
        or_(events.c.updated_at > since, touched)).order_by(events.c.event_id))
    return list(rows.scalars())
