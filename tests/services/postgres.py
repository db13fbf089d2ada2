"""A throwaway PostgreSQL cluster on loopback for tests.

PostgreSQL is installed from Debian packages if missing (:func:`ensure_postgres_bin`).
As root, ``initdb`` and ``postgres`` run as the ``postgres`` user (through ``setpriv``) in a
``tempfile.mkdtemp()`` directory chowned to it; otherwise as the current user.  Trust auth,
``fsync=off``, listening on 127.0.0.1 only, on a free port, socket in the temp dir.

Set ``MMA_TEST_POSTGRES=<url>`` (e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``) to use
an existing server instead (:class:`ExternalPostgres`; it cannot be restarted).  Its user
needs the right to create databases.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Protocol

import psycopg
from sqlalchemy.engine import URL, make_url

from tests.services.install import ensure_postgres_bin
from tests.services.procs import (
    LOOPBACK,
    ManagedProcess,
    ProcessService,
    free_port,
    start_with_port_retry,
    tail,
)

logger = logging.getLogger(__name__)

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
SUPERUSER = "postgres"


class PostgresStartError(RuntimeError):
    """The cluster did not come up (the message includes the tail of its log)."""


class PostgresService(Protocol):
    """What tests may rely on, for both the harness's cluster and an external server."""

    admin_url: URL

    def restart(self) -> None:
        """Stop and start the server."""
        ...

    def create_database(self, name: str | None = None) -> str:
        """Create a database and return its SQLAlchemy URL."""
        ...

    def drop_database(self, name: str) -> None:
        """Drop a database, closing its connections."""
        ...


def _libpq_dsn(url: URL) -> str:
    """Return a libpq connection string for a SQLAlchemy URL (any ``postgresql+driver``)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def wait_until_ready(url: URL, timeout: float, proc: ManagedProcess | None = None) -> None:
    """Wait until psycopg can connect to ``url`` and run ``SELECT 1`` (raise ``TimeoutError``)."""
    dsn = _libpq_dsn(url)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.running():
            raise PostgresStartError(f"postgres exited with code {proc.popen.returncode}")
        try:
            with psycopg.connect(dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.1)
    raise TimeoutError(
        f"PostgreSQL at {url.host}:{url.port} not ready after {timeout:.0f} s: {last}")


class _DatabasesMixin:
    """``CREATE DATABASE`` / ``DROP DATABASE`` through the server's admin URL."""

    admin_url: URL

    def create_database(self, name: str | None = None) -> str:
        """Create database ``name`` (default ``mma_<random hex>``); return its SQLAlchemy URL
        (``postgresql+psycopg://...``) as a string."""
        name = name or f"mma_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_libpq_dsn(self.admin_url), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, forcibly closing its connections."""
        with psycopg.connect(_libpq_dsn(self.admin_url), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(psycopg.sql.Identifier(name)))

    def database_url(self, name: str) -> str:
        """Return the SQLAlchemy URL string of database ``name`` on this server."""
        url = self.admin_url.set(drivername="postgresql+psycopg", database=name)
        return url.render_as_string(hide_password=False)


class PostgresServer(_DatabasesMixin, ProcessService):
    """A PostgreSQL cluster started by the harness.

    Attributes: ``host`` (127.0.0.1), ``port``, ``user`` (``postgres``), ``workdir``,
    ``data_dir``, ``log_path``, ``admin_url`` (SQLAlchemy :class:`URL` of db ``postgres``).
    """

    def __init__(self, workdir: Path | None = None) -> None:
        self.bindir = ensure_postgres_bin()
        self.as_root = os.geteuid() == 0
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="mma-pg-"))
        self.host = LOOPBACK
        self.port = free_port()
        self.user = SUPERUSER
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "postgres.log"
        self.admin_url = URL.create("postgresql+psycopg", username=self.user, host=self.host,
                                    port=self.port, database="postgres")
        self.proc: ManagedProcess | None = None
        if self.as_root:
            try:
                entry = pwd.getpwnam(SUPERUSER)
            except KeyError as exc:
                raise PostgresStartError("running as root but there is no 'postgres' user "
                                         "(apt-get install postgresql creates it)") from exc
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
            self.workdir.chmod(0o700)

    def _as_owner(self, argv: list[str]) -> list[str]:
        if self.as_root:
            return ["setpriv", f"--reuid={SUPERUSER}", f"--regid={SUPERUSER}",
                    "--init-groups", "--", *argv]
        return argv

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        argv = self._as_owner([
            str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
            "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync",
        ])
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL, cwd=self.workdir, check=False)
        if result.returncode != 0:
            raise PostgresStartError(
                f"initdb failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Create the cluster if new, start ``postgres`` and wait until it accepts connections."""
        if self.proc is not None and self.proc.running():
            return
        started = time.monotonic()
        self._initdb()
        argv = self._as_owner([
            str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
            "-c", f"listen_addresses={self.host}",
            "-c", f"unix_socket_directories={self.workdir}",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=100", "-c", "shared_buffers=32MB",
        ])
        self.proc = ManagedProcess("postgres", argv, self.log_path, marker=str(self.workdir),
                                   cwd=self.workdir, stop_signal=signal.SIGINT)
        try:
            wait_until_ready(self.admin_url, timeout, self.proc)
        except (TimeoutError, PostgresStartError) as exc:
            self.proc.stop(timeout=5)
            raise PostgresStartError(
                f"PostgreSQL failed to start on {self.host}:{self.port}: {exc}\n"
                f"--- tail of {self.log_path} ---\n{tail(self.log_path)}"
            ) from exc
        logger.info("PostgreSQL ready on %s:%d (pid %d) in %.1f s",
                    self.host, self.port, self.proc.pid, time.monotonic() - started)


class ExternalPostgres(_DatabasesMixin):
    """An existing server named by ``MMA_TEST_POSTGRES``; not started or stopped here."""

    def __init__(self, url: str) -> None:
        self.admin_url = make_url(url)
        self.host = self.admin_url.host or LOOPBACK
        self.port = self.admin_url.port or 5432
        wait_until_ready(self.admin_url, START_TIMEOUT)

    def restart(self) -> None:
        """Not possible for a server the harness did not start."""
        raise RuntimeError("MMA_TEST_POSTGRES is set: the external server cannot be restarted")

    def stop(self) -> None:
        """Nothing to stop."""

    def cleanup(self) -> None:
        """Nothing to clean up."""


def postgres_from_env() -> PostgresServer | ExternalPostgres:
    """Return an :class:`ExternalPostgres` if ``MMA_TEST_POSTGRES`` is set, else a started one."""
    external = os.environ.get("MMA_TEST_POSTGRES")
    if external:
        return ExternalPostgres(external)
    return start_with_port_retry(PostgresServer, port_taken="could not bind",
                                 what="PostgreSQL")
