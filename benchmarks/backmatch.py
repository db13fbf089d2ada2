"""Back-matching a new LVK region against 1,000,000 stored alerts, in SQL and end to end.

Usage: ``python benchmarks/backmatch.py [N_ALERTS]`` (default 1,000,000; needs
PostgreSQL from the Debian packages, started and removed by the test harness's
:func:`tests.services.postgres.postgres_from_env`).

Alerts (one object each) are uniform on the sky and in time over a year; the
region is the embedded map of LVK S240114aj (90 % area ~ 5,900 deg^2, ~14 % of
the sky). Two windows: GW [-1 d, +14 d] and neutrino [-365 d, +30 d] (all).
Per database:

* the query: the objects found by :func:`mma.db.backmatch.objects_in_region`
  (what the correlator asks) against the former :func:`alerts_in_region`
  (``alerts.*`` of every alert found) measured in the same run; for the GW
  window also the numpy reference (every alert row in the window, then
  ``Region.lookup``), and on PostgreSQL healpix-alchemy's form, ``int8range(lo,
  hi) @> hpx29`` with an SP-GiST expression index on the tiles;
* end to end, as a user sees it: the region of a stored event (S240114aj as
  ``gw.cbc``, the same map as a ``neutrino.track`` for the year) back-matched by
  :meth:`Correlator.on_region`, its candidates ranked and their history written
  (:func:`rerank`, :meth:`Ledger.flush`), against the former path (the wide
  query, then one position lookup per object); both in a transaction rolled
  back after, and their candidates compared.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
from sqlalchemy import Connection, Engine, select, text

from mma.config import Config, load_config
from mma.db import candidates, region_store, store
from mma.db.backmatch import alerts_in_region, objects_in_region
from mma.db.engine import make_engine, upgrade
from mma.db.schema import alerts, coincidences, objects
from mma.match.active import ActiveRegion
from mma.match.candidate import Summary, summarise
from mma.match.correlator import Correlator
from mma.match.revisions import Ledger, rerank, retract
from mma.models import Notice, StoredObject
from mma.skymaps.decode import read_multiorder
from mma.skymaps.region import Region, build_region, hpx29

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.services, the harness that runs PostgreSQL

MAP = (Path(__file__).resolve().parents[2] / "shared/corpus/gcn-json/igwn-gwalert"
       / "O4-2024-01/S240114aj-preliminary-1.json")
T0 = datetime(2024, 7, 1, tzinfo=UTC)
WINDOWS = {"GW -1/+14 d": (-1.0, 14.0), "nu -365/+30 d": (-365.0, 30.0)}
CLASSES = {"GW -1/+14 d": "gw.cbc", "nu -365/+30 d": "neutrino.track"}  # their windows
CUT = 0.9
NOW = T0 + timedelta(days=2)  # stream time of the back-match (backgrounds)


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


def _rows(data: dict[str, np.ndarray], pg: bool) -> tuple[list[tuple], list[tuple]]:
    """Object and alert rows: positions at the pixel centre, a listed history of 5."""
    n = len(data["hpx29"])
    ids = np.arange(1, n + 1).tolist()
    theta, phi = hp.pix2ang(1 << 29, data["hpx29"], nest=True)
    ra, dec = np.degrees(phi).tolist(), (90.0 - np.degrees(theta)).tolist()
    times = _stamp(data["offset_s"], "T" if pg else " ")
    first = _stamp(data["offset_s"] - 86400.0, "T" if pg else " ")
    unix = (T0.timestamp() + data["offset_s"]).tolist()
    obj_rows = [(i, "ZTF", f"ZTF{i:09d}", r, d, f, t, 1)
                for i, r, d, f, t in zip(ids, ra, dec, first, times, strict=True)]
    alert_rows = [(i, "ZTF", str(i), i, r, d, h, t, "r", 19.5, '{"rb": 0.9}', "[]", True,
                   json.dumps([u - 86400.0 * k for k in range(5, 0, -1)]),
                   "ztf_prv_candidates", t)
                  for i, r, d, h, t, u in zip(ids, ra, dec, data["hpx29"].tolist(), times,
                                              unix, strict=True)]
    return obj_rows, alert_rows


def bulk_load(engine: Engine, data: dict[str, np.ndarray]) -> float:
    """Insert one object and one alert per row with the driver (COPY on PostgreSQL) [s]."""
    start = time.perf_counter()
    n = len(data["hpx29"])
    pg = engine.dialect.name == "postgresql"
    obj_rows, alert_rows = _rows(data, pg)
    obj_cols = "id, survey, object_id, ra_deg, dec_deg, first_time, last_time, n_alerts"
    alert_cols = ("id, survey, alert_id, object_pk, ra_deg, dec_deg, hpx29, time, band, "
                  "magnitude, quality, vetoes, passes_vetting, history, history_source, "
                  "received_at")
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
                            f"({', '.join('?' * 16)})", alert_rows)
        raw.commit()
    finally:
        raw.close()
    # What autovacuum does after bulk inserts (PostgreSQL >= 13 vacuums insert-only
    # tables too): statistics, and pages marked all-visible for index-only scans.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if pg else "ANALYZE"))
    return time.perf_counter() - start


def store_region(engine: Engine, region: Region, event_class: str = "gw.cbc"
                 ) -> tuple[int, int]:
    """The new region, stored as ingest stores it (tiles with credible levels)."""
    nu = event_class.startswith("neutrino")
    name = "IceCube-240114A" if nu else "S240114aj"
    notice = Notice(event_id=name, messenger="neutrino" if nu else "gw",
                    instrument="IceCube" if nu else "LVK", notice_type="PRELIMINARY",
                    event_time=T0, issued_time=T0, event_class=event_class)
    with engine.begin() as conn:
        stored = store.add_notice(conn, notice, name.encode(), handler="lvk", origin=None)
        region_pk, *_ = region_store.add_region(
            conn, event_pk=stored.event_pk, notice_pk=stored.notice_pk, kind="skymap",
            tiles=region_store.Tiles(region.lo, region.hi, region.probdensity,
                                     credible_level=region.credible_level),
            window=(T0, T0), area50_deg2=region.area_deg2(0.5),
            area90_deg2=region.area_deg2(0.9))
    return region_pk, stored.event_pk


def reference(engine: Engine, region: Region, start: datetime, end: datetime) -> set[int]:
    """The correlator's first path: every row in the window, then lookup in numpy."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(alerts, objects.c.first_time.label("object_first"))
            .join(objects, objects.c.id == alerts.c.object_pk)
            .where(alerts.c.time >= start, alerts.c.time <= end)).all()
    ipix = np.fromiter((r.hpx29 for r in rows), dtype=np.int64, count=len(rows))
    tile = region.lookup(ipix)
    keep = (tile >= 0) & (region.credible_level[np.maximum(tile, 0)] <= CUT)
    return {rows[i].object_pk for i in np.flatnonzero(keep).tolist()}


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
    return {r.object_pk for r in rows}


