"""Read-only queries behind the looking commands (``mma events``, ``candidates``, ``show``...).

Each returns frozen dataclasses, not rows, so the commands never see SQL. Every
value read from a candidate's JSON ``payload`` may be missing or of the wrong
type (the payload is stored as published, and older versions differ): the
helpers :func:`_number` and :func:`_text` turn anything unexpected into None.
Times are timezone-aware UTC.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, case, func, select

from mma.db.schema import (
    alerts,
    coincidence_revisions,
    coincidences,
    dead_letters,
    event_aliases,
    events,
    notices,
    outbox,
    regions,
)
from mma.report import LIVE


@dataclass(frozen=True)
class EventRow:
    """An event with its current region (the active one, else the newest version).

    ``status`` is ``retracted``, ``expired`` (the current region's window has
    closed, the region was expired, or the event has no region: nothing can
    match it) or ``active``. ``area90_deg2`` [deg^2] and the
    window are None for an event without a stored region.
    """

    pk: int
    event_id: str
    messenger: str
    event_class: str | None
    instrument: str
    event_time: datetime
    status: str
    test: bool
    muted_at: datetime | None
    region_pk: int | None
    region_version: int | None
    area90_deg2: float | None
    window_start: datetime | None
    window_end: datetime | None
    n_live: int
    best_p_chance: float | None


@dataclass(frozen=True)
class CandidateRow:
    """One candidate of an event, as ``mma candidates`` lists it (``dt_days`` [days])."""

    coincidence_id: str
    event_id: str
    object_id: str | None
    survey: str | None
    rank: int | None
    status: str
    revision: int
    vetoed: bool
    dt_days: float | None
    credible_level: float | None
    log_bayes_factor: float
    p_chance: float
    flags: tuple[str, ...]
    peak_magnitude: float | None
    peak_band: str | None
    ra_deg: float | None
    dec_deg: float | None
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class RevisionRow:
    """One row of a candidate's scoring history (``coincidence_revisions``)."""

    revision: int
    published: bool
    reason: str
    changes: tuple[str, ...]
    region_version: int
    status: str
    credible_level: float | None
    log_bayes_factor: float | None
    p_chance: float | None
    n_scorings: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class OutboxRow:
    """One delivery (``outbox``) without its payload."""

    id: int
    coincidence_id: str
    revision: int
    channel: str
    status: str
    kind: str | None
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class DeadLetterRow:
    """A dead letter without its raw bytes: their size [bytes] and SHA-256 instead."""

    id: int
    received_at: datetime
    source: str
    origin: str | None
    error_type: str
    error: str
    size: int
    sha256: str


def number(value: Any) -> float | None:
    """A finite float, else None (bools, strings and NaN from a payload included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def find_event_pk(conn: Connection, name: str) -> int | None:
    """Primary key of the event whose id or alias is *name*, else None."""
    row = conn.execute(select(events.c.id).where(events.c.event_id == name)).first()
    if row is None:
        row = conn.execute(select(event_aliases.c.event_pk.label("id"))
                           .where(event_aliases.c.alias == name)).first()
    return None if row is None else int(row.id)


def _current_regions(conn: Connection, event_pks: list[int] | None) -> dict[int, Any]:
    """Each event's current region row: the active one, else the highest version."""
    query = select(regions.c.id, regions.c.event_pk, regions.c.version, regions.c.status,
                   regions.c.area90_deg2, regions.c.window_start, regions.c.window_end)
    if event_pks is not None:
        query = query.where(regions.c.event_pk.in_(event_pks))
    found: dict[int, Any] = {}
    for row in conn.execute(query):
        held = found.get(row.event_pk)
        key = (row.status == "active", row.version)
        if held is None or key > (held.status == "active", held.version):
            found[row.event_pk] = row
    return found


def list_events(conn: Connection, now: datetime, *, active_only: bool = False,
                event_pk: int | None = None) -> list[EventRow]:
    """Events, newest event time first, with their current region and live candidates.

    Parameters
    ----------
    now : datetime
        The wall clock (UTC): an event whose current region's window ended
        before it is ``expired``, not active.
    active_only : bool
        Only events neither retracted nor expired.
    event_pk : int, optional
        Only this event.
    """
    query = select(events).order_by(events.c.event_time.desc(), events.c.id.desc())
    if event_pk is not None:
        query = query.where(events.c.id == event_pk)
    rows = conn.execute(query).all()
    pks = [int(r.id) for r in rows]
    current = _current_regions(conn, None if event_pk is None else pks)
    live = {int(pk): (int(n), best) for pk, n, best in conn.execute(
        select(coincidences.c.event_pk, func.count(), func.min(coincidences.c.p_chance))
        .where(coincidences.c.status.in_(LIVE), ~coincidences.c.vetoed,
               coincidences.c.other_event_pk.is_(None))
        .group_by(coincidences.c.event_pk))}
    out = []
    for row in rows:
        region = current.get(row.id)
        out.append(EventRow(
            pk=int(row.id), event_id=row.event_id, messenger=row.messenger,
            event_class=row.event_class, instrument=row.instrument, event_time=row.event_time,
            status=_event_status(row.status, region, now), test=bool(row.test),
            muted_at=row.muted_at,
            region_pk=None if region is None else int(region.id),
            region_version=None if region is None else int(region.version),
            area90_deg2=None if region is None else number(region.area90_deg2),
            window_start=None if region is None else region.window_start,
            window_end=None if region is None else region.window_end,
            n_live=live.get(row.id, (0, None))[0],
            best_p_chance=number(live.get(row.id, (0, None))[1])))
    return [e for e in out if e.status == "active"] if active_only else out


