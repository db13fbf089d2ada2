"""Back-matching in SQL (mma.db.backmatch) against Region.lookup, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
import pytest
from sqlalchemy import Connection, Engine, insert, select

from mma.db import region_store, store
from mma.db.backmatch import alerts_in_region, alerts_in_region_query, objects_in_region
from mma.db.schema import alerts, objects, region_tiles
from mma.models import Notice
from mma.skymaps.decode import read_multiorder
from mma.skymaps.region import Region, build_region
from mma.skymaps.shapes import circle_map

CORPUS = Path("/work/shared/corpus/gcn-json/igwn-gwalert/O4-2024-01")
T0 = datetime(2024, 1, 14, 22, 59, 29, 889000, tzinfo=UTC)
START, END = T0 - timedelta(days=1), T0 + timedelta(days=14)


@functools.cache
def _lvk_region() -> Region:
    alert = json.loads((CORPUS / "S240114aj-preliminary-1.json").read_text())
    return build_region(read_multiorder(base64.b64decode(alert["event"]["skymap"])))


def _store_region(conn: Connection, event_id: str, region: Region) -> int:
    notice = Notice(event_id=event_id, messenger="gw", instrument="LVK",
                    notice_type="PRELIMINARY", event_time=T0, issued_time=T0)
    stored = store.add_notice(conn, notice, event_id.encode(), handler="lvk", origin=None)
    region_pk, *_ = region_store.add_region(
        conn, event_pk=stored.event_pk, notice_pk=stored.notice_pk, kind="skymap",
        tiles=region_store.Tiles(region.lo, region.hi, region.probdensity),
        window=(START, END), area50_deg2=1.0, area90_deg2=2.0)
    return region_pk


def _synthetic_alerts(region: Region, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Alerts in the map's tiles, over the whole sky, on tile edges; times around the window."""
    n_in, n_sky = 1500, 1000
    tile = rng.choice(region.n_tiles, n_in, p=region.probdensity * region.area_sr)
    inside = region.lo[tile] + (rng.random(n_in) * (region.hi[tile] - region.lo[tile])
                                ).astype(np.int64)
    sky = rng.integers(0, 12 << 58, n_sky)
    edge_tiles = rng.choice(region.n_tiles, 200, replace=False)
    edges = np.concatenate([region.lo[edge_tiles], region.hi[edge_tiles],
                            region.hi[edge_tiles] - 1, region.lo[edge_tiles] - 1])
    ipix = np.concatenate([inside, sky, edges]).astype(np.int64)
    ipix = np.clip(ipix, 0, (12 << 58) - 1)
    offset_s = rng.uniform(-3 * 86400, 20 * 86400, len(ipix))
    # Exact window edges and one microsecond outside them.
    window = (START - T0).total_seconds(), (END - T0).total_seconds()
    offset_s[:4] = [window[0], window[1], window[0] - 1e-6, window[1] + 1e-6]
    return {"hpx29": ipix, "offset_s": offset_s}


def _insert_alerts(conn: Connection, data: dict[str, np.ndarray]) -> None:
    n = len(data["hpx29"])
    theta, phi = hp.pix2ang(1 << 29, data["hpx29"], nest=True)
    ra, dec = np.degrees(phi), 90.0 - np.degrees(theta)
    times = [T0 + timedelta(microseconds=round(s * 1e6)) for s in data["offset_s"].tolist()]
    obj_rows = [{"survey": "ZTF", "object_id": f"ZTF{i:08d}", "ra_deg": float(ra[i]),
                 "dec_deg": float(dec[i]), "first_time": times[i] - timedelta(days=i % 50),
                 "last_time": times[i], "n_alerts": 1} for i in range(n)]
    conn.execute(insert(objects), obj_rows)
    pks = {r.object_id: r.id for r in conn.execute(select(objects.c.object_id, objects.c.id))}
    conn.execute(insert(alerts), [
        {"survey": "ZTF", "alert_id": str(i), "object_pk": pks[f"ZTF{i:08d}"],
         "ra_deg": float(ra[i]), "dec_deg": float(dec[i]), "hpx29": int(data["hpx29"][i]),
         "time": times[i], "quality": {"rb": 0.9}, "vetoes": [], "passes_vetting": True}
        for i in range(n)])


def _reference(conn: Connection, region: Region, cut: float) -> set[int]:
    """Today's correlator path: every alert in the window, then Region.lookup in numpy."""
    rows = conn.execute(select(alerts.c.id, alerts.c.hpx29).where(
        alerts.c.time >= START, alerts.c.time <= END)).all()
    ipix = np.array([r.hpx29 for r in rows], dtype=np.int64)
    tile = region.lookup(ipix)
    keep = (tile >= 0) & (region.credible_level[np.maximum(tile, 0)] <= cut)
    return {rows[i].id for i in np.flatnonzero(keep).tolist()}


@pytest.fixture
def stored(engine: Engine) -> dict[str, Any]:
    region = _lvk_region()
    other = build_region(circle_map(0.0, 0.0, 30.0, 0.9))  # another region: must not leak in
    with engine.begin() as conn:
        region_pk = _store_region(conn, "S240114aj", region)
        _store_region(conn, "S240114zz", other)
        data = _synthetic_alerts(region, np.random.default_rng(7))
        extra = _synthetic_alerts(other, np.random.default_rng(8))
        extra["hpx29"] = extra["hpx29"][:1000]
        extra["offset_s"] = extra["offset_s"][:1000] + 1.0
        _insert_alerts(conn, {k: np.concatenate([data[k], extra[k]]) for k in data})
    return {"region": region, "region_pk": region_pk}


