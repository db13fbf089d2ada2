"""Engines for the embedded default (SQLite) and shared deployments (PostgreSQL).

Both write JSON columns with :func:`json_dumps` (no NaN or infinity) and read
them with :func:`json_loads`; :func:`refuses_values` tells a database error
caused by the values written (the message's fault) from one of the database.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import sys
from itertools import islice
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError

from mma.db.schema import metadata
from mma.errors import InvalidValue
from mma.match.finite import non_finite_paths

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x6D6D61  # "mma": the advisory lock key serialising migrations
# Failures that a row's own values cause (the same values fail again), unlike a unique
# or foreign-key failure, which a concurrent writer can cause and a retry cure.
# PostgreSQL SQLSTATEs: not_null_violation, check_violation; and the classes 22 (data
# exception) and 54 (program limit exceeded: an index entry or a row too large).
VALUE_SQLSTATES = frozenset({"23502", "23514"})
VALUE_SQLSTATE_CLASSES = ("22", "54")
# SQLite extended codes: SQLITE_CONSTRAINT_NOTNULL, SQLITE_CONSTRAINT_CHECK, SQLITE_TOOBIG,
# SQLITE_MISMATCH.
VALUE_SQLITE_CODES = frozenset({1299, 275, 18, 20})


def json_dumps(value: Any) -> str:
    """JSON text of a column value; NaN and infinities are refused, as JSON does.

    The serializer of every JSON column, on SQLite and PostgreSQL alike: SQLite
    would keep ``NaN``/``-Infinity`` (text its own ``json_extract`` rejects) and
    PostgreSQL refuses the row. Nothing should reach here that is not finite
    (records are checked where they are built, :mod:`mma.match.finite`).

    Raises
    ------
    InvalidValue
        A float is NaN or infinite, named by its path. SQLAlchemy wraps it in
        ``StatementError`` on SQLite, psycopg raises it as it is;
        :func:`mma.ingest.guard.database_errors` unwraps it.
    """
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError as exc:
        bad = ", ".join(islice(non_finite_paths(value), 5))
        raise InvalidValue(f"NaN or infinity in a JSON column value: {bad or exc}") from exc


def json_loads(text: str | bytes) -> Any:
    """A JSON column's value; the non-standard constants of older rows read as finite.

    Rows stored before :func:`json_dumps` refused them may hold ``NaN`` (read
    as null: no value) or ``±Infinity`` (read as ±1.8e308, the largest double,
    which keeps their order), so that re-writing them succeeds.
    """
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8")
    return _DECODER.decode(text)


def _legacy_constant(name: str) -> float | None:
    if name == "NaN":
        return None
    return math.copysign(sys.float_info.max, -1.0 if name.startswith("-") else 1.0)


# One decoder for every row: json.loads with a keyword builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_legacy_constant)


def make_engine(url: str) -> Engine:
    """Create an engine for *url*.

    SQLite gets WAL journalling (readers never block the writer), foreign keys
    on, and a busy timeout; its parent directory is created. PostgreSQL URLs
    without a driver use psycopg 3.
    """
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30},
                               json_serializer=json_dumps, json_deserializer=json_loads)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(parsed, pool_pre_ping=True, json_serializer=json_dumps,
                         json_deserializer=json_loads)


def alembic_config(engine: Engine) -> AlembicConfig:
    """An Alembic configuration bound to *engine* (no alembic.ini needed)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to *revision* with Alembic (``mma db upgrade``).

    Safe when several processes start at once on one database: PostgreSQL
    migrations take an advisory lock, SQLite ones an exclusive lock on a file
    beside the database.
    """
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        with open(f"{database}.migrate.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _upgrade(engine, revision)
        return
    _upgrade(engine, revision)


def _upgrade(engine: Engine, revision: str) -> None:
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite changes a column by rebuilding its table (copy, drop, rename): rows
            # of other tables refer to it meanwhile. Foreign keys are off for the
            # migration (a pragma that only works outside a transaction) and every
            # reference is checked before it commits.
            _pragma(conn, "foreign_keys=OFF")
        try:
            with conn.begin():
                if not sqlite:
                    # Several daemons starting together on one database: one migrates,
                    # the others wait here and then find the schema at head.
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                 {"key": MIGRATION_LOCK})
                cfg = alembic_config(engine)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration to {revision} leaves broken "
                                           f"references: {broken[:5]}")
        finally:
            if sqlite:
                _pragma(conn, "foreign_keys=ON")
    log.info("database %s at revision %s",
             engine.url.render_as_string(hide_password=True), revision)


def _pragma(conn: Connection, setting: str) -> None:
    """Set a SQLite pragma outside any transaction."""
    conn.exec_driver_sql(f"PRAGMA {setting}")
    conn.commit()


def is_current(engine: Engine) -> bool:
    """True if every table of the schema exists (a quick check before work)."""
    return set(metadata.tables) <= set(inspect(engine).get_table_names())


def refuses_values(exc: DBAPIError) -> bool:
    """The database refused the statement's *values*: retrying them cannot succeed.

    A data exception (SQLSTATE class 22: invalid JSON or text, a number out of
    range, NUL in text, a string too long...; SQLAlchemy's ``DataError``), a
    value too large for an index or a row (class 54, which psycopg raises as an
    ``OperationalError``), or a NOT NULL or CHECK constraint failing. Connection
    loss, lock timeouts, serialization failures, unique and foreign-key races
    are not: they may pass on a retry.
    """
    if isinstance(exc, DataError):
        return True
    orig = exc.orig
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str):
        return state.startswith(VALUE_SQLSTATE_CLASSES) or state in VALUE_SQLSTATES
    return getattr(orig, "sqlite_errorcode", None) in VALUE_SQLITE_CODES


def describe_error(exc: DBAPIError) -> str:
    """The driver's error on one line, without SQL and parameters (journald, Slack)."""
    orig = exc.orig if exc.orig is not None else exc
    text = " ".join(line.strip() for line in str(orig).splitlines() if line.strip())
    return f"{type(orig).__name__}: {text[:500]}"
