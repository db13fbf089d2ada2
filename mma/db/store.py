"""Writes of events, notices, regions and alerts (bulk paths in :mod:`mma.db.bulk`).

Every function takes an open :class:`sqlalchemy.Connection` inside a
transaction owned by the caller (:mod:`mma.ingest`), so that a notice, its
region and the coincidences it causes commit together or not at all. Writes are
idempotent: re-ingesting the same notice bytes or the same alert is a no-op.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, insert, select, update

from mma.db.schema import (
    dead_letters,
    event_aliases,
    events,
    notices,
    regions,
)
from mma.lifecycle import after_retraction, order_key
from mma.models import Notice, StoredEvent, event_class_of

log = logging.getLogger(__name__)

def insert_pk(conn: Connection, stmt: Any) -> int:
    """Execute an INSERT and return the new row's integer primary key."""
    key = conn.execute(stmt).inserted_primary_key
    assert key is not None
    return int(key[0])


@dataclass(frozen=True)
class StoredNotice:
    """Result of :func:`add_notice`."""

    event_pk: int
    notice_pk: int
    is_new: bool  # False when the same bytes were stored before (idempotent re-delivery)
    # The event was retracted before: stored, flagged after_retraction, inert.
    inert: bool = False


def notice_stored(conn: Connection, raw: bytes) -> bool:
    """Whether a notice with exactly these bytes is stored (as :func:`add_notice` tells)."""
    return _notice_with(conn, _digest(raw)) is not None


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _notice_with(conn: Connection, digest: str) -> Any:
    """The stored notice (``id``, ``event_pk``) whose bytes have this SHA-256, or None."""
    return conn.execute(select(notices.c.id, notices.c.event_pk)
                        .where(notices.c.sha256 == digest)).first()


def add_notice(conn: Connection, notice: Notice, raw: bytes, *, handler: str,
               origin: str | None, burst_of: int | None = None) -> StoredNotice:
    """Store a notice and create or update its event (with aliases), event row locked.

    The newest notice by :func:`mma.lifecycle.order_key` sets the event's time,
    class, properties and flags, whatever order notices arrive in; a revised
    event time never forks a new event. A notice of a retracted event is stored
    with the flag ``after_retraction`` and marked inert (sticky retraction).

    *burst_of* is the event a notice none of whose names is known joins as
    another mission's view of the same burst (:mod:`mma.ingest.bursts`). Notices
    of another handler than the event's first never set its time, class or
    properties: the event keeps its first mission's trigger.
    """
    digest = _digest(raw)
    known = _notice_with(conn, digest)
    if known is not None:
        return StoredNotice(known.event_pk, known.id, is_new=False)
    event_class = event_class_of(notice.messenger, notice.event_class)
    event_pk = find_event(conn, (notice.event_id, *notice.aliases))
    if event_pk is None and burst_of is not None:
        event_pk = burst_of
        log.info("event %s: %s %s joins it as the same burst (%s)", notice.event_id,
                 notice.instrument, notice.notice_type, origin)
    inert = False
    if event_pk is None:
        event_pk = insert_pk(conn, insert(events).values(
            event_id=notice.event_id, messenger=notice.messenger, event_class=event_class,
            instrument=notice.instrument, event_time=notice.event_time,
            status="active", test=notice.test, properties=plain_json(notice.properties),
            flags=list(notice.flags),
        ))
        log.info("event %s: new %s event (%s) from %s", notice.event_id, notice.messenger,
                 event_class, notice.instrument)
    else:
        inert = _update_event(conn, event_pk, notice, handler, digest)
    for alias in {notice.event_id, *notice.aliases}:
        if conn.execute(select(event_aliases.c.alias).where(
                event_aliases.c.alias == alias)).first() is None:
            conn.execute(insert(event_aliases).values(alias=alias, event_pk=event_pk))
    flags = [*notice.flags, *(["retraction"] if notice.retraction else []),
             *(["after_retraction"] if inert else [])]
    notice_pk = insert_pk(conn, insert(notices).values(
        event_pk=event_pk, handler=handler, notice_type=notice.notice_type,
        issued_time=notice.issued_time, origin=origin, sha256=digest, raw=raw,
        properties=plain_json(notice.properties), flags=flags,
    ))
    return StoredNotice(event_pk, notice_pk, is_new=True, inert=inert)