def _event_status(status: str, region: Any, now: datetime) -> str:
    if status == "retracted":
        return "retracted"
    if region is None or region.status == "expired" or region.window_end <= now:
        return "expired"
    return "active"


def list_candidates(conn: Connection, event_pk: int) -> list[CandidateRow]:
    """The event's candidates: live ones by rank (unranked after, by ln B), then the rest."""
    retracted = case((coincidences.c.status.in_(LIVE), 0), else_=1)
    rows = conn.execute(
        select(coincidences, events.c.event_id).join(events, events.c.id == coincidences.c.event_pk)
        .where(coincidences.c.event_pk == event_pk, coincidences.c.other_event_pk.is_(None))
        .order_by(retracted, coincidences.c.rank.is_(None), coincidences.c.rank,
                  coincidences.c.log_bayes_factor.desc(), coincidences.c.coincidence_id))
    return [_candidate(row) for row in rows]


def _candidate(row: Any) -> CandidateRow:
    payload = row.payload if isinstance(row.payload, Mapping) else {}
    flags = payload.get("flags")
    return CandidateRow(
        coincidence_id=row.coincidence_id, event_id=row.event_id,
        object_id=_text(payload.get("object_id")), survey=_text(payload.get("survey")),
        rank=row.rank, status=row.status, revision=int(row.revision), vetoed=bool(row.vetoed),
        dt_days=number(payload.get("dt_days")),
        credible_level=number(payload.get("credible_level")),
        log_bayes_factor=float(row.log_bayes_factor), p_chance=float(row.p_chance),
        flags=tuple(str(f) for f in flags) if isinstance(flags, list) else (),
        peak_magnitude=number(payload.get("peak_magnitude")),
        peak_band=_text(payload.get("peak_band")),
        ra_deg=number(payload.get("ra")), dec_deg=number(payload.get("dec")),
        payload=payload)


def find_coincidences(conn: Connection, prefix: str, limit: int = 2) -> list[str]:
    """Coincidence ids equal to *prefix* or starting with it (at most *limit*)."""
    exact = conn.execute(select(coincidences.c.coincidence_id)
                         .where(coincidences.c.coincidence_id == prefix)).scalars().all()
    if exact:
        return list(exact)
    # LIKE with the wildcards of the given text escaped.
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return list(conn.execute(
        select(coincidences.c.coincidence_id)
        .where(coincidences.c.coincidence_id.like(pattern, escape="\\"))
        .order_by(coincidences.c.coincidence_id).limit(limit)).scalars())


def candidate(conn: Connection, coincidence_id: str) -> CandidateRow | None:
    """One candidate by its full id, else None."""
    row = conn.execute(
        select(coincidences, events.c.event_id).join(events, events.c.id == coincidences.c.event_pk)
        .where(coincidences.c.coincidence_id == coincidence_id,
               coincidences.c.other_event_pk.is_(None))).first()
    return None if row is None else _candidate(row)


def revisions_of(conn: Connection, coincidence_id: str) -> list[RevisionRow]:
    """A candidate's scoring history, oldest first."""
    rows = conn.execute(select(coincidence_revisions)
                        .where(coincidence_revisions.c.coincidence_id == coincidence_id)
                        .order_by(coincidence_revisions.c.id))
    return [RevisionRow(
        revision=int(r.revision), published=bool(r.published), reason=r.reason,
        changes=tuple(str(c) for c in r.changes) if isinstance(r.changes, list) else (),
        region_version=int(r.region_version), status=r.status,
        credible_level=number(r.credible_level), log_bayes_factor=number(r.log_bayes_factor),
        p_chance=number(r.p_chance), n_scorings=int(r.n_scorings), created_at=r.created_at,
        updated_at=r.updated_at) for r in rows]


