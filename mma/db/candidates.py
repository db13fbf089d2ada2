"""Candidate rows: objects with their detections, candidates, their revisions and ranks.

The SQL behind :mod:`mma.match.correlator` and :mod:`mma.match.candidate`.
Every function runs in the caller's transaction. Candidate rows are read
``FOR UPDATE`` before they are revised (in coincidence-id order everywhere):
two daemons re-scoring the same candidate would otherwise both write revision
r + 1, and the same message would be published twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    bindparam,
    case,
    func,
    null,
    select,
    text,
    update,
)

from mma.db.bulk import bulk_insert
from mma.db.engine import json_dumps
from mma.db.schema import alerts, coincidence_revisions, coincidences, objects
from mma.match.classes import alert_classes
from mma.models import Detection, StoredObject

CHUNK = 500  # keys per IN (...) list


def objects_until(conn: Connection, object_pks: Iterable[int],
                  until: datetime) -> dict[int, StoredObject]:
    """The objects *object_pks* with every stored alert up to *until* (UTC), by pk."""
    pks = sorted(set(object_pks))
    out: dict[int, StoredObject] = {}
    found: dict[int, list[Detection]] = {pk: [] for pk in pks}
    for i in range(0, len(pks), CHUNK):
        chunk = pks[i:i + CHUNK]
        for row in conn.execute(
                select(alerts.c.id, alerts.c.object_pk, alerts.c.alert_id, alerts.c.time,
                       alerts.c.ra_deg, alerts.c.dec_deg, alerts.c.hpx29, alerts.c.band,
                       alerts.c.magnitude, alerts.c.magnitude_err, alerts.c.vetoes,
                       alerts.c.history, alerts.c.history_source, alerts.c.distance_mpc,
                       alerts.c.broker, _BROKER_QUALITY)
                .where(alerts.c.object_pk.in_(chunk), alerts.c.time <= until)):
            found[row.object_pk].append(_detection(row))
        for obj in conn.execute(select(objects).where(objects.c.id.in_(chunk))):
            found[obj.id].sort(key=lambda d: (d.time, d.alert_id))
            out[obj.id] = StoredObject(obj.id, obj.survey, obj.object_id, obj.first_time,
                                       tuple(found[obj.id]))
    return out


# The quality fields are read for a broker's classes only: a survey's own alert would
# decode a JSON document per detection for nothing (a back-match reads 10^5 of them).
_BROKER_QUALITY = case((alerts.c.broker.is_not(None), alerts.c.quality),
                       else_=null()).label("quality")


def _detection(row: Any) -> Detection:
    history = tuple(datetime.fromtimestamp(t, UTC) for t in row.history or ())
    return Detection(
        alert_pk=row.id, alert_id=row.alert_id, time=row.time, ra_deg=row.ra_deg,
        dec_deg=row.dec_deg, hpx29=row.hpx29, band=row.band, magnitude=row.magnitude,
        magnitude_err=row.magnitude_err, vetoes=tuple(row.vetoes or ()), history=history,
        history_source=row.history_source, distance_mpc=row.distance_mpc,
        classes=alert_classes(row.broker, row.quality) if row.broker else {})


def object_of_alert(conn: Connection, survey: str, alert_id: str) -> tuple[int, int] | None:
    """(alert_pk, object_pk) of a stored alert, or None."""
    row = conn.execute(select(alerts.c.id, alerts.c.object_pk).where(
        alerts.c.survey == survey, alerts.c.alert_id == alert_id)).first()
    return None if row is None else (int(row.id), int(row.object_pk))


def veto_alert(conn: Connection, alert_pk: int, vetoes: Sequence[str]) -> None:
    """Mark a stored alert as failing vetting (a source the survey withdrew)."""
    conn.execute(update(alerts).where(alerts.c.id == alert_pk).values(
        vetoes=list(vetoes), passes_vetting=False))


def lock_many(conn: Connection, cids: Iterable[str]) -> dict[str, Row[Any]]:
    """The stored candidates among *cids*, locked in id order (as every daemon locks)."""
    ordered = sorted(set(cids))
    out: dict[str, Row[Any]] = {}
    for i in range(0, len(ordered), CHUNK):
        for row in conn.execute(select(coincidences).where(
                coincidences.c.coincidence_id.in_(ordered[i:i + CHUNK]))
                .order_by(coincidences.c.coincidence_id).with_for_update()):
            out[row.coincidence_id] = row
    return out


def live_of_event(conn: Connection, event_pk: int) -> list[Row[Any]]:
    """The event's candidates not retracted, locked, in id order (not its event pairs)."""
    return list(conn.execute(_live_of_event(select(coincidences), event_pk)))


