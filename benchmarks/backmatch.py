"""Back-matching a new LVK region against 1,000,000 stored alerts, in SQL and in numpy.

Usage: ``python benchmarks/backmatch.py [N_ALERTS]`` (default 1,000,000; needs
PostgreSQL from the Debian packages, started and removed by the test harness's
:func:`tests.services.postgres.postgres_from_env`).

Alerts (one object each) are uniform on the sky and in time over a year; the
region is the embedded map of LVK S240114aj (90 % area ~ 2,900 deg^2, ~7 % of
the sky). Two windows: GW [-1 d, +14 d] and neutrino [-365 d, +30 d] (all).
Per database: :func:`mma.db.backmatch.alerts_in_region` against the numpy
reference measured in the same run (fetch every alert row in the window as the
correlator did, then ``Region.lookup`` and the credible-level cut). On
PostgreSQL also healpix-alchemy's form, ``int8range(lo, hi) @> hpx29`` with an
SP-GiST expression index on the tiles (GW window only: it probes the tile index
once per alert in the window, far too slow for a year).
"""

from __future__ import annotations

import base64
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, select, text

from mma.db import region_store, store
from mma.db.backmatch import alerts_in_region
from mma.db.engine import make_engine, upgrade
from mma.db.schema import alerts, objects
from mma.models import Notice
from mma.skymaps.decode import read_multiorder
from mma.skymaps.region import Region, build_region

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.services, the harness that runs PostgreSQL

MAP = (Path(__file__).resolve().parents[2] / "shared/corpus/gcn-json/igwn-gwalert"
       / "O4-2024-01/S240114aj-preliminary-1.json")
T0 = datetime(2024, 7, 1, tzinfo=UTC)
WINDOWS = {"GW -1/+14 d": (-1.0, 14.0), "nu -365/+30 d": (-365.0, 30.0)}
CUT = 0.9


