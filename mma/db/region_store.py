"""Region versions of events: tiles in, tiles out, and their order.

A region is stored as level-29 NESTED tiles ``[lo, hi)`` with their values
(:class:`Tiles`). An event's regions are numbered in notice order
(:mod:`mma.lifecycle`), not arrival order: a notice issued before the active
one is stored as an older version, superseded at once, and the versions after
it are renumbered, so that the final numbering is the same whatever order the
notices came in. Every function runs in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Connection, func, insert, select, update

from mma.db.bulk import copy_binary, insert_tuples
from mma.db.schema import coincidences, notices, region_tiles, regions
from mma.lifecycle import OrderKey, order_key
from mma.skymaps.region import Region


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




class StoredRegion(NamedTuple):
    """Result of :func:`add_region`."""

    region_pk: int
    version: int
    active: bool  # False: an older notice's region, stored superseded


def add_region(conn: Connection, *, event_pk: int, notice_pk: int, kind: str,
               tiles: Tiles, window: tuple[datetime, datetime],
               area50_deg2: float, area90_deg2: float,
               retracted: bool = False) -> StoredRegion:
    """Store a region of an event in notice order (see the module docstring).

    The newest region by :func:`mma.lifecycle.order_key` is active, the others
    superseded; versions are renumbered 1..n in that order. Call with the event
    row locked (:func:`mma.db.store.lock_event`): writes per event are serialised.

    Parameters
    ----------
    tiles
        The region's tiles (a :class:`mma.skymaps.region.Region` has the same fields).
    retracted
        The event is retracted: the region is stored for audit as ``retracted``
        and never becomes active.
    """
    last = conn.execute(select(func.max(regions.c.version))
                        .where(regions.c.event_pk == event_pk)).scalar_one()
    key = conn.execute(insert(regions).values(
        event_pk=event_pk, notice_pk=notice_pk, version=(last or 0) + 1, kind=kind,
        status="retracted" if retracted else "superseded",
        window_start=window[0], window_end=window[1],
        area50_deg2=area50_deg2, area90_deg2=area90_deg2, n_tiles=len(tiles.lo),
    )).inserted_primary_key
    assert key is not None
    region_pk = int(key[0])
    _insert_tiles(conn, region_pk, _with_credible_level(tiles))
    ordered = _in_order(conn, event_pk)
    newest = ordered[-1][0] == region_pk and not retracted
    if newest:
        conn.execute(update(regions).where(regions.c.event_pk == event_pk,
                                           regions.c.status == "active")
                     .values(status="superseded"))
        conn.execute(update(regions).where(regions.c.id == region_pk).values(status="active"))
    _renumber(conn, [pk for pk, _ in ordered])
    version = 1 + [pk for pk, _ in ordered].index(region_pk)
    return StoredRegion(region_pk, version, newest)


def _in_order(conn: Connection, event_pk: int) -> list[tuple[int, OrderKey]]:
    """The event's regions as (region_pk, order key), oldest first."""
    found = conn.execute(
        select(regions.c.id, regions.c.notice_pk, notices.c.issued_time,
               notices.c.notice_type, notices.c.sha256)
        .join(notices, notices.c.id == regions.c.notice_pk)
        .where(regions.c.event_pk == event_pk).order_by(regions.c.id)).all()
    within: dict[int, int] = {}
    keyed = []
    for row in found:  # a notice's fetched map (stored later) ranks after its shape
        n = within[row.notice_pk] = within.get(row.notice_pk, -1) + 1
        keyed.append((int(row.id), order_key(row.issued_time, row.notice_type, row.sha256, n)))
    return sorted(keyed, key=lambda item: item[1])


def _renumber(conn: Connection, ordered: list[int]) -> None:
    """Give the regions *ordered* versions 1..n where they differ, and follow the
    candidates' published ``region_version`` (a renamed region, not a new score)."""
    current = dict(conn.execute(select(regions.c.id, regions.c.version)
                                .where(regions.c.id.in_(ordered))).all())
    moved = {pk: v for v, pk in enumerate(ordered, start=1) if current[pk] != v}
    # Through negative values: (event_pk, version) is unique at every step.
    for pk in moved:
        conn.execute(update(regions).where(regions.c.id == pk).values(version=-pk))
    for pk, version in moved.items():
        conn.execute(update(regions).where(regions.c.id == pk).values(version=version))
        for row in conn.execute(select(coincidences.c.coincidence_id, coincidences.c.payload)
                                .where(coincidences.c.region_pk == pk)).all():
            if row.payload.get("region_version") not in (None, version):
                conn.execute(update(coincidences).where(
                    coincidences.c.coincidence_id == row.coincidence_id)
                    .values(payload={**row.payload, "region_version": version}))


def active_regions(conn: Connection) -> list[tuple[int, int, int]]:
    """Every active region as (region_pk, version, event_pk)."""
    return [(int(r.id), int(r.version), int(r.event_pk)) for r in conn.execute(
        select(regions.c.id, regions.c.version, regions.c.event_pk)
        .where(regions.c.status == "active"))]


def expire_region(conn: Connection, region_pk: int) -> None:
    """Close a region whose window ended (status ``expired``)."""
    conn.execute(update(regions).where(regions.c.id == region_pk).values(status="expired"))


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




def latest_by_source(conn: Connection, event_pk: int) -> dict[str, tuple[int, int]]:
    """Newest region of each handler that gave the event one, as handler ->
    (region_pk, notice_pk), in notice order; combined regions left out.

    One burst seen by several missions (:mod:`mma.ingest.bursts`) has one region
    per mission; their product is the event's region for matching.
    """
    found = {int(r.id): (str(r.handler), int(r.notice_pk)) for r in conn.execute(
        select(regions.c.id, regions.c.notice_pk, notices.c.handler)
        .join(notices, notices.c.id == regions.c.notice_pk)
        .where(regions.c.event_pk == event_pk, regions.c.kind != COMBINED,
               regions.c.status != "retracted"))}
    latest: dict[str, tuple[int, int]] = {}
    for region_pk, _ in _in_order(conn, event_pk):  # oldest first: the last one stays
        if region_pk in found:
            handler, notice_pk = found[region_pk]
            latest[handler] = (region_pk, notice_pk)
    return latest


def newest_notice(conn: Connection, event_pk: int) -> int:
    """The notice_pk of the event's newest region in notice order."""
    ordered = _in_order(conn, event_pk)
    return int(conn.execute(select(regions.c.notice_pk).where(
        regions.c.id == ordered[-1][0])).scalar_one())


COMBINED = "combined"  # regions.kind of the product of several missions' regions
