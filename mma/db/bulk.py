"""Bulk writes and key lookups for batches (a Rubin visit, a 300k-tile map).

SQLAlchemy's executemany builds a parameter dict per row and, on PostgreSQL,
pipelines a statement per row (~45 us a row); these helpers hand the driver
plain tuples instead: COPY on PostgreSQL, the driver's executemany on SQLite.
Callers own the transaction (:mod:`mma.db.store`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import ARRAY, Column, Connection, Table, func, literal, select
from sqlalchemy.exc import DBAPIError

from mma.db.schema import cutouts
from mma.models import Alert

log = logging.getLogger(__name__)

MAX_CUTOUT_BYTES = 256 * 2**10
"""Default cap on one stored stamp [bytes] (``limits.max_cutout_bytes``)."""


def bulk_insert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert many rows (same keys, every non-null column given) through the driver.

    Values are converted by the columns' own SQLAlchemy types (UTC timestamps,
    JSON, booleans), then written by COPY on PostgreSQL and by the driver's
    executemany elsewhere: SQLAlchemy's executemany costs ~45 us a row on
    PostgreSQL (a pipelined statement each), COPY a few.
    """
    if not rows:
        return
    names = list(rows[0])
    insert_tuples(conn, table, names, driver_values(conn, table, names, rows))


def driver_values(conn: Connection, table: Table, names: Sequence[str],
                  rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """*rows* as tuples of driver values in *names*' order, converted by the columns' types."""
    dialect = conn.dialect
    procs = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
    return [tuple(v if f is None or v is None else f(v)
                  for f, v in zip(procs, (row[n] for n in names), strict=True))
            for row in rows]


def next_ids(conn: Connection, table: Table, n: int) -> list[int]:
    """Draw *n* primary keys from *table*'s ``id`` sequence (PostgreSQL), in one query.

    Rows written with these keys need no lookup of what was stored: the keys are
    known before the COPY. Drawn keys are never reused, even if the transaction
    rolls back (gaps are harmless).
    """
    return [row[0] for row in conn.exec_driver_sql(
        f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) "
        "FROM generate_series(1, %(n)s)", {"n": n})]


def insert_new(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]],
               key: str) -> dict[tuple[str, str], int]:
    """Insert the rows whose (survey, *key*) is not taken; by that pair, the new rows' ids.

    ``ON CONFLICT DO NOTHING``: a row another writer inserted first is left out
    of the result (the caller looks it up). On PostgreSQL one statement over
    ``unnest`` of one array per column, with ``RETURNING``; elsewhere the
    driver's executemany, then one lookup (SQLite has one writer at a time, so
    every row found that was not there before is this transaction's).
    """
    if not rows:
        return {}
    names = list(rows[0])
    values = driver_values(conn, table, names, rows)
    columns = ", ".join(names)
    conflict = f"ON CONFLICT (survey, {key}) DO NOTHING"
    if conn.dialect.name == "postgresql":
        types = [table.c[n].type.compile(conn.dialect) for n in names]
        arrays = ", ".join(f"%(c{i})s::{t}[]" for i, t in enumerate(types))
        result = conn.exec_driver_sql(
            f"INSERT INTO {table.name} ({columns}) SELECT * FROM unnest({arrays}) "
            f"{conflict} RETURNING survey, {key}, id",
            {f"c{i}": list(column) for i, column in enumerate(zip(*values, strict=True))})
        return {(a, b): pk for a, b, pk in result}
    marks = ", ".join("?" * len(names))
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) VALUES ({marks}) {conflict}",
                         values)
    found = lookup(conn, table.c[key], [(row["survey"], row[key]) for row in rows], table.c.id)
    return {pair: row.id for pair, row in found.items()}


def insert_tuples(conn: Connection, table: Table, names: Sequence[str],
                  values: Iterable[tuple[Any, ...]]) -> None:
    """Insert rows given as tuples of driver values, in *names*' order.

    COPY on PostgreSQL, the driver's executemany elsewhere: no SQLAlchemy
    parameter dict per row.
    """
    if conn.dialect.name == "postgresql":
        with _copy(conn, f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(names)}) "
                         f"VALUES ({', '.join([mark] * len(names))})", list(values))


