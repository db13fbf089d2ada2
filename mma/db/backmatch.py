"""Back-matching: the stored alerts inside a new region and its time window, in SQL.

A region is stored as level-29 NESTED tiles ``[lo, hi)`` (``region_tiles``) and
every alert carries the level-29 index of its position (``alerts.hpx29``, B-tree
indexed), so "which alerts lie in this region" is a range join:

.. code-block:: sql

    FROM region_tiles t JOIN alerts a ON a.hpx29 >= t.lo AND a.hpx29 < t.hi

driven by the region's tiles: one index range scan of ``alerts.hpx29`` per tile,
cost proportional to the number of tiles kept plus the alerts in them
(index ``ix_alerts_hpx29_time_object_pk``). Only
tiles at credible level <= the cut (``region_tiles.credible_level``, stored at
insert) take part, which both applies the correlator's cut in SQL and removes
most tiles of an LVK map.

Why alerts and not objects: the correlator scores each alert at its own
position and time, and the window applies to the alert time, so the alert row
is what is matched; ``alerts.hpx29`` is already indexed and the join needs no
second pass to expand objects into alerts.

Why a B-tree join and not healpix-alchemy's ``int8range @> hpx29`` with SP-GiST
on PostgreSQL: the range form indexes the *tiles*, which serves
"alert -> tiles containing it"; back-matching goes the other way ("tile ->
alerts inside it"), which is a B-tree range scan on the point column. PG's
range-containment support function only turns ``range @> x`` into B-tree bounds
for a constant range, not a join column, so the range form cannot use
``ix_alerts_hpx29``. ``benchmarks/backmatch.py`` measures both.

SQLite's planner, without statistics, prefers the ``alerts.time`` index and
probes the tiles per alert (a scan of half the tiles each time, seconds for a
few thousand alerts); the time terms are therefore hidden from its index
choice, which leaves tiles outer. PostgreSQL, whose statistics never cover a
region inserted moments ago, can make the same mistake (40 s instead of 0.2 s
against 1 M alerts, measured): there the alerts of each tile come from a
``LATERAL`` subquery that it cannot flatten, so tiles stay outer, and the
(hpx29, time) index checks the window without visiting rows outside it.

Why the correlator asks only for object keys (:func:`objects_in_region`): it
judges each object found on all its detections, which it reads again anyway
(:func:`mma.db.candidates.objects_until`), so the alert rows of the match are
only a way to name objects. ``alerts.*`` carries JSON (quality, history,
vetoes) that the driver decodes for every row: for a year-long window over a
GW map that was most of the query's time. The index ``(hpx29, time,
object_pk)`` (migration 0009) covers the thin query, so neither database
visits the table at all (PostgreSQL's index-only scan, once vacuum has marked
the pages all-visible, as autovacuum does after bulk inserts). No other cut
can be applied here without changing the result: an object found through a
vetoed alert is still judged (its candidate is flagged ``veto:*``), and its
position, the mean of its detections, is known only after they are read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, select, true
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from mma.db.schema import UTCDateTime, alerts, objects, region_tiles

__all__ = ("DEFAULT_MAX_CREDIBLE_LEVEL", "alerts_in_region", "alerts_in_region_query",
           "objects_in_region")

log = logging.getLogger(__name__)

DEFAULT_MAX_CREDIBLE_LEVEL = 0.9
"""Credible-level cut of the tiles that count as inside the region."""


def alerts_in_region_query(region_pk: int, start: datetime, end: datetime,
                           max_credible_level: float = DEFAULT_MAX_CREDIBLE_LEVEL,
                           *, sqlite: bool = False, thin: bool = False) -> Any:
    """The SELECT behind :func:`alerts_in_region` (for EXPLAIN and benchmarks).

    Parameters
    ----------
    sqlite : bool
        Write the time terms as ``+alerts.time`` so that SQLite cannot drive the
        join from the time index (see the module notes).
    thin : bool
        Select only ``alerts.object_pk`` (:func:`objects_in_region`): no join
        with ``objects``, and every column read is in ``ix_alerts_hpx29_time_object_pk``.
    """
    tile, alert, obj = region_tiles, alerts, objects
    tiles_kept = (tile.c.region_pk == region_pk, tile.c.credible_level <= max_credible_level)
    inside = and_(alert.c.hpx29 >= tile.c.lo, alert.c.hpx29 < tile.c.hi)
    if sqlite:
        # SQLite's documented idiom: a unary + makes a term unusable by an index,
        # here ix_alerts_time, leaving tiles outer and a seek on the hpx29 index.
        time = UnaryExpression(alert.c.time, operator=custom_op("+"), type_=UTCDateTime())
        if thin:
            return (select(alert.c.object_pk).select_from(tile.join(alert, inside))
                    .where(*tiles_kept, time >= start, time <= end))
        source = tile.join(alert, inside).join(obj, obj.c.id == alert.c.object_pk)
        return (select(alert, obj.c.first_time.label("object_first"), obj.c.object_id)
                .select_from(source)
                .where(*tiles_kept, time >= start, time <= end))
    # A LATERAL subquery per tile; OFFSET keeps PostgreSQL from flattening it into a
    # plain join, whose plan would be free to start from the time index.
    columns = [alert.c.object_pk] if thin else [alert]
    per_tile = (select(*columns).where(inside, alert.c.time >= start, alert.c.time <= end)
                .offset(0).lateral("a"))
    if thin:
        return select(per_tile.c.object_pk).select_from(tile.join(per_tile, true())).where(
            *tiles_kept)
    source = tile.join(per_tile, true()).join(obj, obj.c.id == per_tile.c.object_pk)
    return (select(per_tile, obj.c.first_time.label("object_first"), obj.c.object_id)
            .select_from(source)
            .where(*tiles_kept))


def objects_in_region(conn: Connection, region_pk: int, start: datetime, end: datetime,
                      max_credible_level: float = DEFAULT_MAX_CREDIBLE_LEVEL) -> list[int]:
    """Objects with a stored alert inside a stored region's tiles and a time window.

    The same alerts as :func:`alerts_in_region` (same parameters: window
    inclusive at both ends, UTC; tiles at credible level <= the cut), reduced
    to their objects: what the correlator's back-match needs (module notes).

    Returns
    -------
    list of int
        ``objects.id`` of each object found, once, in increasing order.
    """
    sqlite = conn.dialect.name == "sqlite"
    stmt = alerts_in_region_query(region_pk, start, end, max_credible_level, sqlite=sqlite,
                                  thin=True)
    # Deduplicated here: a set of ints costs less than the database's sort or hash.
    found = sorted(set(conn.execute(stmt).scalars()))
    log.debug("region %d: %d stored objects with an alert inside (CL <= %g) between %s "
              "and %s", region_pk, len(found), max_credible_level, start, end)
    return found


def alerts_in_region(conn: Connection, region_pk: int, start: datetime, end: datetime,
                     max_credible_level: float = DEFAULT_MAX_CREDIBLE_LEVEL
                     ) -> Sequence[Row[Any]]:
    """Stored alerts inside a stored region's tiles and a time window.

    Parameters
    ----------
    conn : sqlalchemy.Connection
        Open connection; the region's tiles must be visible to it (e.g. inserted
        by :func:`mma.db.store.add_region` in the same transaction).
    region_pk : int
        Primary key of the region (``regions.id``).
    start, end : datetime
        Window on the alert time, inclusive at both ends (timezone-aware UTC).
    max_credible_level : float
        Only tiles with credible level at most this count.

    Returns
    -------
    list of sqlalchemy.Row
        Every ``alerts`` column plus ``object_id`` and ``object_first`` (the object's
        ``first_time``), one row per alert, in no particular order. An alert's
        tile in the in-memory Region is ``region.lookup(row.hpx29)``.
    """
    sqlite = conn.dialect.name == "sqlite"
    stmt = alerts_in_region_query(region_pk, start, end, max_credible_level, sqlite=sqlite)
    rows = conn.execute(stmt).all()
    log.debug("region %d: %d stored alerts inside (CL <= %g) between %s and %s",
              region_pk, len(rows), max_credible_level, start, end)
    return rows
