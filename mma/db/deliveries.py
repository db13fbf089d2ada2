"""The outbox table's SQL: deliveries written, claimed, marked (:mod:`mma.outbox`).

Each function runs in the caller's transaction. A delivery is one row of
``outbox``: a coincidence's revision for one channel, ``pending`` until it is
``sent``, ``superseded`` by a newer revision or ``parked`` after failures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from mma.db.schema import coincidences, events, outbox, regions

CHUNK = 500  # ids per IN (...) list


def to_deliver(conn: Connection, ids: Sequence[str]
               ) -> tuple[dict[str, Row[Any]], dict[str, set[str]]]:
    """What :func:`mma.outbox.enqueue` needs of *ids*: by id, the coincidence with
    its event (properties, test, muted_at) and its region's 90 % area; and the
    channels that carried it (sent or pending deliveries)."""
    found: dict[str, Row[Any]] = {}
    carried: dict[str, set[str]] = {cid: set() for cid in ids}
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        for row in conn.execute(
                select(coincidences, events.c.properties, events.c.test, events.c.muted_at,
                       regions.c.area90_deg2)
                .join(events, events.c.id == coincidences.c.event_pk)
                .outerjoin(regions, regions.c.id == coincidences.c.region_pk)
                .where(coincidences.c.coincidence_id.in_(chunk))):
            found[row.coincidence_id] = row
        for cid, channel in conn.execute(select(outbox.c.coincidence_id, outbox.c.channel).where(
                outbox.c.coincidence_id.in_(chunk), outbox.c.status.in_(("sent", "pending")))):
            carried[cid].add(channel)
    return found, carried


def replace_pending(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Write *rows* (outbox values); older pending rows of their coincidence and channel
    give way (``superseded``): only the newest revision is sent."""
    for channel in sorted({r["channel"] for r in rows}):
        mine = [r["coincidence_id"] for r in rows if r["channel"] == channel]
        for i in range(0, len(mine), CHUNK):
            conn.execute(update(outbox).where(
                outbox.c.coincidence_id.in_(mine[i:i + CHUNK]), outbox.c.channel == channel,
                outbox.c.status == "pending").values(status="superseded"))
    if rows:
        conn.execute(insert(outbox), list(rows))


def release(conn: Connection, owner: str, now: datetime) -> int:
    """Make the pending deliveries *owner* claimed due at *now*; how many."""
    released = conn.execute(update(outbox).where(
        outbox.c.status == "pending", outbox.c.claimed_by == owner,
        outbox.c.next_attempt_at > now).values(next_attempt_at=now))
    return int(released.rowcount or 0)


def claim(conn: Connection, now: datetime, lease: timedelta, batch: int,
          channels: Iterable[str], owner: str | None) -> list[Row[Any]]:
    """Claim up to *batch* due rows of *channels* for *lease*, in id order.

    ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so that several daemons take
    disjoint rows; the UPDATE is conditional, so on SQLite (no row locks) a
    second drainer's claim matches nothing.
    """
    query = (select(outbox.c.id).where(
        outbox.c.status == "pending", outbox.c.next_attempt_at <= now,
        outbox.c.channel.in_(list(channels))).order_by(outbox.c.id).limit(batch))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(conn.execute(query).scalars())
    if not ids:
        return []
    claimed = list(conn.execute(update(outbox).where(
        outbox.c.id.in_(ids), outbox.c.status == "pending",
        outbox.c.next_attempt_at <= now).values(
        next_attempt_at=now + lease, attempts=outbox.c.attempts + 1, claimed_by=owner)
        .returning(outbox.c.id)).scalars())
    return list(conn.execute(select(outbox).where(outbox.c.id.in_(claimed))
                             .order_by(outbox.c.id)))


def mark_sent(conn: Connection, ids: Sequence[int], now: datetime) -> None:
    """The deliveries *ids* were sent at *now*."""
    conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(
        status="sent", sent_at=now, last_error=None))


def postpone(conn: Connection, ids: Sequence[int], until: datetime) -> None:
    """Give back claimed deliveries untried: due again at *until*, the claim not counted."""
    conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(
        next_attempt_at=until, attempts=outbox.c.attempts - 1))


def reschedule(conn: Connection, outbox_id: int, *, park: bool, error: str,
               at: datetime) -> None:
    """A failed delivery: pending again at *at*, or parked; *error* kept (2,000 chars)."""
    conn.execute(update(outbox).where(outbox.c.id == outbox_id).values(
        status="parked" if park else "pending", last_error=error[:2000], next_attempt_at=at))


def oldest_due(conn: Connection, channel: str, now: datetime) -> datetime | None:
    """When the oldest delivery of *channel* due at *now* was written; None if none."""
    oldest: datetime | None = conn.execute(select(func.min(outbox.c.created_at)).where(
        outbox.c.channel == channel, outbox.c.status == "pending",
        outbox.c.next_attempt_at <= now)).scalar_one()
    return oldest
