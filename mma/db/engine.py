"""Engines for the embedded default (SQLite) and shared deployments (PostgreSQL)."""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from mma.db.schema import metadata

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x6D6D61  # "mma": the advisory lock key serialising migrations


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
        engine = create_engine(parsed, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(parsed, pool_pre_ping=True)


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
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Several daemons starting together on one database: one migrates, the
            # others wait here and then find the schema at head.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    log.info("database %s at revision %s",
             engine.url.render_as_string(hide_password=True), revision)


def is_current(engine: Engine) -> bool:
    """True if every table of the schema exists (a quick check before work)."""
    return set(metadata.tables) <= set(inspect(engine).get_table_names())


def describe_error(exc: DBAPIError) -> str:
    """The driver's error on one line, without SQL and parameters (journald, Slack)."""
    orig = exc.orig if exc.orig is not None else exc
    text = " ".join(line.strip() for line in str(orig).splitlines() if line.strip())
    return f"{type(orig).__name__}: {text[:500]}"