def add_cutouts(conn: Connection, stored: Iterable[tuple[int, Alert]], *,
                max_bytes: int = MAX_CUTOUT_BYTES) -> int:
    """Store the stamps of freshly stored alerts, (alerts.id, Alert) pairs; how many.

    One bulk insert. A stamp above *max_bytes* is left out with a warning naming
    the alert (real ones are 12–70 kB; the cap keeps a hostile packet from
    filling the database). The caller chooses the alerts (those passing vetting).
    """
    rows = []
    for alert_pk, alert in stored:
        for kind, (fmt, data) in alert.cutouts.items():
            if len(data) > max_bytes:
                log.warning("alert %s %s: %s cutout of %d bytes is above the cap of %d "
                            "(limits.max_cutout_bytes), not stored", alert.survey,
                            alert.alert_id, kind, len(data), max_bytes)
                continue
            rows.append({"alert_pk": alert_pk, "kind": kind, "format": fmt, "data": data})
    if conn.dialect.name == "postgresql" and rows:
        # Binary COPY: in text COPY every stamp byte is written as two hex digits and
        # parsed back (~8 ms per Rubin alert's three 25 kB stamps, measured).
        with _copy(conn, f"COPY {cutouts.name} (alert_pk, kind, format, data) FROM STDIN "
                         "(FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "text", "bytea"])
            for row in rows:
                copy.write_row((row["alert_pk"], row["kind"], row["format"], row["data"]))
    else:
        bulk_insert(conn, cutouts, rows)
    return len(rows)


_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_PGCOPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def copy_binary(conn: Connection, table: str, columns: Mapping[str, np.ndarray]) -> None:
    """PostgreSQL binary COPY of equal-length numeric columns, none null.

    Integer arrays go to ``bigint`` columns and floating ones to ``double
    precision`` (NaN included): each row is a field count, then a length and
    8 big-endian bytes per field, which one numpy record array lays out.
    """
    fields: list[tuple[str, str]] = [("n_fields", ">i2")]
    for i, arr in enumerate(columns.values()):
        fields += [(f"size{i}", ">i4"), (f"value{i}", ">i8" if arr.dtype.kind in "iu" else ">f8")]
    rows = np.empty(len(next(iter(columns.values()))), dtype=fields)
    rows["n_fields"] = len(columns)
    for i, arr in enumerate(columns.values()):
        rows[f"size{i}"] = 8
        rows[f"value{i}"] = arr
    with _copy(conn, f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(_PGCOPY_HEADER + rows.tobytes() + _PGCOPY_TRAILER)


@contextmanager
def _copy(conn: Connection, statement: str) -> Iterator[Any]:
    """A psycopg COPY ... FROM STDIN on *conn*'s connection, in its transaction."""
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            yield copy
    except psycopg.Error as exc:
        # Raised by the driver, not through SQLAlchemy: wrapped as SQLAlchemy would, so
        # that callers see a database error (retried), not a bad message (dead-lettered).
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc


CHUNK = 500  # keys per IN (...) list: well under every driver's parameter limit


def lookup(conn: Connection, column: Column[Any], keys: Iterable[tuple[str, str]],
            *wanted: Column[Any]) -> dict[tuple[str, str], Any]:
    """Rows (*wanted* columns) of *column*'s table by (survey, *column*), in few queries."""
    table = column.table
    by_survey: dict[str, list[str]] = {}
    for survey, key in keys:
        by_survey.setdefault(survey, []).append(key)
    out: dict[tuple[str, str], Any] = {}
    for survey, values in by_survey.items():
        for i in range(0, len(values), CHUNK):
            chunk = values[i:i + CHUNK]
            query = select(column, *wanted).where(table.c.survey == survey)
            if conn.dialect.name == "postgresql":
                # One array parameter, joined: "= ANY(array)" let the planner of a young
                # table (no statistics yet) scan it comparing every row with all 500 keys
                # (1 s a batch at 20k alerts); a join is at worst a hash join.
                given = func.unnest(literal(chunk, ARRAY(column.type))).table_valued(
                    "key").render_derived(name="given")
                query = query.join_from(table, given, column == given.c.key)
            else:
                query = query.where(column.in_(chunk))
            for row in conn.execute(query):
                out[(survey, row[0])] = row
    return out
