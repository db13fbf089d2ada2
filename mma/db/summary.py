"""What ``mma replay`` reports of a database (:mod:`mma.report`): its coincidences,
its events' current regions, and counts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, func, select

from mma.db.schema import alerts, coincidences, dead_letters, events, notices, regions


def stored_coincidences(conn: Connection) -> list[Row[Any]]:
    """Every coincidence: payload, status, rank, vetoed, revision."""
    return list(conn.execute(select(
        coincidences.c.payload, coincidences.c.status, coincidences.c.rank,
        coincidences.c.vetoed, coincidences.c.revision)))


def event_regions(conn: Connection) -> list[Row[Any]]:
    """Each event's active or retracted regions, by event time: event_id, messenger,
    status, version, area90_deg2."""
    return list(conn.execute(
        select(events.c.event_id, events.c.messenger, events.c.status, regions.c.version,
               regions.c.area90_deg2)
        .join(regions, regions.c.event_pk == events.c.id)
        .where(regions.c.status.in_(("active", "retracted")))
        .order_by(events.c.event_time)))


def counts(conn: Connection) -> dict[str, int]:
    """Notices, alerts, vetoed coincidences and dead letters stored."""
    def count(query: Any) -> int:
        return int(conn.execute(query).scalar_one())

    return {
        "notices": count(select(func.count()).select_from(notices)),
        "alerts": count(select(func.count()).select_from(alerts)),
        "vetoed": count(select(func.count()).select_from(coincidences)
                        .where(coincidences.c.vetoed.is_(True))),
        "dead letters": count(select(func.count()).select_from(dead_letters)),
    }