def query_case(name: str, engine: Engine, region: Region, region_pk: int, label: str,
               start: datetime, end: datetime) -> None:
    """The SQL alone: objects found, thin query against the former wide one."""
    def thin() -> list[int]:
        with engine.connect() as conn:
            return objects_in_region(conn, region_pk, start, end, CUT)

    def wide() -> set[int]:
        with engine.connect() as conn:
            return {r.object_pk for r in alerts_in_region(conn, region_pk, start, end, CUT)}

    new_s, got = timed(thin)
    old_s, former = timed(wide)
    assert set(got) == former, f"{name} {label}: objects_in_region and alerts_in_region"
    line = (f"  {label:14s} {len(got):7d} objects: objects_in_region {new_s * 1e3:6.0f} ms"
            f" | former alerts_in_region {old_s * 1e3:6.0f} ms (x{old_s / new_s:.1f})")
    if label.startswith("GW"):  # the year's numpy and SP-GiST forms take minutes
        ref_s, expected = timed(lambda: reference(engine, region, start, end), 1)
        assert former == expected
        line += f" | numpy {ref_s * 1e3:6.0f} ms"
        if name == "postgresql":
            sp_s, sp = timed(lambda: spgist(engine, region_pk, start, end), 1)
            assert sp == expected
            line += f" | int8range+SP-GiST {sp_s * 1e3:6.0f} ms"
    print(line)


