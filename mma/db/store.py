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

from mma.db.bulk import bulk_insert, copy_binary, insert_tuples, lookup
from mma.db.schema import (
    alerts,
    coincidences,
    dead_letters,
    event_aliases,
    events,
    notices,
    objects,
    region_tiles,
    regions,
)
from mma.models import Alert, Notice
from mma.skymaps.region import Region

log = logging.getLogger(__name__)


def _insert(conn: Connection, stmt: Any) -> int:
    """Execute an INSERT and return the new row's integer primary key."""
    key = conn.execute(stmt).inserted_primary_key
    assert key is not None
    return int(key[0])


class Tiles(NamedTuple):
    """A region's tiles as stored: level-29 NESTED ``[lo, hi)`` with their values."""

    lo: np.ndarray  # int64
    hi: np.ndarray  # int64
    probdensity: np.ndarray  # sr^-1
    distmu: np.ndarray | None = None  # Mpc
    distsigma: np.ndarray | None = None  # Mpc
    distnorm: np.ndarray | None = None  # Mpc^-2
    # Searched probability (Region.credible_level); add_region computes it when None.
    credible_level: np.ndarray | None = None


@dataclass(frozen=True)
class StoredNotice:
    """Result of :func:`add_notice`."""

    event_pk: int
    notice_pk: int
    is_new: bool  # False when the same bytes were stored before (idempotent re-delivery)


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
               origin: str | None) -> StoredNotice:
    """Store a notice and create or update its event (with aliases).

    A revised event time in a newer notice updates the event; it never forks a
    new event.
    """
    digest = _digest(raw)
    known = _notice_with(conn, digest)
    if known is not None:
        return StoredNotice(known.event_pk, known.id, is_new=False)

    event_pk = find_event(conn, (notice.event_id, *notice.aliases))
    if event_pk is None:
        event_pk = _insert(conn, insert(events).values(
            event_id=notice.event_id, messenger=notice.messenger,
            instrument=notice.instrument, event_time=notice.event_time,
            status="active", test=notice.test, properties=dict(notice.properties),
            flags=list(notice.flags),
        ))
        log.info("event %s: new %s event from %s", notice.event_id, notice.messenger,
                 notice.instrument)
    else:
        latest = conn.execute(
            select(func.max(notices.c.issued_time)).where(notices.c.event_pk == event_pk)
        ).scalar_one()
        # A newer notice revises the event time; a retraction carries none of its own.
        if (latest is None or notice.issued_time >= latest) and not (
                notice.retraction or "no_event_time" in notice.flags):
            conn.execute(
                update(events).where(events.c.id == event_pk).values(
                    event_time=notice.event_time, properties=dict(notice.properties),
                    flags=list(notice.flags),
                )
            )
    for alias in {notice.event_id, *notice.aliases}:
        if conn.execute(select(event_aliases.c.alias).where(
                event_aliases.c.alias == alias)).first() is None:
            conn.execute(insert(event_aliases).values(alias=alias, event_pk=event_pk))

    notice_pk = _insert(conn, insert(notices).values(
        event_pk=event_pk, handler=handler, notice_type=notice.notice_type,
        issued_time=notice.issued_time, origin=origin, sha256=digest, raw=raw,
        properties=dict(notice.properties), flags=list(notice.flags),
    ))
    return StoredNotice(event_pk, notice_pk, is_new=True)


def find_event(conn: Connection, names: Iterable[str]) -> int | None:
    """Primary key of the event known under any of *names*, or None."""
    row = conn.execute(
        select(event_aliases.c.event_pk).where(event_aliases.c.alias.in_(list(names)))
    ).first()
    return None if row is None else int(row.event_pk)


def event_row(conn: Connection, event_pk: int) -> Mapping[str, Any]:
    """The event row plus its sorted aliases under ``aliases``."""
    row = conn.execute(select(events).where(events.c.id == event_pk)).one()._asdict()
    row["aliases"] = sorted(conn.execute(
        select(event_aliases.c.alias).where(event_aliases.c.event_pk == event_pk)
    ).scalars())
    return row


