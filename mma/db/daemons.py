"""The ``daemon_status`` table's SQL: each daemon's heartbeat rows (:mod:`mma.service.heartbeat`).

Each function runs in the caller's transaction. A daemon instance keeps one row
per source it consumes and one for itself, keyed by (instance, source).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from mma.db.schema import daemon_status


def write_beat(conn: Connection, instance: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Make *rows* the instance's rows: upserted, and its other sources' rows removed."""
    _upsert(conn, rows)
    conn.execute(delete(daemon_status).where(
        daemon_status.c.instance == instance,
        daemon_status.c.source.not_in([row["source"] for row in rows])))


def _upsert(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert *rows*, or update them where (instance, source) exists."""
    table = daemon_status
    keys = [table.c.instance, table.c.source]
    if conn.dialect.name in ("postgresql", "sqlite"):
        stmt = (postgresql.insert(table) if conn.dialect.name == "postgresql"
                else sqlite.insert(table))
        updates = {c.name: stmt.excluded[c.name] for c in table.c if not c.primary_key}
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=updates), rows)
        return
    # Other dialects: delete and insert within the caller's transaction.
    for row in rows:
        conn.execute(delete(table).where(table.c.instance == row["instance"],
                                         table.c.source == row["source"]))
    conn.execute(insert(table), rows)


def remove_instance(conn: Connection, instance: str) -> int:
    """Delete the rows of *instance*; how many there were."""
    return int(conn.execute(delete(daemon_status).where(
        daemon_status.c.instance == instance)).rowcount or 0)


def beats(conn: Connection) -> list[dict[str, Any]]:
    """Every row of every instance, as column -> value."""
    return [dict(row) for row in conn.execute(select(daemon_status)).mappings()]
