"""Writes of alerts and their objects, a batch at a time (a Rubin visit is ~10,000 alerts).

Every function takes an open :class:`sqlalchemy.Connection` inside a transaction
owned by the caller (:mod:`mma.ingest.alerts`): the alerts, their objects and the
candidates they cause commit together. Writes are idempotent: an alert stored
before is not stored again and its object is not counted twice. The bulk
statements themselves (COPY, sequence draws) are in :mod:`mma.db.bulk`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, insert, select, update

from mma.db.bulk import bulk_insert, insert_new, lookup, next_ids
from mma.db.schema import HISTORY_CAP, UTCDateTime, alerts, objects
from mma.db.store import insert_pk, jsonable
from mma.models import Alert

__all__ = ["StoredAlert", "add_alert", "add_alerts", "history_of"]


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
        object_pk = insert_pk(conn, insert(objects).values(
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
    alert_pk = insert_pk(conn, insert(alerts).values(
        survey=alert.survey, alert_id=alert.alert_id, object_pk=object_pk,
        ra_deg=alert.ra_deg, dec_deg=alert.dec_deg, hpx29=hpx29, time=alert.time,
        band=alert.band, magnitude=alert.magnitude, magnitude_err=alert.magnitude_err,
        first_detection=alert.first_detection, distance_mpc=alert.distance_mpc,
        broker=alert.broker, quality=stored_quality(alert), vetoes=list(vetoes),
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
    alert_pks = _insert_alerts(conn, batch, fresh, state, hpx29, vetoes)
    for i, alert_pk in zip(fresh, alert_pks, strict=True):
        obj = state[(batch[i].survey, batch[i].object_id)]
        # An object another daemon created meanwhile: its earlier detections count too.
        first = min(object_first[i], obj.get("stored_first") or object_first[i])
        last = object_last[i] if object_last[i] is not None else obj.get("stored_last")
        out[i] = StoredAlert(alert_pk, first, obj["id"], last)
    return out


def stored_quality(alert: Alert) -> dict[str, Any]:
    """The alert's quality fields as stored: plain JSON; for a survey's own alert, only
    the fields that say something.

    A survey alert's quality is read by nothing once it is vetted (its vetoes are
    stored with it): it is kept for people. Null (not measured) and false (a flag
    not raised) say nothing there, and leaving them out takes a Rubin alert's quality
    from ~1,050 to ~300 bytes of JSON. A broker's alert keeps every field: its
    classes are read from them (:func:`mma.match.classes.alert_classes`).
    """
    quality = jsonable(alert.quality)
    if alert.broker is not None:
        return quality
    return {key: value for key, value in quality.items()
            if value is not None and value is not False}


def _insert_alerts(conn: Connection, batch: Sequence[Alert], fresh: list[int],
                   state: Mapping[tuple[str, str], Mapping[str, Any]], hpx29: Sequence[int],
                   vetoes: Sequence[Sequence[str]]) -> list[int]:
    """Insert the fresh alerts of *batch* in bulk; their primary keys, in *fresh*'s order.

    On PostgreSQL the keys are drawn from the table's sequence first (one
    query) and written with the rows, so no lookup of the stored rows follows.
    """
    now = datetime.now(UTC)
    rows = [{"survey": a.survey, "alert_id": a.alert_id,
             "object_pk": state[(a.survey, a.object_id)]["id"], "ra_deg": a.ra_deg,
             "dec_deg": a.dec_deg, "hpx29": int(hpx29[i]), "time": a.time, "band": a.band,
             "magnitude": a.magnitude, "magnitude_err": a.magnitude_err,
             "first_detection": a.first_detection, "distance_mpc": a.distance_mpc,
             "broker": a.broker, "quality": stored_quality(a), "vetoes": list(vetoes[i]),
             "passes_vetting": not vetoes[i], "received_at": now,
             "history": history_of(a), "history_source": a.history_source}
            for i, a in ((i, batch[i]) for i in fresh)]
    if conn.dialect.name == "postgresql":
        pks = next_ids(conn, alerts, len(rows))
        bulk_insert(conn, alerts, [{"id": pk, **row} for pk, row in zip(pks, rows, strict=True)])
        return pks
    bulk_insert(conn, alerts, rows)
    stored = lookup(conn, alerts.c.alert_id, [(r["survey"], r["alert_id"]) for r in rows],
                    alerts.c.id)
    return [stored[(r["survey"], r["alert_id"])].id for r in rows]


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
    created = sorted((key, obj) for key, obj in state.items() if obj["id"] is None)
    rows = [{"survey": survey, "object_id": object_id, "ra_deg": obj["ra"],
             "dec_deg": obj["dec"], "first_time": obj["first"], "last_time": obj["last"],
             "n_alerts": obj["added"]} for (survey, object_id), obj in created]
    for key, object_pk in insert_new(conn, objects, rows, "object_id").items():
        state[key].update(id=object_pk, added=0)  # its count is in the row already
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