def add_region(conn: Connection, *, event_pk: int, notice_pk: int, kind: str,
               tiles: Tiles, window: tuple[datetime, datetime],
               area50_deg2: float, area90_deg2: float) -> tuple[int, int]:
    """Store a new region version for an event and supersede the older ones.

    Parameters
    ----------
    tiles
        The region's tiles (a :class:`mma.skymaps.region.Region` has the same fields).

    Returns
    -------
    (region_pk, version)
    """
    version = (conn.execute(
        select(func.max(regions.c.version)).where(regions.c.event_pk == event_pk)
    ).scalar_one() or 0) + 1
    conn.execute(
        update(regions).where(regions.c.event_pk == event_pk, regions.c.status == "active")
        .values(status="superseded")
    )
    region_pk = _insert(conn, insert(regions).values(
        event_pk=event_pk, notice_pk=notice_pk, version=version, kind=kind,
        status="active", window_start=window[0], window_end=window[1],
        area50_deg2=area50_deg2, area90_deg2=area90_deg2, n_tiles=len(tiles.lo),
    ))
    _insert_tiles(conn, region_pk, _with_credible_level(tiles))
    return region_pk, int(version)


def _with_credible_level(tiles: Tiles) -> Tiles:
    """*tiles* with their credible levels, recomputed from the densities if not given.

    Stored for mma.db.backmatch, which applies the credible-level cut in SQL.
    """
    if tiles.credible_level is not None:
        return tiles
    region = Region.from_tiles(tiles.lo, tiles.hi, tiles.probdensity)
    # from_tiles sorts by lo; map back in case the caller's tiles are not sorted.
    level = region.credible_level[np.searchsorted(region.lo, tiles.lo)]
    return tiles._replace(credible_level=level)


def _insert_tiles(conn: Connection, region_pk: int, tiles: Tiles) -> None:
    """Bulk-insert a region's tiles: binary COPY on PostgreSQL, executemany elsewhere.

    A map has 20k-300k tiles. SQLAlchemy parameter dicts cost ~10 us a row,
    psycopg's pipelined executemany ~20 us and COPY row by row ~10 us (0.4 and
    0.2 s for a 19k-tile map); one binary COPY buffer built by numpy, well
    under 1 us.
    """
    columns = {name: arr for name, arr in tiles._asdict().items() if arr is not None}
    if conn.dialect.name == "postgresql":
        copy_binary(conn, region_tiles.name, {
            "region_pk": np.full(len(tiles.lo), region_pk, dtype=np.int64), **columns})
        return
    insert_tuples(conn, region_tiles, ["region_pk", *columns],
                  ((region_pk, *values) for values in zip(
                      *(arr.tolist() for arr in columns.values()), strict=True)))


def region_tiles_of(conn: Connection, region_pk: int) -> Tiles:
    """Tiles of a stored region, sorted by ``lo``."""
    rows = conn.execute(
        select(region_tiles.c.lo, region_tiles.c.hi, region_tiles.c.probdensity,
               region_tiles.c.distmu, region_tiles.c.distsigma, region_tiles.c.distnorm)
        .where(region_tiles.c.region_pk == region_pk).order_by(region_tiles.c.lo)
    ).all()
    cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 6
    # A map without distances stores NULL in every row. SQLite stores NaN as NULL too,
    # so one NULL does not mean "no distance": it reads back as NaN.
    dist = [None if all(v is None for v in values) else np.asarray(values, dtype=float)
            for values in cols[3:]]
    return Tiles(np.asarray(cols[0], dtype=np.int64), np.asarray(cols[1], dtype=np.int64),
                 np.asarray(cols[2], dtype=float), *dist)


def retract_event(conn: Connection, event_pk: int) -> list[str]:
    """Mark an event, its regions and its coincidences retracted.

    Returns the ids of the coincidences that were live, so that a retraction
    can be sent on every channel that carried them.
    """
    conn.execute(update(events).where(events.c.id == event_pk).values(status="retracted"))
    conn.execute(update(regions).where(regions.c.event_pk == event_pk,
                                       regions.c.status == "active").values(status="retracted"))
    live = list(conn.execute(
        select(coincidences.c.coincidence_id).where(
            coincidences.c.event_pk == event_pk, coincidences.c.status != "retracted")
    ).scalars())
    return live


def add_alert(conn: Connection, alert: Alert, *, hpx29: int,
              vetoes: Sequence[str]) -> tuple[int, datetime] | None:
    """Store an alert and update its object.

    Returns
    -------
    (alert_pk, object_first_time), or None if this alert was stored before.
    """
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
        passes_vetting=not vetoes,
    ))
    return alert_pk, object_first


