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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mma.db.bulk import bulk_insert, lookup
from mma.db.schema import (
    HISTORY_CAP,
    UTCDateTime,
    alerts,
    dead_letters,
    event_aliases,
    events,
    notices,
    objects,
    regions,
)
from mma.lifecycle import after_retraction, order_key
from mma.models import Alert, Notice, StoredEvent, event_class_of

log = logging.getLogger(__name__)

OBJECT_CHUNK = 1000  # objects per INSERT ... VALUES (7 parameters each)


def _insert(conn: Connection, stmt: Any) -> int:
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
        event_pk = _insert(conn, insert(events).values(
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
    notice_pk = _insert(conn, insert(notices).values(
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


def history_of(alert: Alert) -> list[int] | None:
    """The alert's packet history as stored: the newest HISTORY_CAP, Unix seconds."""
    if alert.history_source is None:
        return None
    return sorted({round(t.timestamp()) for t in alert.history})[-HISTORY_CAP:]


class StoredAlert(NamedTuple):
    """An alert as :func:`add_alerts` stored it."""

    alert_pk: int
    object_first: datetime  # the object's first detection so far, UTC
    object_pk: int
    object_last: datetime | None = None  # the object's latest alert before this one, UTC


def add_alert(conn: Connection, alert: Alert, *, hpx29: int,
              vetoes: Sequence[str]) -> StoredAlert | None:
    """Store an alert and update its object; None if this alert was stored before."""
    if conn.execute(select(alerts.c.id).where(
            alerts.c.survey == alert.survey, alerts.c.alert_id == alert.alert_id)).first():
        return None
    first = min(t for t in (alert.time, alert.first_detection) if t is not None)
    obj = conn.execute(select(objects).where(
        objects.c.survey == alert.survey, objects.c.object_id == alert.object_id)).first()
    if obj is None:
        object_pk = _insert(conn, insert(objects).values(
            survey=alert.survey, object_id=alert.object_id, ra_deg=alert.ra_deg,
            dec_deg=alert.dec_deg, first_time=first, last_time=alert.time, n_alerts=1,
        ))
        object_first = first
    else:
        object_pk = obj.id
        object_first = min(obj.first_time, first)
        conn.execute(update(objects).where(objects.c.id == obj.id).values(
            first_time=object_first, last_time=max(obj.last_time, alert.time),
            n_alerts=obj.n_alerts + 1,
        ))
    alert_pk = _insert(conn, insert(alerts).values(
        survey=alert.survey, alert_id=alert.alert_id, object_pk=object_pk,
        ra_deg=alert.ra_deg, dec_deg=alert.dec_deg, hpx29=hpx29, time=alert.time,
        band=alert.band, magnitude=alert.magnitude, magnitude_err=alert.magnitude_err,
        first_detection=alert.first_detection, distance_mpc=alert.distance_mpc,
        broker=alert.broker, quality=_jsonable(alert.quality), vetoes=list(vetoes),
        passes_vetting=not vetoes, history=history_of(alert),
        history_source=alert.history_source,
    ))
    return StoredAlert(alert_pk, object_first, object_pk, None if obj is None else obj.last_time)


def add_alerts(conn: Connection, batch: Sequence[Alert], *, hpx29: Sequence[int],
               vetoes: Sequence[Sequence[str]]) -> list[StoredAlert | None]:
    """Store many alerts and update their objects, as :func:`add_alert` would one by one.

    A few statements for the whole batch instead of four per alert (a Rubin
    visit is ~10,000 alerts). Alerts stored before, or repeated within the
    batch, give None; the others give their :class:`StoredAlert`, where
    the object's first time includes only the alerts before it in *batch*,
    exactly as sequential calls would. Several daemons may store alerts of one
    object at once: objects are created with ``ON CONFLICT DO NOTHING`` and
    updated relatively (earliest, latest, count added), so no write is lost.
    """
    out: list[StoredAlert | None] = [None] * len(batch)
    seen = set(lookup(conn, alerts.c.alert_id, {(a.survey, a.alert_id) for a in batch}))
    fresh: list[int] = []
    for i, alert in enumerate(batch):
        if (alert.survey, alert.alert_id) not in seen:
            seen.add((alert.survey, alert.alert_id))
            fresh.append(i)
    if not fresh:
        return out
    state, object_first, object_last = _object_states(conn, batch, fresh)
    _write_objects(conn, state)
    now = datetime.now(UTC)
    bulk_insert(conn, alerts, [
        {"survey": a.survey, "alert_id": a.alert_id,
         "object_pk": state[(a.survey, a.object_id)]["id"], "ra_deg": a.ra_deg,
         "dec_deg": a.dec_deg, "hpx29": int(hpx29[i]), "time": a.time, "band": a.band,
         "magnitude": a.magnitude, "magnitude_err": a.magnitude_err,
         "first_detection": a.first_detection, "distance_mpc": a.distance_mpc,
         "broker": a.broker, "quality": _jsonable(a.quality), "vetoes": list(vetoes[i]),
         "passes_vetting": not vetoes[i], "received_at": now,
         "history": history_of(a), "history_source": a.history_source}
        for i, a in ((i, batch[i]) for i in fresh)])
    stored = lookup(conn, alerts.c.alert_id,
                     [(batch[i].survey, batch[i].alert_id) for i in fresh], alerts.c.id)
    for i in fresh:
        obj = state[(batch[i].survey, batch[i].object_id)]
        # An object another daemon created meanwhile: its earlier detections count too.
        first = min(object_first[i], obj.get("stored_first") or object_first[i])
        last = object_last[i] if object_last[i] is not None else obj.get("stored_last")
        out[i] = StoredAlert(stored[(batch[i].survey, batch[i].alert_id)].id, first,
                             obj["id"], last)
    return out


def _object_states(conn: Connection, batch: Sequence[Alert], fresh: list[int]) -> tuple[
        dict[tuple[str, str], dict[str, Any]], dict[int, datetime], dict[int, datetime | None]]:
    """Per object of the fresh alerts: what this batch adds; per alert, its object's
    first and last times before it."""
    known = lookup(conn, objects.c.object_id,
                    {(batch[i].survey, batch[i].object_id) for i in fresh},
                    objects.c.id, objects.c.first_time, objects.c.last_time)
    state: dict[tuple[str, str], dict[str, Any]] = {
        key: {"id": row.id, "first": row.first_time, "last": row.last_time, "added": 0}
        for key, row in known.items()}
    object_first: dict[int, datetime] = {}
    object_last: dict[int, datetime | None] = {}
    for i in fresh:
        alert = batch[i]
        first = min(t for t in (alert.time, alert.first_detection) if t is not None)
        obj = state.get((alert.survey, alert.object_id))
        object_last[i] = None if obj is None else obj["last"]
        if obj is None:
            state[(alert.survey, alert.object_id)] = obj = {
                "id": None, "first": first, "last": alert.time, "added": 1,
                "ra": alert.ra_deg, "dec": alert.dec_deg}
        else:
            obj.update(first=min(obj["first"], first), last=max(obj["last"], alert.time),
                       added=obj["added"] + 1)
        object_first[i] = obj["first"]
    return state, object_first, object_last


def _write_objects(conn: Connection, state: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Create the new objects and update the others (relative: concurrent writers add up)."""
    created = [(key, obj) for key, obj in state.items() if obj["id"] is None]
    insert_of = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for i in range(0, len(created), OBJECT_CHUNK):
        values = insert_of(objects).values([
            {"survey": survey, "object_id": object_id, "ra_deg": obj["ra"],
             "dec_deg": obj["dec"], "first_time": obj["first"], "last_time": obj["last"],
             "n_alerts": obj["added"]} for (survey, object_id), obj in created[i:i + OBJECT_CHUNK]])
        for row in conn.execute(values.on_conflict_do_nothing(
                index_elements=["survey", "object_id"]).returning(
                objects.c.survey, objects.c.object_id, objects.c.id)):
            obj = state[(row.survey, row.object_id)]
            obj["id"], obj["added"] = row.id, 0  # its count is in the row already
    raced = [key for key, obj in created if obj["id"] is None]  # created by another writer
    for key, row in lookup(conn, objects.c.object_id, raced, objects.c.id, objects.c.first_time,
                           objects.c.last_time).items():
        state[key].update(id=row.id, stored_first=row.first_time, stored_last=row.last_time)
    changed = [obj for obj in state.values() if obj["added"]]
    if changed:
        least, greatest = ((func.least, func.greatest) if conn.dialect.name == "postgresql"
                           else (func.min, func.max))
        conn.execute(update(objects).where(objects.c.id == bindparam("pk")).values(
            first_time=least(objects.c.first_time, bindparam("first", type_=UTCDateTime)),
            last_time=greatest(objects.c.last_time, bindparam("last", type_=UTCDateTime)),
            n_alerts=objects.c.n_alerts + bindparam("added")),
            [{"pk": o["id"], "first": o["first"], "last": o["last"], "added": o["added"]}
             for o in sorted(changed, key=lambda o: o["id"])])


def _jsonable(mapping: Mapping[str, Any]) -> dict[str, Any]:
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
        pk = _insert(conn, insert(dead_letters).values(
            source=_text(source)[:64], origin=None if origin is None else _text(origin),
            error_type=_text(type(error).__name__)[:64], error=_text(str(error))[:4000],
            size=len(raw), raw=raw,
        ))
    return pk


def _text(value: str) -> str:
    """*value* storable as text: PostgreSQL refuses NUL characters (written ``\\x00``)."""
    return value.replace("\x00", "\\x00")