@pytest.mark.parametrize("cut", [0.9, 0.5, 1.0])
def test_same_alerts_as_lookup(engine: Engine, stored: dict[str, Any], cut: float) -> None:
    region: Region = stored["region"]
    with engine.connect() as conn:
        rows = alerts_in_region(conn, stored["region_pk"], START, END, max_credible_level=cut)
        expected = _reference(conn, region, cut)
    got = [r.id for r in rows]
    assert len(got) == len(set(got))  # one row per alert: tiles are disjoint
    assert set(got) == expected
    assert len(expected) > 100


@pytest.mark.parametrize("cut", [0.9, 0.5])
def test_objects_are_those_of_the_alerts(engine: Engine, stored: dict[str, Any],
                                         cut: float) -> None:
    with engine.connect() as conn:
        objs = objects_in_region(conn, stored["region_pk"], START, END, max_credible_level=cut)
        alert_rows = alerts_in_region(conn, stored["region_pk"], START, END,
                                      max_credible_level=cut)
    assert objs == sorted({r.object_pk for r in alert_rows})
    assert len(objs) > 100


def test_edges_exact_and_columns(engine: Engine, stored: dict[str, Any]) -> None:
    region: Region = stored["region"]
    with engine.connect() as conn:
        rows = alerts_in_region(conn, stored["region_pk"], START, END, max_credible_level=1.0)
        all_rows = conn.execute(select(alerts.c.hpx29, alerts.c.time)).all()
        first = {r.id: r.first_time for r in conn.execute(
            select(objects.c.id, objects.c.first_time))}
    ipix = np.array([r.hpx29 for r in rows])
    # Tile edges: lo inclusive, hi exclusive, so every returned pixel is in a tile.
    assert np.all(region.lookup(ipix) >= 0)
    got_edges = set(ipix.tolist()) & set(region.lo.tolist())
    assert got_edges  # some alerts sit exactly on a tile's lo
    # Time window inclusive at both ends, exclusive a microsecond outside.
    times = {r.time for r in rows}
    assert START in times and END in times
    assert all(START <= t <= END for t in times)
    assert any(t < START for _, t in all_rows) and any(t > END for _, t in all_rows)
    # Every alerts column, plus the object's first detection.
    assert set(rows[0]._fields) == {*alerts.c.keys(), "object_first", "object_id"}
    assert all(r.object_first == first[r.object_pk] for r in rows)
    assert all(r.time.tzinfo is not None and r.object_first.tzinfo is not None for r in rows)


def test_tiles_store_credible_levels(engine: Engine, stored: dict[str, Any]) -> None:
    region: Region = stored["region"]
    with engine.connect() as conn:
        level = conn.execute(select(region_tiles.c.credible_level).where(
            region_tiles.c.region_pk == stored["region_pk"]).order_by(region_tiles.c.lo)
        ).scalars().all()
    np.testing.assert_array_equal(np.array(level), region.credible_level)


def _sqlite_plan(tmp_path: Path, thin: bool) -> str:
    from mma.db.engine import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'plan.sqlite'}")
    upgrade(engine)
    stmt = alerts_in_region_query(1, START, END, 0.9, sqlite=True, thin=thin)
    with engine.connect() as conn:
        compiled = stmt.compile(conn)
        assert compiled.positiontup is not None
        params = tuple(str(compiled.params[name]) for name in compiled.positiontup)
        plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}", params))
    engine.dispose()
    return plan


INDEX = "ix_alerts_hpx29_time_object_pk"


def test_sqlite_plan_scans_tiles_and_seeks_hpx29(tmp_path: Path) -> None:
    plan = _sqlite_plan(tmp_path, thin=False)
    assert "SEARCH region_tiles" in plan  # tiles outer, by region_pk
    assert f"USING INDEX {INDEX}" in plan, plan  # alerts inner, a range seek on hpx29
    assert plan.index("region_tiles") < plan.index(INDEX)


def test_sqlite_plan_of_the_objects_reads_only_the_index(tmp_path: Path) -> None:
    plan = _sqlite_plan(tmp_path, thin=True)
    assert "SEARCH region_tiles" in plan
    assert f"USING COVERING INDEX {INDEX}" in plan, plan  # no visit of the alerts rows
    assert plan.index("region_tiles") < plan.index(INDEX)


def test_postgresql_plan_of_the_objects_is_index_only(postgres_url: str) -> None:
    from mma.db.engine import make_engine, upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    with engine.begin() as conn:
        region_pk = _store_region(conn, "S240114aj", _lvk_region())
        _insert_alerts(conn, _synthetic_alerts(_lvk_region(), np.random.default_rng(3)))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE alerts")  # autovacuum's work: pages all-visible
        # On a few thousand rows a bitmap scan costs the same; the point here is that
        # the index alone can answer (at 1 M rows the planner picks it unaided).
        conn.exec_driver_sql("SET enable_bitmapscan = off")
        stmt = alerts_in_region_query(region_pk, START, END, 0.9, thin=True)
        compiled = stmt.compile(conn, compile_kwargs={"literal_binds": True})
        plan = " | ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}"))
    engine.dispose()
    assert f"Index Only Scan using {INDEX}" in plan, plan
    assert plan.index("region_tiles") < plan.index(INDEX)
