"""Database size per million Rubin alerts, on PostgreSQL and SQLite, before and after compaction.

Usage: ``python benchmarks/db_size.py [N]`` (default 20,000 alerts; starts its own
PostgreSQL through the test harness, :func:`tests.services.postgres.postgres_from_env`).

The frames and regions of ``benchmarks/e2e_kafka.py`` (~80 KB LSSTCam frames passing
vetting, each a new object, 3 % placed inside the 10 LVK-like regions so that candidates
keep their stamps) go through ``Pipeline.process_alerts`` in batches of 500, as the
daemon stores them. Per database and per table (heap, TOAST and indexes), bytes per
alert and GB per million alerts, for

* **before**: every quality field stored (nulls and false flags included) and, on
  PostgreSQL, stamps compressed with pglz (the code before the compaction);
* **after**: the code as it is (a survey alert keeps the quality fields that say
  something; stamps compressed with LZ4);

measured in the same run on fresh databases, and their ratio. At Rubin's ~10 million
alerts a night, multiply the per-million figure by ten for a night.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import alert_path  # noqa: E402

from mma.db import alert_store  # noqa: E402
from mma.db.engine import make_engine, upgrade  # noqa: E402
from mma.db.store import jsonable  # noqa: E402
from mma.models import Alert  # noqa: E402
from tests.services.postgres import postgres_from_env  # noqa: E402

BATCH = 500
TABLES = ("alerts", "objects", "cutouts", "background_cells", "coincidences",
          "coincidence_revisions", "outbox")


def sizes(engine: Engine) -> dict[str, int]:
    """Bytes per table, heap + TOAST + indexes (PostgreSQL) or pages (SQLite's dbstat)."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            return {t: int(conn.execute(text(f"SELECT pg_total_relation_size('{t}')"))
                           .scalar_one()) for t in TABLES}
        rows = conn.execute(text(
            "SELECT s.name, m.tbl_name, SUM(s.pgsize) FROM dbstat s JOIN sqlite_master m "
            "ON m.name = s.name GROUP BY s.name")).all()
    out = dict.fromkeys(TABLES, 0)
    for _name, table, size in rows:
        if table in out:
            out[table] += int(size)
    return out


@contextmanager
def before(engine: Engine) -> Iterator[None]:
    """The code before compaction: full quality, pglz stamps (PostgreSQL)."""
    kept = alert_store.stored_quality
    full: Callable[[Alert], dict[str, Any]] = lambda alert: jsonable(alert.quality)  # noqa: E731
    alert_store.stored_quality = full
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE cutouts ALTER COLUMN data SET COMPRESSION pglz"))
    try:
        yield
    finally:
        alert_store.stored_quality = kept


def measure(url_of: Callable[[str], str], notices: list[bytes], raws: list[bytes],
            ) -> dict[str, dict[str, int]]:
    """Sizes per table for the code before and after, each on a fresh database."""
    out: dict[str, dict[str, int]] = {}
    for case in ("before", "after"):
        url = url_of(case)
        engine = make_engine(url)
        upgrade(engine)
        with before(engine) if case == "before" else nullcontext():
            alert_path.run(url, notices, raws, BATCH)  # as the daemon stores them
        out[case] = sizes(engine)
        engine.dispose()
    return out


def report(db: str, n: int, got: dict[str, dict[str, int]]) -> None:
    print(f"{db}: {n:,} alerts, bytes per alert (GB per million alerts)")
    print(f"  {'table':24s} {'before':>16s} {'after':>16s}  after/before")
    for table in (*TABLES, "total"):
        b = sum(got["before"].values()) if table == "total" else got["before"][table]
        a = sum(got["after"].values()) if table == "total" else got["after"][table]
        ratio = f"{a / b:.2f}" if b else "-"
        print(f"  {table:24s} {b / n:8,.0f} ({b / n / 1e3:5.2f}) {a / n:8,.0f} ({a / n / 1e3:5.2f})"
              f"  {ratio}")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    notices, raws = alert_path.frames(n, 0.03)
    tmp = Path(tempfile.mkdtemp(prefix="mma-db-size-"))
    report("SQLite", n, measure(lambda case: f"sqlite:///{tmp / case}.sqlite", notices, raws))
    server = postgres_from_env()
    server.start()
    try:
        report("PostgreSQL", n, measure(lambda _case: server.create_database(), notices, raws))
    finally:
        server.stop()
        server.cleanup()


if __name__ == "__main__":
    main()
