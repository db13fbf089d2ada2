"""What a person does to the database from the command line: mute, unmute, resend.

Each function runs in the caller's transaction. Muting an event stops new
deliveries of its candidates to the human channels (every channel but
``kafka``; :func:`mma.outbox.enqueue` reads ``events.muted_at``), and parks the
human deliveries already waiting, with ``last_error`` ``muted``, so nothing more
reaches a person; retractions are let through, as they are by ``enqueue``.
Unmuting lets new revisions through again and leaves the parked ones parked
(``mma resend`` sends a candidate's latest revision when wanted).

Each is a write concerning one event, so it takes that event's lock
(:mod:`mma.db.locks`) like a daemon's alert batch: a mute waits for the batches
writing the event's candidates and parks what they queued, and every batch
after it sees the mute.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from mma.db import locks
from mma.db.schema import coincidences, events, outbox, regions
from mma.report import record_of

log = logging.getLogger(__name__)

MACHINE_CHANNELS = ("kafka",)  # channels a mute does not silence
MUTED = "muted"  # last_error of the deliveries a mute parked


def is_human(channel: str) -> bool:
    """Whether *channel* (an outbox channel name) reaches a person."""
    return channel.split(":", 1)[0] not in MACHINE_CHANNELS


@dataclass(frozen=True)
class Queued:
    """A delivery written by :func:`resend`."""

    outbox_id: int
    coincidence_id: str
    revision: int
    channel: str
    kind: str


def mute(conn: Connection, event_pk: int, now: datetime) -> int:
    """Mark the event muted at *now* (kept if already muted); park its waiting human deliveries.

    Returns the deliveries parked.
    """
    _lock_event(conn, event_pk)
    conn.execute(update(events).where(events.c.id == event_pk, events.c.muted_at.is_(None))
                 .values(muted_at=now))
    pending = conn.execute(
        select(outbox.c.id, outbox.c.channel, outbox.c.payload)
        .join(coincidences, coincidences.c.coincidence_id == outbox.c.coincidence_id)
        .where(coincidences.c.event_pk == event_pk, outbox.c.status == "pending")).all()
    parked = [r.id for r in pending if is_human(r.channel) and _kind(r.payload) != "retraction"]
    if parked:
        conn.execute(update(outbox).where(outbox.c.id.in_(parked))
                     .values(status="parked", last_error=MUTED))
    log.info("event %d muted: %d waiting deliveries to people parked", event_pk, len(parked))
    return len(parked)


def unmute(conn: Connection, event_pk: int) -> bool:
    """Clear the event's mute; False when it was not muted."""
    _lock_event(conn, event_pk)
    done = conn.execute(update(events).where(events.c.id == event_pk,
                                             events.c.muted_at.is_not(None))
                        .values(muted_at=None)).rowcount
    log.info("event %d unmuted", event_pk)
    return bool(done)


def _lock_event(conn: Connection, event_pk: int) -> None:
    """Wait for the event's writers in flight, and hold new ones off until commit."""
    locks.share_regions(conn)
    locks.lock_events(conn, [event_pk])


def _kind(payload: Any) -> str | None:
    kind = payload.get("kind") if isinstance(payload, Mapping) else None
    return kind if isinstance(kind, str) else None


def resend(conn: Connection, coincidence_id: str, channels: Sequence[str],
           now: datetime) -> list[Queued]:
    """Queue the candidate's latest published revision again, one pending row per channel.

    The message is the one ``enqueue`` wrote for that revision when one exists
    (whatever its channel: the body does not depend on it), else built the same
    way from the stored record. Older pending rows of the candidate on those
    channels give way, as in ``enqueue``. A mute does not hold it back: a person
    asked for it.

    Raises
    ------
    LookupError
        No such candidate.
    """
    event_pk = conn.execute(select(coincidences.c.event_pk).where(
        coincidences.c.coincidence_id == coincidence_id)).scalar()
    if event_pk is None:
        raise LookupError(f"no candidate {coincidence_id}")
    _lock_event(conn, event_pk)  # the revision read below is then the latest
    row = conn.execute(
        select(coincidences, events.c.properties, events.c.test, regions.c.area90_deg2)
        .join(events, events.c.id == coincidences.c.event_pk)
        .outerjoin(regions, regions.c.id == coincidences.c.region_pk)  # a pair may have none
        .where(coincidences.c.coincidence_id == coincidence_id)).first()
    if row is None:
        raise LookupError(f"no candidate {coincidence_id}")
    body = conn.execute(
        select(outbox.c.payload).where(outbox.c.coincidence_id == coincidence_id,
                                       outbox.c.revision == row.revision)
        .order_by(outbox.c.id.desc()).limit(1)).scalar()
    if not isinstance(body, Mapping) or _kind(body) is None:
        record = record_of(row.payload, row.status, row.rank, row.revision)
        body = {"kind": record["kind"], "record": record, "region_pk": row.region_pk,
                "event": {"properties": row.properties, "area90_deg2": row.area90_deg2,
                          "test": row.test}}
    queued = []
    for channel in channels:
        conn.execute(update(outbox).where(
            outbox.c.coincidence_id == coincidence_id, outbox.c.channel == channel,
            outbox.c.status == "pending").values(status="superseded"))
        pk = conn.execute(insert(outbox).values(
            coincidence_id=coincidence_id, revision=row.revision, channel=channel,
            payload=dict(body), status="pending", attempts=0, next_attempt_at=now,
            created_at=now).returning(outbox.c.id)).scalar_one()
        queued.append(Queued(int(pk), coincidence_id, int(row.revision), channel,
                             str(_kind(body))))
        log.info("coincidence %s r%d: queued again for %s", coincidence_id, row.revision,
                 channel)
    return queued
