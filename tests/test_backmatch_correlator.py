"""The correlator's back-match (a new region against stored objects) against a plain reference.

The sky has real structure: the LVK map of S240114aj from the corpus, objects
at random positions (half of them drawn from the map's probability), each
with one to four alerts at random times around the window, some alerts vetoed,
some far from their object's other alerts (so an object can be found through
one alert and still have its mean position outside the region), with listed
history and broker classes on some. The reference is the straightforward path:
every alert of the window read whole, its tile looked up in numpy, then each
object found judged one by one. The correlator must write exactly the
candidates it finds, with the same records and scores, on both databases.
"""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Connection, Engine, insert, select

from mma.config import Config, load_config
from mma.db import candidates, region_store, store
from mma.db.schema import alerts, coincidences, objects
from mma.match.active import ActiveRegion
from mma.match.candidate import coincidence_id, payload_of, summarise
from mma.match.correlator import Correlator
from mma.models import Notice
from mma.skymaps.decode import read_multiorder
from mma.skymaps.region import Region, build_region, hpx29
from tests.conftest import CORPUS

MAP = CORPUS / "gcn-json/igwn-gwalert/O4-2024-01/S240114aj-preliminary-1.json"
T0 = datetime(2024, 1, 14, 22, 59, 29, 889000, tzinfo=UTC)
N_OBJECTS = 500


@functools.cache
def _region() -> Region:
    alert = json.loads(MAP.read_text())
    return build_region(read_multiorder(base64.b64decode(alert["event"]["skymap"])))


def _positions(region: Region, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """(RA, Dec) [deg]: half drawn from the map's probability, half uniform on the sky."""
    half = n // 2
    tile = rng.choice(region.n_tiles, half, p=region.probdensity * region.area_sr)
    ipix = region.lo[tile] + (rng.random(half) * (region.hi[tile] - region.lo[tile])
                              ).astype(np.int64)
    import healpy as hp

    theta, phi = hp.pix2ang(1 << 29, ipix, nest=True)
    ra = np.concatenate([np.degrees(phi), rng.uniform(0.0, 360.0, n - half)])
    dec = np.concatenate([90.0 - np.degrees(theta),
                          np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n - half)))])
    return ra, dec


def _alert_rows(rng: np.random.Generator, ra: float, dec: float, n: int,
                first: int) -> list[dict[str, Any]]:
    """*n* alerts of one object near (ra, dec); one may lie far away (a wrong association)."""
    out = []
    for k in range(n):
        far = k and rng.random() < 0.25
        a_ra = (ra + (rng.uniform(-15, 15) if far else rng.normal(0, 3e-4))) % 360.0
        a_dec = float(np.clip(dec + (rng.uniform(-10, 10) if far else rng.normal(0, 3e-4)),
                              -89.9, 89.9))
        time = T0 + timedelta(days=float(rng.uniform(-4.0, 18.0)))
        vetoes = [str(rng.choice(["rb", "withdrawn"]))] if rng.random() < 0.2 else []
        listed = rng.random() < 0.3
        broker = "Fink" if rng.random() < 0.2 else None
        out.append({
            "survey": "ZTF", "alert_id": str(first + k), "ra_deg": a_ra, "dec_deg": a_dec,
            "hpx29": int(hpx29(a_ra, a_dec)), "time": time, "band": str(rng.choice(["g", "r"])),
            "magnitude": float(rng.uniform(17.0, 21.0)), "magnitude_err": 0.05,
            "distance_mpc": float(rng.uniform(50, 500)) if rng.random() < 0.2 else None,
            "broker": broker,
            "history": [(time - timedelta(days=float(d))).timestamp()
                        for d in rng.uniform(0.5, 20.0, 3)] if listed else None,
            "history_source": "ztf_prv_candidates" if listed else None,
            "quality": {"rb": 0.9, "fink_cdsxmatch": "Unknown"} if broker else {"rb": 0.9},
            "vetoes": vetoes, "passes_vetting": not vetoes})
    return out