def live_ids_of_event(conn: Connection, event_pk: int) -> list[str]:
    """The ids of :func:`live_of_event`, locked alike, without their records.

    A back-match keeps most of them: it reads the records of the others only
    (:func:`lock_many`), not a JSON payload per candidate of the event.
    """
    return list(conn.execute(_live_of_event(select(coincidences.c.coincidence_id),
                                            event_pk)).scalars())


def _live_of_event(query: Select[Any], event_pk: int) -> Select[Any]:
    return (query.where(coincidences.c.event_pk == event_pk,
                        coincidences.c.other_event_pk.is_(None),
                        coincidences.c.status != "retracted")
            .order_by(coincidences.c.coincidence_id).with_for_update())


def live_of_object(conn: Connection, object_pk: int) -> list[Row[Any]]:
    """The object's candidates (any event) not retracted, in id order."""
    return list(conn.execute(
        select(coincidences.c.coincidence_id, coincidences.c.event_pk).where(
            coincidences.c.object_pk == object_pk, coincidences.c.status != "retracted")
        .order_by(coincidences.c.coincidence_id)))


def insert_candidates(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Store new candidates (``coincidences`` columns, the same in every row; status,
    revision and dates set here).

    Through :func:`mma.db.bulk.bulk_insert` (COPY on PostgreSQL): a back-match
    over a year can write 10^5 candidates, and a statement per row cost ~0.1 ms.
    """
    now = datetime.now(UTC)
    bulk_insert(conn, coincidences, [{**row, "status": "active", "revision": 1,
                                      "created_at": now, "updated_at": now} for row in rows])


def revise(conn: Connection, cid: str, **values: Any) -> None:
    """Update the candidate's columns (a published revision, or a quiet follow-up)."""
    conn.execute(update(coincidences).where(coincidences.c.coincidence_id == cid)
                 .values(**values))


def add_revisions(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append scorings to the revision history (``coincidence_revisions``), in order.

    A quiet scoring (not published) that follows a quiet one of the same revision,
    region and reason is folded into that row: its numbers replace the row's,
    ``n_scorings`` counts it and ``updated_at`` dates it.
    """
    if not rows:
        return
    now = datetime.now(UTC)
    last = _latest(conn, {r["coincidence_id"] for r in rows if not r["published"]})
    fresh: list[dict[str, Any]] = []
    folded: dict[int, dict[str, Any]] = {}
    for row in rows:
        cid = row["coincidence_id"]
        prev = last.get(cid)
        if (not row["published"] and prev is not None and not prev["published"]
                and all(prev[k] == row[k] for k in ("revision", "region_pk", "reason"))):
            prev.update({k: row[k] for k in _NUMBERS}, n_scorings=prev["n_scorings"] + 1,
                        updated_at=now)
            if "id" in prev:
                folded[prev["id"]] = prev
            continue
        last[cid] = new = {**row, "n_scorings": 1, "created_at": now, "updated_at": now}
        fresh.append(new)
    if folded:
        conn.execute(update(coincidence_revisions).where(
            coincidence_revisions.c.id == bindparam("pk")).values(
            n_scorings=bindparam("n"), updated_at=bindparam("at"),
            **{k: bindparam(f"v_{k}") for k in _NUMBERS}),
            [{"pk": pk, "n": r["n_scorings"], "at": now,
              **{f"v_{k}": r[k] for k in _NUMBERS}} for pk, r in folded.items()])
    bulk_insert(conn, coincidence_revisions, fresh)  # in order: ids follow the scorings


_NUMBERS = ("status", "credible_level", "log_bayes_factor", "p_chance", "n_detections",
            "rank")


def _latest(conn: Connection, cids: set[str]) -> dict[str, dict[str, Any]]:
    """The newest history row of each candidate in *cids*, as a dict."""
    h = coincidence_revisions
    out: dict[str, dict[str, Any]] = {}
    ordered = sorted(cids)
    for i in range(0, len(ordered), CHUNK):
        newest = (select(func.max(h.c.id)).where(h.c.coincidence_id.in_(ordered[i:i + CHUNK]))
                  .group_by(h.c.coincidence_id))
        for row in conn.execute(select(h).where(h.c.id.in_(newest))):
            out[row.coincidence_id] = row._asdict()
    return out


def ranking(conn: Connection, event_pk: int) -> list[Row[Any]]:
    """The event's candidates best first (ln B, then P_chance, then the object seen
    first, then id); no payloads (an event can hold thousands of candidates, re-ranked
    after every batch). On a tie the object stored first keeps its rank: a newcomer
    scored the same does not revise it."""
    return list(conn.execute(
        select(coincidences.c.coincidence_id, coincidences.c.rank, coincidences.c.status,
               coincidences.c.vetoed, coincidences.c.revision, coincidences.c.region_pk)
        .where(coincidences.c.event_pk == event_pk, coincidences.c.other_event_pk.is_(None))
        .order_by(coincidences.c.log_bayes_factor.desc(), coincidences.c.p_chance,
                  coincidences.c.object_pk, coincidences.c.coincidence_id)))


def payloads(conn: Connection, cids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The published records of the candidates *cids*, by id."""
    ordered = sorted(set(cids))
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ordered), CHUNK):
        for cid, payload in conn.execute(
                select(coincidences.c.coincidence_id, coincidences.c.payload)
                .where(coincidences.c.coincidence_id.in_(ordered[i:i + CHUNK]))):
            out[cid] = payload
    return out