class FormerCorrelator(Correlator):
    """The back-match as it was before :func:`objects_in_region`, to measure against:
    ``alerts.*`` of every alert found, then one position lookup per object judged."""

    def on_region(self, conn: Connection, ledger: Ledger, active: ActiveRegion,
                  now: datetime, reason: str = "region") -> None:
        found = alerts_in_region(conn, active.region_pk, active.start, active.end, self.max_cl)
        kept = set(self._candidates(conn, ledger, active, {r.object_pk for r in found}, now,
                                    reason, skip_bad=True).values())
        for row in candidates.live_of_event(conn, active.event_pk):
            if row.coincidence_id not in kept:
                retract(conn, ledger, row, "left_region", "left_region", active.key)

    def _placed(self, active: ActiveRegion, objects: Iterable[StoredObject]
                ) -> list[tuple[StoredObject, Summary, int]]:
        out = []
        for obj in sorted(objects, key=lambda o: o.pk):
            summary = summarise(obj, active.event.event_time, active.start, active.end)
            if summary is None:
                continue
            tile = int(active.region.lookup(hpx29(summary.ra_deg, summary.dec_deg)))
            if tile >= 0 and active.region.credible_level[tile] > self.max_cl:
                tile = -1
            out.append((obj, summary, tile))
        return out


def back_match(engine: Engine, correlator: Correlator, active: ActiveRegion
               ) -> tuple[float, float, dict[str, tuple[Any, ...]]]:
    """Seconds of on_region, and with rank and history written; the candidates written.

    In a transaction rolled back after, so that every run starts from the same state.
    """
    with engine.connect() as conn:
        transaction = conn.begin()
        start = time.perf_counter()
        ledger = correlator.ledger()
        correlator.on_region(conn, ledger, active, NOW)
        matched = time.perf_counter()
        rerank(conn, ledger, {active.event_pk}, {active.region_pk: active.version})
        ledger.flush(conn)
        done = time.perf_counter()
        written = {r.coincidence_id: (r.payload, r.log_bayes_factor, r.p_chance, r.rank)
                   for r in conn.execute(select(coincidences))}
        transaction.rollback()
    return matched - start, done - start, written


def end_to_end(engine: Engine, region: Region, pks: dict[str, tuple[int, int]],
               config: Config) -> None:
    """Correlator.on_region as the daemon runs it, against the former path, per window."""
    print(f" end to end (on_region; + rank and history), tiles at CL <= "
          f"{Correlator(config).max_cl}:")
    for label in WINDOWS:
        region_pk, event_pk = pks[label]
        best: dict[str, tuple[float, float]] = {}
        written = {}
        for path, kind in (("new", Correlator), ("former", FormerCorrelator)):
            correlator = kind(config)
            with engine.connect() as conn:
                event = store.load_event(conn, event_pk)
            active = correlator.activate(region_pk, 1, event, region)
            runs = [back_match(engine, correlator, active)
                    for _ in range(3 if label.startswith("GW") else 1)]
            best[path] = min(r[0] for r in runs), min(r[1] for r in runs)
            written[path] = runs[-1][2]
        assert written["new"] == written["former"], f"{label}: candidates differ"
        (new_m, new_t), (old_m, old_t) = best["new"], best["former"]
        print(f"  {label:14s} {len(written['new']):7d} candidates: on_region "
              f"{new_m * 1e3:7.0f} ms, {new_t * 1e3:7.0f} ms | former {old_m * 1e3:7.0f} ms,"
              f" {old_t * 1e3:7.0f} ms (x{old_m / new_m:.2f}, x{old_t / new_t:.2f})")


def run(name: str, url: str, data: dict[str, np.ndarray], region: Region) -> None:
    engine = make_engine(url)
    upgrade(engine)
    load_s = bulk_load(engine, data)
    pks = {label: store_region(engine, region, CLASSES[label]) for label in WINDOWS}
    print(f"\n{name}: {len(data['hpx29']):,} alerts + objects loaded in {load_s:.1f} s")
    if name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("CREATE INDEX ix_tmp_tiles_range ON region_tiles "
                              "USING spgist (int8range(lo, hi))"))
            conn.execute(text("ANALYZE region_tiles"))
    print(f" query (tiles at CL <= {CUT}):")
    for label, (lo_d, hi_d) in WINDOWS.items():
        query_case(name, engine, region, pks[label][0], label, T0 + timedelta(days=lo_d),
                   T0 + timedelta(days=hi_d))
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(environ={"MMA_PATHS__STATE_DIR": f"{tmp}/state",
                                      "MMA_PATHS__CACHE_DIR": f"{tmp}/cache"},
                             system_file=Path(tmp) / "absent.toml")
        end_to_end(engine, region, pks, config)
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