def _store_sky(conn: Connection, region: Region, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ra, dec = _positions(region, rng, N_OBJECTS)
    n_alerts = rng.choice([1, 2, 3, 4], N_OBJECTS, p=[0.5, 0.2, 0.2, 0.1])
    sky, first = [], 0
    for i in range(N_OBJECTS):
        rows = _alert_rows(rng, float(ra[i]), float(dec[i]), int(n_alerts[i]), first)
        first += len(rows)
        times = [r["time"] for r in rows]
        sky.append(({"survey": "ZTF", "object_id": f"ZTF24obj{i:05d}", "ra_deg": ra[i],
                     "dec_deg": dec[i], "n_alerts": len(rows),
                     "first_time": min(times) - timedelta(days=float(rng.choice([0, 2, 45]))),
                     "last_time": max(times)}, rows))
    conn.execute(insert(objects), [obj for obj, _ in sky])
    pks = dict(conn.execute(select(objects.c.object_id, objects.c.id)).all())
    conn.execute(insert(alerts), [{**row, "object_pk": pks[obj["object_id"]]}
                                  for obj, rows in sky for row in rows])


@pytest.fixture
def sky(engine: Engine, config: Config) -> tuple[Correlator, ActiveRegion]:
    """The sky stored, and the new region stored and activated as ingest does."""
    region = _region()
    notice = Notice(event_id="S240114aj", messenger="gw", instrument="LVK",
                    notice_type="PRELIMINARY", event_time=T0, issued_time=T0)
    correlator = Correlator(config)
    with engine.begin() as conn:
        _store_sky(conn, region, seed=11)
        stored = store.add_notice(conn, notice, b"S240114aj", handler="lvk", origin=None)
        placed = region_store.add_region(
            conn, event_pk=stored.event_pk, notice_pk=stored.notice_pk, kind="skymap",
            tiles=region_store.Tiles(region.lo, region.hi, region.probdensity,
                                     credible_level=region.credible_level),
            window=(T0 - timedelta(days=1), T0 + timedelta(days=14)),
            area50_deg2=region.area_deg2(0.5), area90_deg2=region.area_deg2(0.9))
        event = store.load_event(conn, stored.event_pk)
    active = correlator.activate(placed.region_pk, placed.version, event, region)
    return correlator, active


def _reference(conn: Connection, correlator: Correlator, active: ActiveRegion,
               now: datetime) -> dict[str, dict[str, Any]]:
    """Every alert of the window, looked up in numpy; each object found judged alone."""
    region, cut = active.region, correlator.max_cl
    found = conn.execute(select(alerts).where(alerts.c.time >= active.start,
                                              alerts.c.time <= active.end)).all()
    tile = region.lookup(np.array([r.hpx29 for r in found], dtype=np.int64))
    keep = (tile >= 0) & (region.credible_level[np.maximum(tile, 0)] <= cut)
    pks = {found[i].object_pk for i in np.flatnonzero(keep).tolist()}
    event, out = active.event, {}
    for obj in candidates.objects_until(conn, pks, active.end).values():
        summary = summarise(obj, event.event_time, active.start, active.end)
        if summary is None:
            continue
        at = int(region.lookup(hpx29(summary.ra_deg, summary.dec_deg)))
        if at < 0 or region.credible_level[at] > cut:
            continue
        cid = coincidence_id(event.event_id, obj.survey, obj.object_id)
        score = correlator.scorer.score(conn, active, obj.survey, summary, at, now,
                                        {active.region_pk})
        out[cid] = payload_of(cid, event, active.version, obj, summary, score)
    return out


def test_back_match_writes_the_reference_candidates(
        engine: Engine, sky: tuple[Correlator, ActiveRegion]) -> None:
    correlator, active = sky
    now = T0 + timedelta(days=2)
    with engine.connect() as conn:
        expected = _reference(conn, correlator, active, now)
        n_found = len(set(_found_objects(conn, active, correlator.max_cl)))
    with engine.begin() as conn:
        ledger = correlator.ledger()
        correlator.on_region(conn, ledger, active, now)
        ledger.flush(conn)
        got = {r.coincidence_id: r for r in conn.execute(select(coincidences))}
    assert set(got) == set(expected)
    for cid, record in expected.items():
        row = got[cid]
        assert row.payload == record
        assert (row.log_bayes_factor, row.p_chance) == (record["log_bayes_factor"],
                                                        record["p_chance"])
        assert row.vetoed == any(f.startswith("veto:") for f in record["flags"])
    # The sky exercises what the back-match must get right.
    assert len(expected) > 50
    assert any(row.vetoed for row in got.values())  # found through vetoed alerts only
    assert any(r["n_detections"] + r["n_vetoed_detections"] > 1 for r in expected.values())
    assert any(r["n_prior_detections"] for r in expected.values())
    assert n_found > len(expected)  # found, but the mean position lies outside the cut
    assert any(r["classes"] for r in expected.values())  # a broker's quality fields read


def test_back_match_again_retracts_those_that_left(
        engine: Engine, sky: tuple[Correlator, ActiveRegion], tmp_path: Path) -> None:
    correlator, active = sky
    now = T0 + timedelta(days=2)
    with engine.begin() as conn:
        ledger = correlator.ledger()
        correlator.on_region(conn, ledger, active, now)
        ledger.flush(conn)
    # The same region judged again with a tighter credible-level cut.
    tight = Correlator(load_config(
        environ={"MMA_SCORING__MAX_CREDIBLE_LEVEL": "0.5",
                 "MMA_PATHS__STATE_DIR": str(tmp_path / "state")},
        system_file=tmp_path / "absent.toml"))
    again = tight.activate(active.region_pk, active.version, active.event, active.region)
    with engine.connect() as conn:
        expected = _reference(conn, tight, again, now)
    with engine.begin() as conn:
        before = {r.coincidence_id for r in conn.execute(select(coincidences))}
        ledger = tight.ledger()
        tight.on_region(conn, ledger, again, now)
        ledger.flush(conn)
        after = {r.coincidence_id: r for r in conn.execute(select(coincidences))}
    live = {cid for cid, r in after.items() if r.status != "retracted"}
    assert live == set(expected) and set(after) == before
    left = before - live
    assert len(left) > 10
    assert all("left_region" in after[cid].payload["flags"] for cid in left)


def _found_objects(conn: Connection, active: ActiveRegion, cut: float) -> list[int]:
    rows = conn.execute(select(alerts.c.object_pk, alerts.c.hpx29).where(
        alerts.c.time >= active.start, alerts.c.time <= active.end)).all()
    tile = active.region.lookup(np.array([r.hpx29 for r in rows], dtype=np.int64))
    keep = (tile >= 0) & (active.region.credible_level[np.maximum(tile, 0)] <= cut)
    return [rows[i].object_pk for i in np.flatnonzero(keep).tolist()]


def test_candidates_written_in_bulk_keep_every_value(engine: Engine) -> None:
    """Inserted by COPY and revised by one array UPDATE (PostgreSQL), values intact."""
    notice = Notice(event_id="S240114aj", messenger="gw", instrument="LVK",
                    notice_type="PRELIMINARY", event_time=T0, issued_time=T0)
    tricky = {"s": "é\"'\\\n\t", "nested": [1, None, {"k": 2.5e-300}], "b": True}
    with engine.begin() as conn:
        event_pk = store.add_notice(conn, notice, b"n", handler="lvk", origin=None).event_pk
        candidates.insert_candidates(conn, [
            {"coincidence_id": f"c{i}", "event_pk": event_pk, "object_pk": None,
             "alert_pk": None, "region_pk": None, "vetoed": i == 2,
             "log_bayes_factor": 1.0 + i, "p_chance": 0.1, "payload": {**tricky, "i": i}}
            for i in range(3)])
        candidates.set_ranks(conn, [("c0", None), ("c1", None)])  # no type to infer
        candidates.set_ranks(conn, [("c2", 7), ("c0", 1)])
        candidates.revise_many(conn, [{"cid": "c1", "payload": {"x": tricky},
                                       "revision": 2, "status": "updated"}])
        got = {r.coincidence_id: r for r in conn.execute(select(coincidences))}
    assert {c: (r.rank, r.revision, r.status, r.vetoed) for c, r in got.items()} == {
        "c0": (1, 1, "active", False), "c1": (None, 2, "updated", False),
        "c2": (7, 1, "active", True)}
    assert got["c0"].payload == {**tricky, "i": 0} and got["c1"].payload == {"x": tricky}
    assert got["c1"].updated_at >= got["c1"].created_at.replace(microsecond=0)