def timed(func: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    """Best wall time [s] of ``func`` over ``repeat`` calls, and its last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = func()
        best = min(best, time.perf_counter() - start)
    return best, out


def synthetic(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Uniform positions (level-29 index) and times [s from T0] over the past year."""
    rng = np.random.default_rng(seed)
    return {"hpx29": rng.integers(0, 12 << 58, n),
            "offset_s": rng.uniform(-335 * 86400, 30 * 86400, n)}


def _stamp(offset_s: np.ndarray, sep: str) -> list[str]:
    """UTC timestamps as text, as SQLAlchemy stores them in SQLite (naive) or for COPY."""
    base = np.datetime64(T0.replace(tzinfo=None), "us")
    stamps = np.datetime_as_string(base + (offset_s * 1e6).astype("timedelta64[us]"))
    suffix = "" if sep == " " else "+00"
    return [s.replace("T", sep) + suffix for s in stamps.tolist()]


def bulk_load(engine: Engine, data: dict[str, np.ndarray]) -> float:
    """Insert one object and one alert per row with the driver (COPY on PostgreSQL) [s]."""
    start = time.perf_counter()
    n = len(data["hpx29"])
    ids = np.arange(1, n + 1).tolist()
    hpx = data["hpx29"].tolist()
    pg = engine.dialect.name == "postgresql"
    times = _stamp(data["offset_s"], "T" if pg else " ")
    first = _stamp(data["offset_s"] - 86400.0, "T" if pg else " ")
    ra = (np.arange(n) % 360).astype(float).tolist()  # not used by the query
    obj_rows = [(i, "ZTF", f"ZTF{i:09d}", r, 0.0, f, t, 1)
                for i, r, f, t in zip(ids, ra, first, times, strict=True)]
    alert_rows = [(i, "ZTF", str(i), i, r, 0.0, h, t, '{"rb": 0.9}', "[]", True, t)
                  for i, r, h, t in zip(ids, ra, hpx, times, strict=True)]
    obj_cols = "id, survey, object_id, ra_deg, dec_deg, first_time, last_time, n_alerts"
    alert_cols = ("id, survey, alert_id, object_pk, ra_deg, dec_deg, hpx29, time, quality, "
                  "vetoes, passes_vetting, received_at")
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if pg:
            for table, cols, rows in (("objects", obj_cols, obj_rows),
                                      ("alerts", alert_cols, alert_rows)):
                buf = io.StringIO()
                for row in rows:
                    buf.write("\t".join(str(v) for v in row) + "\n")
                with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                    copy.write(buf.getvalue())
            cur.execute("SELECT setval('objects_id_seq', %s)", (n,))
            cur.execute("SELECT setval('alerts_id_seq', %s)", (n,))
        else:
            cur.executemany(f"INSERT INTO objects ({obj_cols}) VALUES (?,?,?,?,?,?,?,?)",
                            obj_rows)
            cur.executemany(f"INSERT INTO alerts ({alert_cols}) VALUES "
                            "(?,?,?,?,?,?,?,?,?,?,?,?)", alert_rows)
        raw.commit()
    finally:
        raw.close()
    with engine.begin() as conn:  # what autovacuum (PostgreSQL) would soon do anyway
        conn.execute(text("ANALYZE"))
    return time.perf_counter() - start


def store_region(engine: Engine, region: Region) -> int:
    """The new region, stored as ingest stores it (tiles with credible levels)."""
    notice = Notice(event_id="S240114aj", messenger="gw", instrument="LVK",
                    notice_type="PRELIMINARY", event_time=T0, issued_time=T0)
    with engine.begin() as conn:
        stored = store.add_notice(conn, notice, b"S240114aj", handler="lvk", origin=None)
        region_pk, *_ = region_store.add_region(
            conn, event_pk=stored.event_pk, notice_pk=stored.notice_pk, kind="skymap",
            tiles=region_store.Tiles(region.lo, region.hi, region.probdensity,
                              credible_level=region.credible_level),
            window=(T0, T0), area50_deg2=region.area_deg2(0.5),
            area90_deg2=region.area_deg2(0.9))
    return region_pk


def reference(engine: Engine, region: Region, start: datetime, end: datetime) -> set[int]:
    """The correlator's former path: every row in the window, then lookup in numpy."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(alerts, objects.c.first_time.label("object_first"))
            .join(objects, objects.c.id == alerts.c.object_pk)
            .where(alerts.c.time >= start, alerts.c.time <= end)).all()
    ipix = np.fromiter((r.hpx29 for r in rows), dtype=np.int64, count=len(rows))
    tile = region.lookup(ipix)
    keep = (tile >= 0) & (region.credible_level[np.maximum(tile, 0)] <= CUT)
    return {rows[i].id for i in np.flatnonzero(keep).tolist()}


def spgist(engine: Engine, region_pk: int, start: datetime, end: datetime) -> set[int]:
    """healpix-alchemy's form: tile ranges in an SP-GiST index, ``range @> point``."""
    sql = text("""
        SELECT a.*, o.first_time AS object_first
        FROM region_tiles t
        JOIN alerts a ON int8range(t.lo, t.hi) @> a.hpx29
        JOIN objects o ON o.id = a.object_pk
        WHERE t.region_pk = :pk AND t.credible_level <= :cut
          AND a.time >= :start AND a.time <= :end""")
    with engine.connect() as conn:
        rows = conn.execute(sql, {"pk": region_pk, "cut": CUT, "start": start,
                                  "end": end}).all()
    return {r.id for r in rows}


def run(name: str, url: str, data: dict[str, np.ndarray], region: Region) -> None:
    engine = make_engine(url)
    upgrade(engine)
    load_s = bulk_load(engine, data)
    region_pk = store_region(engine, region)
    print(f"\n{name}: {len(data['hpx29']):,} alerts + objects loaded in {load_s:.1f} s")
    if name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("CREATE INDEX ix_tmp_tiles_range ON region_tiles "
                              "USING spgist (int8range(lo, hi))"))
            conn.execute(text("ANALYZE region_tiles"))
    for label, (lo_d, hi_d) in WINDOWS.items():
        start, end = T0 + timedelta(days=lo_d), T0 + timedelta(days=hi_d)

        def sql(s: datetime = start, e: datetime = end) -> set[int]:
            with engine.connect() as conn:
                return {r.id for r in alerts_in_region(conn, region_pk, s, e, CUT)}

        sql_s, got = timed(sql)
        ref_s, expected = timed(lambda s=start, e=end: reference(engine, region, s, e), 1)
        assert got == expected, f"{name} {label}: SQL and numpy disagree"
        line = (f"  {label:14s} {len(got):6d} matches: alerts_in_region {sql_s * 1e3:7.0f} ms"
                f" | numpy reference {ref_s * 1e3:7.0f} ms (x{ref_s / sql_s:.1f} slower)")
        if name == "postgresql" and label.startswith("GW"):  # minutes for the year
            sp_s, sp = timed(lambda s=start, e=end: spgist(engine, region_pk, s, e), 1)
            assert sp == expected
            line += f" | int8range+SP-GiST {sp_s * 1e3:7.0f} ms (x{sp_s / sql_s:.1f})"
        print(line)
    engine.dispose()


def main(n: int) -> None:
    alert = json.loads(MAP.read_text())
    region = build_region(read_multiorder(base64.b64decode(alert["event"]["skymap"])))
    kept = region.credible_level <= CUT
    print(f"region S240114aj: {region.n_tiles} tiles, {kept.sum()} at CL <= {CUT}, "
          f"A90 {region.area_deg2(0.9):.0f} deg2")
    data = synthetic(n)
    with tempfile.TemporaryDirectory() as tmp:
        run("sqlite", f"sqlite:///{tmp}/bench.sqlite", data, region)
    from tests.services.postgres import postgres_from_env

    server = postgres_from_env()
    try:
        run("postgresql", server.create_database(), data, region)
    finally:
        server.cleanup()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
