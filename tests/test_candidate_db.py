"""Candidates in the database: the 0.99 match cut against the channels' 0.9 rule,
distance layers only for GW maps, the revision history, and the version-1 fold.

On SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from mma.config import Config
from mma.db.engine import make_engine, upgrade
from mma.db.schema import coincidence_revisions, coincidences, outbox, region_tiles
from mma.ingest import Pipeline
from mma.match.candidate import coincidence_id
from mma.models import Alert, Notice, RegionSpec
from tests.test_correlator import T0, alert, base_pixel_centre, feed, notice, rows
from tests.test_outbox import _config


def test_match_runs_to_099_and_the_channel_rule_to_09(engine: Engine, tmp_path: Path) -> None:
    config = _config(tmp_path)
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, {0: 0.9, 1: 0.08, 2: 0.02}))
    feed(p, alert("core", pixel=0, hours=2))  # CL 0.9
    feed(p, alert("wing", pixel=1, hours=3))  # CL 0.98: kept and scored
    feed(p, alert("out", pixel=2, hours=4))  # CL 1.0 > 0.99: not a candidate
    found = rows(engine)
    assert set(found) == {"core", "wing"}
    assert found["wing"]["credible_level"] == pytest.approx(0.98)
    with engine.connect() as conn:
        queued = {(r.coincidence_id, r.channel) for r in conn.execute(select(outbox))}
    core, wing = found["core"]["coincidence_id"], found["wing"]["coincidence_id"]
    assert queued == {(core, "kafka"), (core, "slack"), (wing, "kafka")}


@pytest.fixture
def gw_map(corpus: Path) -> bytes:
    return (corpus / "skymaps/gw/MS181101ab_bayestar.multiorder.fits").read_bytes()


def _distance_of_tiles(engine: Engine) -> list[float | None]:
    with engine.connect() as conn:
        return list(conn.execute(select(region_tiles.c.distmu)).scalars())


@pytest.mark.parametrize("messenger", ["gw", "grb"])
def test_distance_layers_count_only_in_gw_maps(engine: Engine, config: Config, gw_map: bytes,
                                               messenger: str) -> None:
    # A GRB notice carrying a GW map with distance layers (as a GUANO or IceCube
    # product can): its distances must not score optical hosts.
    event = Notice(event_id="E1", messenger=messenger, instrument="X", notice_type="initial",  # type: ignore[arg-type]
                   event_time=T0, issued_time=T0 + timedelta(minutes=1),
                   region=RegionSpec(kind="skymap", skymap=gw_map))
    p = Pipeline(engine, config)
    feed(p, event)
    active = next(iter(p.correlator.active.values()))
    tile = int(active.region.density_order[0])  # the densest tile
    lo = int(active.region.lo[tile])
    import healpy

    ra, dec = healpy.pix2ang(2**29, lo, nest=True, lonlat=True)
    feed(p, Alert(alert_id="1", object_id="ZTF25host", survey="ZTF", ra_deg=float(ra),
                  dec_deg=float(dec), time=T0 + timedelta(hours=5), distance_mpc=150.0,
                  quality={"rb": 0.9}))
    (found,) = rows(engine).values()
    distances = _distance_of_tiles(engine)
    if messenger == "gw":
        assert any(d is not None for d in distances)
        assert found["components"]["ln_B_D"] != 0.0
    else:
        assert all(d is None for d in distances)
        assert found["components"]["ln_B_D"] == 0.0


def test_every_scoring_is_in_the_history(engine: Engine, config: Config) -> None:
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, {0: 0.6, 1: 0.25, 2: 0.15}))
    feed(p, alert("a", pixel=0, hours=2))
    second = Alert(**{**alert("a2", pixel=0, hours=30).__dict__, "object_id": "ZTF25obja"})
    feed(p, second)  # a new detection of the same object: one candidate, revision 2
    # The same map again: the numbers do not move, but the record now names version 2.
    feed(p, notice("UPDATE", 40, {0: 0.6, 1: 0.25, 2: 0.15}))
    feed(p, notice("UPDATE", 41, {0: 0.9, 1: 0.1}))  # CL 0.6 -> 0.9: material
    feed(p, notice("RETRACTION", 50, retraction=True))
    cid = rows(engine)["a"]["coincidence_id"]
    with engine.connect() as conn:
        history = [(r.revision, r.published, r.reason, tuple(r.changes), r.region_version)
                   for r in conn.execute(select(coincidence_revisions)
                                         .where(coincidence_revisions.c.coincidence_id == cid)
                                         .order_by(coincidence_revisions.c.id))]
    assert history[0] == (1, True, "new", (), 1)
    assert history[1][:3] == (2, True, "new_detection") and "detections" in history[1][3]
    assert history[2] == (3, True, "region", ("region",), 2)
    assert history[3][:3] == (4, True, "region") and history[3][4] == 3
    assert "credible_level" in history[3][3] and "region" in history[3][3]
    assert history[4] == (5, True, "retraction", ("status", "flags"), 3)
    assert len(history) == 5


def test_version_1_rows_fold_into_one_candidate_per_object(db_url: str) -> None:
    """Migration 0004: two coincidences of one object become one candidate; the outbox
    rows of both point to it, so a retraction still reaches every channel."""
    engine = make_engine(db_url)
    upgrade(engine, "0003")
    now = datetime(2025, 1, 2, tzinfo=UTC)
    with engine.begin() as conn:
        sql = [
            "INSERT INTO events (id, event_id, messenger, instrument, event_time, status, test,"
            " properties, flags, created_at, updated_at) VALUES (1, 'S1', 'gw', 'LVK', :t,"
            " 'active', false, '{}', '[]', :t, :t)",
            "INSERT INTO notices (id, event_pk, handler, notice_type, issued_time, received_at,"
            " sha256, raw, properties, flags) VALUES (1, 1, 'lvk', 'PRELIMINARY', :t, :t,"
            " 'x', :raw, '{}', '[]')",
            "INSERT INTO regions (id, event_pk, notice_pk, version, kind, status, window_start,"
            " window_end, area50_deg2, area90_deg2, n_tiles, created_at) VALUES (1, 1, 1, 1,"
            " 'skymap', 'active', :t, :t, 1, 2, 0, :t)",
            "INSERT INTO objects (id, survey, object_id, ra_deg, dec_deg, first_time, last_time,"
            " n_alerts) VALUES (1, 'ZTF', 'ZTF25x', 1, 2, :t, :t, 2)",
        ]
        for stmt in sql:
            conn.execute(text(stmt), {"t": now, "raw": b"n"})
        for pk, (cid, lnb, status) in enumerate(
                [("c1", 2.0, "active"), ("c2", 5.0, "updated")], start=1):
            conn.execute(text(
                "INSERT INTO alerts (id, survey, alert_id, object_pk, ra_deg, dec_deg, hpx29,"
                " time, quality, vetoes, passes_vetting, received_at) VALUES (:pk, 'ZTF',"
                " :aid, 1, 1, 2, 0, :t, '{}', '[]', true, :t)"),
                {"pk": pk, "aid": str(pk), "t": now})
            conn.execute(text(
                "INSERT INTO coincidences (coincidence_id, event_pk, alert_pk, region_pk,"
                " status, vetoed, log_bayes_factor, p_chance, rank, revision, payload,"
                " created_at, updated_at) VALUES (:cid, 1, :pk, 1, :status, false, :lnb, 0.1,"
                " :pk, :pk, :payload, :t, :t)"),
                {"cid": cid, "pk": pk, "status": status, "lnb": lnb, "t": now,
                 "payload": json.dumps({"coincidence_id": cid, "alert_id": str(pk),
                                        "flags": []})})
            conn.execute(text(
                "INSERT INTO outbox (coincidence_id, revision, channel, payload, status,"
                " attempts, next_attempt_at, created_at) VALUES (:cid, 1, :channel, '{}',"
                " 'sent', 1, :t, :t)"), {"cid": cid, "t": now, "channel": f"ch{pk}"})
    upgrade(engine)
    with engine.connect() as conn:
        (row,) = conn.execute(select(coincidences)).all()
        channels = sorted(conn.execute(select(outbox.c.channel, outbox.c.coincidence_id)).all())
        event_class = conn.execute(text("SELECT event_class FROM events")).scalar_one()
    engine.dispose()
    cid = coincidence_id("S1", "ZTF", "ZTF25x")
    assert uuid.UUID(cid) and row.coincidence_id == cid and row.object_pk == 1
    assert row.alert_pk == 2 and row.revision == 2  # the best one kept, highest revision
    assert row.payload["coincidence_id"] == cid
    assert channels == [("ch1", cid), ("ch2", cid)]
    assert event_class == "gw.cbc"


def test_replay_shows_the_pixel_centre_position(engine: Engine, config: Config) -> None:
    # The candidate's position is its detections' mean: for one detection, its own.
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, {0: 0.9, 1: 0.1}))
    feed(p, alert("a", pixel=0, hours=2))
    (found,) = rows(engine).values()
    assert (found["ra"], found["dec"]) == pytest.approx(base_pixel_centre(0))


def test_quiet_scorings_share_a_history_row(engine: Engine, config: Config) -> None:
    from mma.db import candidates

    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, {0: 0.6, 1: 0.4}))
    feed(p, alert("a", pixel=0, hours=2))
    (found,) = rows(engine).values()
    cid = found["coincidence_id"]
    with engine.connect() as conn:
        (first,) = conn.execute(select(coincidence_revisions)).all()

    def scoring(published: bool, p_chance: float, revision: int = 1) -> dict[str, object]:
        return {"coincidence_id": cid, "revision": revision, "published": published,
                "reason": "rescore", "changes": [], "region_pk": first.region_pk,
                "region_version": 1, "status": "active", "credible_level": 0.6,
                "log_bayes_factor": 1.0, "p_chance": p_chance, "n_detections": 1,
                "rank": 1}

    with engine.begin() as conn:  # three quiet re-scores, across two transactions
        candidates.add_revisions(conn, [scoring(False, 0.1), scoring(False, 0.11)])
    with engine.begin() as conn:
        candidates.add_revisions(conn, [scoring(False, 0.12), scoring(True, 0.3, 2),
                                        scoring(False, 0.31, 2)])
    with engine.connect() as conn:
        history = [(r.revision, r.published, r.n_scorings, r.p_chance) for r in conn.execute(
            select(coincidence_revisions).order_by(coincidence_revisions.c.id))]
    assert history == [(1, True, 1, found["p_chance"]), (1, False, 3, 0.12),
                       (2, True, 1, 0.3), (2, False, 1, 0.31)]