def revise_many(conn: Connection, changes: Sequence[Mapping[str, Any]]) -> None:
    """Set payload, revision and status of many candidates (``cid`` keys) at once."""
    if not changes:
        return
    if conn.dialect.name == "postgresql" and _update_from_json(
            conn, {"payload": "json", "revision": "integer", "status": "varchar"}, changes):
        return
    conn.execute(update(coincidences).where(
        coincidences.c.coincidence_id == bindparam("cid")).values(
        payload=bindparam("payload"), revision=bindparam("revision"),
        status=bindparam("status")), list(changes))


def set_ranks(conn: Connection, ranks: Sequence[tuple[str, int | None]]) -> None:
    """Set the rank column of many candidates in one statement (one executemany on SQLite)."""
    if not ranks:
        return
    if conn.dialect.name == "postgresql" and _update_from_json(
            conn, {"rank": "integer"}, [{"cid": c, "rank": r} for c, r in ranks]):
        return
    conn.execute(update(coincidences).where(
        coincidences.c.coincidence_id == bindparam("cid")).values(
        rank=bindparam("new_rank")), [{"cid": c, "new_rank": r} for c, r in ranks])


def _update_from_json(conn: Connection, columns: Mapping[str, str],
                      rows: Sequence[Mapping[str, Any]]) -> bool:
    """PostgreSQL: ``UPDATE coincidences ... FROM json_to_recordset(rows)``, one statement.

    SQLAlchemy's executemany pipelines an UPDATE per row (~0.1 ms each): the first
    back-match of a year-long window ranks 10^5 candidates. The rows travel as one
    JSON document (:func:`mma.db.engine.json_dumps`, as every JSON column is
    written): the driver's array parameters quote every element with a regular
    expression, seconds for 10^5 records. *columns*: name -> SQL type of each
    column set, from the rows' keys (``cid`` names the candidate).

    Returns False, writing nothing, when a record holds a NUL character (a hostile
    broker class, escaped ``\u0000``): ``json_to_recordset`` converts the strings
    it reads to text, which PostgreSQL refuses for NUL, while a ``json`` column
    stores the escape as it is. The caller then updates row by row.
    """
    names = ["cid", *columns]
    document = json_dumps([{n: row[n] for n in names} for row in rows])
    if "\\u0000" in document:
        return False
    record = ", ".join(f"{n} {t}" for n, t in {"cid": "varchar", **columns}.items())
    conn.execute(text(
        f"UPDATE coincidences AS c SET {', '.join(f'{n} = v.{n}' for n in columns)}, "
        f"updated_at = :now FROM json_to_recordset(CAST(:rows AS json)) AS v({record}) "
        "WHERE c.coincidence_id = v.cid"),
        {"rows": document, "now": datetime.now(UTC)})
    return True


def vetted_objects(conn: Connection, survey: str, start: datetime,
                   end: datetime) -> list[Row[Any]]:
    """Objects of *survey* with an alert passing vetting in [start, end] (UTC):
    ``dec_deg`` [deg] and the ``first`` and ``last`` such alert times."""
    return list(conn.execute(
        select(objects.c.dec_deg, func.min(alerts.c.time).label("first"),
               func.max(alerts.c.time).label("last"))
        .join(objects, objects.c.id == alerts.c.object_pk)
        .where(alerts.c.survey == survey, alerts.c.passes_vetting.is_(True),
               alerts.c.time >= start, alerts.c.time <= end)
        .group_by(objects.c.id, objects.c.dec_deg)))