def outbox_rows(conn: Connection, *, coincidence_id: str | None = None,
                status: str | None = None, channel: str | None = None,
                limit: int | None = None) -> list[OutboxRow]:
    """Deliveries, newest first, optionally of one candidate, status or channel."""
    query = select(outbox).order_by(outbox.c.id.desc())
    if coincidence_id is not None:
        query = query.where(outbox.c.coincidence_id == coincidence_id)
    if status is not None:
        query = query.where(outbox.c.status == status)
    if channel is not None:
        query = query.where(outbox.c.channel == channel)
    if limit is not None:
        query = query.limit(limit)
    out = []
    for r in conn.execute(query):
        body = r.payload if isinstance(r.payload, Mapping) else {}
        out.append(OutboxRow(
            id=int(r.id), coincidence_id=r.coincidence_id, revision=int(r.revision),
            channel=r.channel, status=r.status, kind=_text(body.get("kind")),
            attempts=int(r.attempts), next_attempt_at=r.next_attempt_at,
            last_error=r.last_error, created_at=r.created_at, sent_at=r.sent_at))
    return out


def dead_letter_rows(conn: Connection, limit: int) -> list[DeadLetterRow]:
    """The newest *limit* dead letters, newest first, raw bytes reduced to their SHA-256."""
    rows = conn.execute(select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit))
    return [DeadLetterRow(
        id=int(r.id), received_at=r.received_at, source=r.source, origin=r.origin,
        error_type=r.error_type, error=r.error, size=int(r.size),
        sha256=hashlib.sha256(bytes(r.raw)).hexdigest()) for r in rows]


def dead_letter_counts(conn: Connection) -> dict[str, int]:
    """Dead letters by ``error_type``, most frequent first."""
    rows = conn.execute(select(dead_letters.c.error_type, func.count())
                        .group_by(dead_letters.c.error_type)).all()
    return {k: int(n) for k, n in sorted(rows, key=lambda r: (-r[1], r[0]))}


def event_keys(conn: Connection, coincidence_id: str) -> tuple[int, int] | None:
    """(event_pk, region_pk) of a candidate, else None."""
    row = conn.execute(select(coincidences.c.event_pk, coincidences.c.region_pk)
                       .where(coincidences.c.coincidence_id == coincidence_id,
                              coincidences.c.other_event_pk.is_(None))).first()
    return None if row is None else (int(row.event_pk), int(row.region_pk))


def carried_channels(conn: Connection, coincidence_id: str) -> list[str]:
    """Channels a candidate was sent to (any revision), sorted."""
    return sorted(set(conn.execute(
        select(outbox.c.channel).where(outbox.c.coincidence_id == coincidence_id,
                                       outbox.c.status == "sent")).scalars()))


@dataclass(frozen=True)
class Latest:
    """The newest item of one source: a notice handler, or a survey and broker."""

    source: str
    count: int
    latest: datetime | None  # issue time of a notice, detection time of an alert
    received_at: datetime | None


@dataclass(frozen=True)
class ChannelCounts:
    """Deliveries of one channel by status, and the newest error recorded."""

    channel: str
    pending: int
    sent: int
    parked: int
    last_error: str | None


def latest_notices(conn: Connection) -> list[Latest]:
    """Per notice handler: notices stored, the newest issue time and reception time."""
    rows = conn.execute(select(notices.c.handler, func.count(), func.max(notices.c.issued_time),
                               func.max(notices.c.received_at)).group_by(notices.c.handler)
                        .order_by(notices.c.handler))
    return [Latest(str(h), int(n), _utc(t), _utc(r)) for h, n, t, r in rows]


def latest_alerts(conn: Connection) -> list[Latest]:
    """Per survey (and broker, ``survey/broker``): alerts, the newest detection and reception."""
    rows = conn.execute(select(alerts.c.survey, alerts.c.broker, func.count(),
                               func.max(alerts.c.time), func.max(alerts.c.received_at))
                        .group_by(alerts.c.survey, alerts.c.broker))
    found = [Latest(s if not b else f"{s}/{b}", int(n), _utc(t), _utc(r))
             for s, b, n, t, r in rows]
    return sorted(found, key=lambda x: x.source)


def _utc(value: Any) -> datetime | None:
    """An aggregate's time: ``max`` returns what the column's type gives, or a string on SQLite."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def outbox_counts(conn: Connection) -> list[ChannelCounts]:
    """Per channel: pending, sent and parked deliveries and the newest ``last_error``."""
    counts: dict[str, dict[str, int]] = {}
    for channel, status, n in conn.execute(select(outbox.c.channel, outbox.c.status, func.count())
                                           .group_by(outbox.c.channel, outbox.c.status)):
        counts.setdefault(channel, {})[status] = int(n)
    newest = func.max(outbox.c.id).label("id")
    last = dict(conn.execute(
        select(outbox.c.channel, outbox.c.last_error).where(outbox.c.id.in_(
            select(newest).where(outbox.c.last_error.is_not(None))
            .group_by(outbox.c.channel)))).all())
    return [ChannelCounts(c, n.get("pending", 0), n.get("sent", 0), n.get("parked", 0),
                          last.get(c)) for c, n in sorted(counts.items())]
