"""The type of an event's newest notice, for messages (``INITIAL``, ``GBM_Gnd_Pos``...)."""

from __future__ import annotations

from sqlalchemy import Connection, select

from mma.db.schema import notices, regions

__all__ = ("newest_notice_type",)


def newest_notice_type(conn: Connection, region_pk: int) -> str | None:
    """The notice type of the newest notice (issue time, then row) of a region's event.

    Parameters
    ----------
    conn : sqlalchemy.Connection
        Open connection.
    region_pk : int
        ``regions.id`` of the region a candidate was scored against.

    Returns
    -------
    str or None
        As the handler stored it; None when the region or its notices are gone.
    """
    event_pk = select(regions.c.event_pk).where(regions.c.id == region_pk).scalar_subquery()
    row = conn.execute(select(notices.c.notice_type).where(notices.c.event_pk == event_pk)
                       .order_by(notices.c.issued_time.desc(), notices.c.id.desc())
                       .limit(1)).first()
    return None if row is None else str(row.notice_type)