def _update_event(conn: Connection, event_pk: int, notice: Notice, handler: str,
                  digest: str) -> bool:
    """Lock the event and let *notice* set it if it is the newest of the event's own
    handler with an event time; whether the notice is inert (after a retraction)."""
    status = lock_event(conn, event_pk)
    sets_time = not (notice.retraction or "no_event_time" in notice.flags) and \
        home_handler(conn, event_pk) in (None, handler)
    mine = order_key(notice.issued_time, notice.notice_type, digest)
    # The event is what its newest notice with an event time says, whatever order
    # they came in, and even after a retraction (which then still stands).
    newest = sets_time and all(
        order_key(r.issued_time, r.notice_type, r.sha256) < mine
        for r in conn.execute(select(notices.c.issued_time, notices.c.notice_type,
                                     notices.c.sha256, notices.c.flags)
                              .where(notices.c.event_pk == event_pk,
                                     notices.c.handler == handler))
        if not _without_time(r.notice_type, r.flags))
    if newest:
        conn.execute(update(events).where(events.c.id == event_pk).values(
            event_time=notice.event_time,
            event_class=event_class_of(notice.messenger, notice.event_class),
            properties=plain_json(notice.properties), flags=list(notice.flags)))
    return after_retraction(status, notice.retraction)


def _without_time(notice_type: str, flags: list[str] | None) -> bool:
    """A stored retraction or time-only notice (it sets no event time)."""
    marks = set(flags or ())
    return bool(marks & {"retraction", "no_event_time"}) or notice_type.lower() == "retraction"


def home_handler(conn: Connection, event_pk: int) -> str | None:
    """The handler of the event's first stored notice (the mission that named it)."""
    return conn.execute(select(notices.c.handler).where(notices.c.event_pk == event_pk)
                        .order_by(notices.c.id).limit(1)).scalar()


def lock_event(conn: Connection, event_pk: int) -> str:
    """Lock the event row until the transaction ends (PostgreSQL); its status.

    Every write about one event (a notice, its region, a retraction) takes this
    lock first, so that they are serialised across daemons.
    """
    return str(conn.execute(select(events.c.status).where(events.c.id == event_pk)
                            .with_for_update()).scalar_one())


def find_event(conn: Connection, names: Iterable[str]) -> int | None:
    """Primary key of the event known under any of *names*, or None."""
    row = conn.execute(
        select(event_aliases.c.event_pk).where(event_aliases.c.alias.in_(list(names)))
    ).first()
    return None if row is None else int(row.event_pk)


def load_event(conn: Connection, event_pk: int) -> StoredEvent:
    """The stored event with its sorted aliases."""
    row = conn.execute(select(events).where(events.c.id == event_pk)).one()
    aliases = sorted(conn.execute(
        select(event_aliases.c.alias).where(event_aliases.c.event_pk == event_pk)
    ).scalars())
    return StoredEvent(
        pk=row.id, event_id=row.event_id, messenger=row.messenger,
        event_class=event_class_of(row.messenger, row.event_class),
        instrument=row.instrument, event_time=row.event_time,
        status=row.status, test=row.test, aliases=tuple(aliases),
        properties=dict(row.properties or {}), flags=tuple(row.flags or ()))


def retract_event(conn: Connection, event_pk: int) -> None:
    """Mark an event and all its regions retracted (its candidates: the caller).

    Every region, not only the active one: the final state is then the same
    whether a notice issued before the retraction arrived before it or after.
    """
    conn.execute(update(events).where(events.c.id == event_pk).values(status="retracted"))
    conn.execute(update(regions).where(regions.c.event_pk == event_pk)
                 .values(status="retracted"))


def jsonable(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Plain JSON types only (numpy scalars from Avro/parquet decoders become Python).

    NaN and infinities become null (not measured): the database's JSON
    serializer refuses them (:func:`mma.db.engine.json_dumps`). Nested mappings
    and lists are cleaned likewise (:func:`plain_json`).
    """
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, np.generic):
            value = value.item()
        # math.isfinite: np.isfinite costs ~1 us on a Python float, ~40 keys an alert.
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif isinstance(value, dict | list | tuple):  # concrete types: ~40 keys an alert
            value = plain_json(value)
        out[key] = value
    return out


def plain_json(value: Any) -> Any:
    """*value* as plain JSON types, recursively; NaN and ±inf become null.

    For what a message states rather than what mma computes (notice
    properties, alert quality): a number that is not finite says nothing.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: plain_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(item) for item in value]
    return value


def add_dead_letter(engine: Engine, *, source: str, origin: str | None, error: BaseException,
                    raw: bytes) -> int:
    """Keep the raw bytes of a message that could not be processed, in its own transaction."""
    with engine.begin() as conn:
        pk = insert_pk(conn, insert(dead_letters).values(
            source=_text(source)[:64], origin=None if origin is None else _text(origin),
            error_type=_text(type(error).__name__)[:64], error=_text(str(error))[:4000],
            size=len(raw), raw=raw,
        ))
    return pk


def _text(value: str) -> str:
    """*value* storable as text: PostgreSQL refuses NUL characters (written ``\\x00``)."""
    return value.replace("\x00", "\\x00")