def add_alerts(conn: Connection, batch: Sequence[Alert], *, hpx29: Sequence[int],
               vetoes: Sequence[Sequence[str]]) -> list[tuple[int, datetime] | None]:
    """Store many alerts and update their objects, as :func:`add_alert` would one by one.

    A few statements for the whole batch instead of four per alert (a Rubin
    visit is ~10,000 alerts). Alerts stored before, or repeated within the
    batch, give None; the others give (alert_pk, object_first_time), where
    the object's first time includes only the alerts before it in *batch*,
    exactly as sequential calls would.
    """
    out: list[tuple[int, datetime] | None] = [None] * len(batch)
    seen = set(lookup(conn, alerts.c.alert_id, {(a.survey, a.alert_id) for a in batch}))
    fresh: list[int] = []
    for i, alert in enumerate(batch):
        if (alert.survey, alert.alert_id) not in seen:
            seen.add((alert.survey, alert.alert_id))
            fresh.append(i)
    if not fresh:
        return out
    known = lookup(conn, objects.c.object_id,
                    {(batch[i].survey, batch[i].object_id) for i in fresh},
                    objects.c.id, objects.c.first_time, objects.c.last_time, objects.c.n_alerts)
    state: dict[tuple[str, str], dict[str, Any]] = {
        key: {"id": row.id, "first": row.first_time, "last": row.last_time, "n": row.n_alerts,
              "changed": False} for key, row in known.items()}
    object_first: dict[int, datetime] = {}
    for i in fresh:
        alert = batch[i]
        first = min(t for t in (alert.time, alert.first_detection) if t is not None)
        obj = state.get((alert.survey, alert.object_id))
        if obj is None:
            state[(alert.survey, alert.object_id)] = obj = {
                "id": None, "first": first, "last": alert.time, "n": 1,
                "ra": alert.ra_deg, "dec": alert.dec_deg}
        else:
            obj.update(first=min(obj["first"], first), last=max(obj["last"], alert.time),
                       n=obj["n"] + 1, changed=True)
        object_first[i] = obj["first"]
    created = [(key, obj) for key, obj in state.items() if obj["id"] is None]
    if created:
        bulk_insert(conn, objects, [
            {"survey": survey, "object_id": object_id, "ra_deg": obj["ra"],
             "dec_deg": obj["dec"], "first_time": obj["first"], "last_time": obj["last"],
             "n_alerts": obj["n"]} for (survey, object_id), obj in created])
        for key, row in lookup(conn, objects.c.object_id, [key for key, _ in created],
                               objects.c.id).items():
            state[key]["id"] = row.id
    changed = [obj for obj in state.values() if obj.get("changed")]
    if changed:
        conn.execute(update(objects).where(objects.c.id == bindparam("pk")).values(
            first_time=bindparam("first"), last_time=bindparam("last"),
            n_alerts=bindparam("n")),
            [{"pk": o["id"], "first": o["first"], "last": o["last"], "n": o["n"]}
             for o in changed])
    now = datetime.now(UTC)
    bulk_insert(conn, alerts, [
        {"survey": a.survey, "alert_id": a.alert_id,
         "object_pk": state[(a.survey, a.object_id)]["id"], "ra_deg": a.ra_deg,
         "dec_deg": a.dec_deg, "hpx29": int(hpx29[i]), "time": a.time, "band": a.band,
         "magnitude": a.magnitude, "magnitude_err": a.magnitude_err,
         "first_detection": a.first_detection, "distance_mpc": a.distance_mpc,
         "broker": a.broker, "quality": _jsonable(a.quality), "vetoes": list(vetoes[i]),
         "passes_vetting": not vetoes[i], "received_at": now}
        for i, a in ((i, batch[i]) for i in fresh)])
    stored = lookup(conn, alerts.c.alert_id,
                     [(batch[i].survey, batch[i].alert_id) for i in fresh], alerts.c.id)
    for i in fresh:
        out[i] = stored[(batch[i].survey, batch[i].alert_id)].id, object_first[i]
    return out


def _jsonable(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Plain JSON types only (numpy scalars from Avro/parquet decoders become Python)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, np.generic):
            value = value.item()
        # math.isfinite: np.isfinite costs ~1 us on a Python float, ~40 keys an alert.
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[key] = value
    return out


def add_dead_letter(engine: Engine, *, source: str, origin: str | None, error: BaseException,
                    raw: bytes) -> int:
    """Keep the raw bytes of a message that could not be processed, in its own transaction."""
    with engine.begin() as conn:
        pk = _insert(conn, insert(dead_letters).values(
            source=source, origin=origin, error_type=type(error).__name__,
            error=str(error)[:4000], size=len(raw), raw=raw,
        ))
    return pk
