"""Event x event coincidences as stored: rows of ``coincidences`` with ``other_event_pk``.

A pair has no object, alert or score columns; its record (``payload``) carries
the joint numbers (:mod:`mma.match.pairs`). Every function runs in the
caller's transaction, which holds the regions lock (:mod:`mma.db.locks`): a
notice and the pairs it makes or changes commit together.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, insert, or_, select

from mma.db.schema import coincidences, events
from mma.db.store import load_event
from mma.models import StoredEvent


def events_near(conn: Connection, t0: datetime, span_s: float,
                exclude_pk: int) -> list[StoredEvent]:
    """Events whose time lies within *span_s* seconds of *t0* (UTC), any status."""
    span = timedelta(seconds=span_s)
    pks = conn.execute(select(events.c.id).where(
        events.c.event_time >= t0 - span, events.c.event_time <= t0 + span,
        events.c.id != exclude_pk).order_by(events.c.id)).scalars().all()
    return [load_event(conn, int(pk)) for pk in pks]


def pairs_of(conn: Connection, event_pk: int) -> list[Row[Any]]:
    """The event's event x event coincidences (as first or second event), locked, by id."""
    return list(conn.execute(
        select(coincidences).where(
            coincidences.c.other_event_pk.is_not(None),
            or_(coincidences.c.event_pk == event_pk,
                coincidences.c.other_event_pk == event_pk))
        .order_by(coincidences.c.coincidence_id).with_for_update()))


def pair_of(conn: Connection, first_pk: int, second_pk: int) -> Row[Any] | None:
    """The stored coincidence of the two events (in this order), locked, or None."""
    return conn.execute(select(coincidences).where(and_(
        coincidences.c.event_pk == first_pk,
        coincidences.c.other_event_pk == second_pk)).with_for_update()).first()


def insert_pair(conn: Connection, cid: str, *, first_pk: int, second_pk: int,
                region_pk: int | None, payload: Mapping[str, Any]) -> None:
    """Store a new event x event coincidence (revision 1, active)."""
    conn.execute(insert(coincidences).values(
        coincidence_id=cid, event_pk=first_pk, other_event_pk=second_pk,
        region_pk=region_pk, status="active", vetoed=False, revision=1,
        payload=dict(payload)))


def event_event_records(conn: Connection, event_pk: int) -> list[dict[str, Any]]:
    """The event's event x event coincidences, as first or as second event, by id.

    Parameters
    ----------
    conn : Connection
        Read-only use.
    event_pk : int
        The event (``events.id``).

    Returns
    -------
    list of dict
        ``payload`` (the published record, ``{}`` when not a mapping), ``status``,
        ``revision`` and ``primary`` (True when *event_pk* is the record's first event,
        False when it is its ``other``).
    """
    rows = conn.execute(
        select(coincidences.c.payload, coincidences.c.status, coincidences.c.revision,
               coincidences.c.event_pk)
        .where((coincidences.c.event_pk == event_pk)
               | (coincidences.c.other_event_pk == event_pk),
               coincidences.c.other_event_pk.is_not(None))
        .order_by(coincidences.c.coincidence_id))
    return [{"payload": dict(r.payload) if isinstance(r.payload, Mapping) else {},
             "status": str(r.status), "revision": int(r.revision),
             "primary": int(r.event_pk) == event_pk} for r in rows]
