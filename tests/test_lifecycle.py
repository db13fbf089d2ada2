"""Notice life cycles on real notices, on SQLite and PostgreSQL.

MS181101ab (LVK sample mock event): EARLY_WARNING, PRELIMINARY, INITIAL,
UPDATE, RETRACTION; S230518h (a real NSBH candidate): INITIAL then UPDATE.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy_healpix import HEALPix
from sqlalchemy import Engine, select

from mma.cli import main
from mma.config import Config
from mma.db.engine import make_engine
from mma.db.schema import coincidences, events, notices, regions
from mma.handlers import lvk
from mma.ingest import Pipeline
from mma.models import Alert, Notice

LEVEL29 = HEALPix(nside=2**29, order="nested")


def _load(corpus: Path, *names: str) -> list[tuple[bytes, Notice]]:
    out = []
    for name in names:
        raw = (corpus / "gcn-json/igwn-gwalert" / name).read_bytes()
        out.append((raw, lvk.parse(raw, topic="igwn.gwalert")))
    return sorted(out, key=lambda pair: pair[1].issued_time)


def _best_position(pipeline: Pipeline) -> tuple[float, float]:
    """RA, Dec (deg) of the densest tile of the single active region."""
    (active,) = pipeline.correlator.active.values()
    region = active.region
    lo = int(region.lo[region.density_order[0]])
    lon, lat = LEVEL29.healpix_to_lonlat([lo])
    return float(lon.to_value(u.deg)[0]), float(lat.to_value(u.deg)[0])


def test_mock_event_from_early_warning_to_retraction(engine: Engine, config: Config,
                                                     corpus: Path) -> None:
    p = Pipeline(engine, config)
    sequence = _load(corpus, "MS181101ab-earlywarning.json", "MS181101ab-preliminary.json",
                     "MS181101ab-initial.json", "MS181101ab-update.json",
                     "MS181101ab-retraction.json")
    *alive, (retraction_raw, retraction) = sequence
    for raw, notice in alive:
        assert p.process(lvk, raw, origin=notice.notice_type, item=notice).kind == "notice"
    t0 = alive[0][1].event_time
    ra, dec = _best_position(p)
    hit = Alert(alert_id="1", object_id="ZTF18mock", survey="ZTF", ra_deg=ra, dec_deg=dec,
                time=t0 + timedelta(hours=3), quality={"rb": 0.9})
    assert p.process(lvk, b"alert", origin="alert", item=hit).touched
    # Re-delivery of a notice already stored is a no-op.
    assert p.process(lvk, alive[1][0], origin="again", item=alive[1][1]).kind == "duplicate"
    touched = p.process(lvk, retraction_raw, origin="retraction", item=retraction).touched
    with engine.connect() as conn:
        event = conn.execute(select(events)).one()
        versions = conn.execute(select(regions.c.version, regions.c.status)
                                .order_by(regions.c.version)).all()
        coinc = conn.execute(select(coincidences)).one()
        n_notices = len(conn.execute(select(notices.c.id)).all())
    assert n_notices == 5  # every notice kept for audit, raw bytes included
    # A retraction withdraws every version (kept for audit), whatever order they came in.
    assert [tuple(v) for v in versions] == [(1, "retracted"), (2, "retracted"),
                                            (3, "retracted"), (4, "retracted")]
    assert event.status == "retracted" and event.test
    assert event.event_time == t0  # the retraction carries no time and moves nothing
    assert touched == {coinc.coincidence_id}
    assert coinc.status == "retracted"
    assert {"test", "event_retracted", "mock"} <= set(coinc.payload["flags"])
    assert p.correlator.active == {}


def test_update_supersedes_real_candidate(engine: Engine, config: Config,
                                          corpus: Path) -> None:
    p = Pipeline(engine, config)
    (raw1, initial), (raw2, update) = _load(corpus, "S230518h-initial.json",
                                            "S230518h-update.json")
    p.process(lvk, raw1, origin="initial", item=initial)
    first = p.correlator.active[next(iter(p.correlator.active))]
    p.process(lvk, raw2, origin="update", item=update)
    (second,) = p.correlator.active.values()
    assert (first.version, second.version) == (1, 2)
    assert second.region_pk != first.region_pk
    with engine.connect() as conn:
        rows = conn.execute(select(regions.c.version, regions.c.status, regions.c.area90_deg2)
                            .order_by(regions.c.version)).all()
        event = conn.execute(select(events)).one()
    assert [r.status for r in rows] == ["superseded", "active"]
    assert not event.test and event.status == "active"
    assert np.isfinite(rows[1].area90_deg2) and rows[1].area90_deg2 > 0


GRB_FILES = "voevent/gcn-2024-01-fink-mm"


def _replay(corpus: Path, engine_url: str, names: list[str]) -> None:
    paths = [str(corpus / GRB_FILES / n) for n in names]
    assert main(["replay", *paths, "--db", engine_url, "--output", "/dev/null"]) == 0


def test_swift_bat_then_xrt_then_uvot_share_the_event(db_url: str, corpus: Path) -> None:
    _replay(corpus, db_url, ["BAT_GRB_Pos_1208389-262.xml", "XRT_Pos_1208389-303.xml",
                             "UVOT_Pos_1208389-316.xml"])
    engine = make_engine(db_url)
    with engine.connect() as conn:
        (event,) = conn.execute(select(events)).all()
        rows = conn.execute(select(regions.c.version, regions.c.status, regions.c.area90_deg2)
                            .order_by(regions.c.version)).all()
    engine.dispose()
    assert event.event_id == "Swift-1208389" and event.messenger == "grb"
    # BAT trigger time 17:37:24.97 stays: XRT/UVOT times are their own observations.
    assert event.event_time.isoformat().startswith("2024-01-12T17:37:24.9")
    assert [r.status for r in rows] == ["superseded", "superseded", "active"]
    areas = [r.area90_deg2 for r in rows]
    assert areas[0] > areas[1] > areas[2]  # arcmin BAT -> arcsec XRT -> sub-arcsec UVOT


def test_fermi_gbm_flight_ground_final_with_systematics(db_url: str, corpus: Path) -> None:
    _replay(corpus, db_url, ["GBM_Flt_Pos_2024-01-15T164537.62_727029942_45-920.xml",
                             "GBM_Gnd_Pos_2024-01-15T164537.62_727029942_57-923.xml",
                             "GBM_Fin_Pos2024-01-15T164537.62_727029942_0-958.xml"])
    engine = make_engine(db_url)
    with engine.connect() as conn:
        (event,) = conn.execute(select(events)).all()
        rows = conn.execute(select(regions.c.kind, regions.c.status, regions.c.area90_deg2)
                            .order_by(regions.c.version)).all()
    engine.dispose()
    assert event.event_id == "FermiGBM-727029942"
    assert [r.status for r in rows] == ["superseded", "superseded", "active"]
    # 1-sigma statistical radii plus the Connaughton core+tail systematics: the 90 %
    # regions are hundreds of square degrees, far wider than the stated radii.
    assert all(r.kind == "circle" and r.area90_deg2 > 100 for r in rows)


def test_a_notice_stored_by_another_daemon_reaches_this_ones_index(
        engine: Engine, config: Config, corpus: Path) -> None:
    """Two daemons share the database: the second sees the notice as a duplicate and must
    still match alerts against the region the first one stored."""
    (raw, notice), = _load(corpus, "S230518h-initial.json")
    first, second = Pipeline(engine, config), Pipeline(engine, config)
    second.process(lvk, b"warm-up", origin="x")  # second builds its (empty) index now
    assert first.process(lvk, raw, origin="a", item=notice).kind == "notice"
    assert second.process(lvk, raw, origin="b", item=notice).kind == "duplicate"
    ra, dec = _best_position(first)
    hit = Alert(alert_id="9", object_id="ZTF23obj", survey="ZTF", ra_deg=ra, dec_deg=dec,
                time=notice.event_time + timedelta(hours=2), quality={"rb": 0.9})
    assert second.process(lvk, b"alert", origin="c", item=hit).touched


def test_updates_and_retractions_by_another_daemon_are_followed(
        engine: Engine, config: Config, corpus: Path) -> None:
    """The second daemon's alert batches match the region versions the first one stored
    since (never a superseded one), and nothing after the first one retracted the event;
    an unchanged database is not read again."""
    *alive, (retraction_raw, retraction) = _load(
        corpus, "MS181101ab-preliminary.json", "MS181101ab-initial.json",
        "MS181101ab-update.json", "MS181101ab-retraction.json")
    first, second = Pipeline(engine, config), Pipeline(engine, config)
    (raw, notice), *later = alive
    assert first.process(lvk, raw, origin="a0", item=notice).kind == "notice"
    assert second.process(lvk, raw, origin="b0", item=notice).kind == "duplicate"
    held = second.correlator.active[next(iter(second.correlator.active))]
    for i, (raw, notice) in enumerate(later):
        assert first.process(lvk, raw, origin=f"a{i + 1}", item=notice).kind == "notice"
    ra, dec = _best_position(first)
    t0 = notice.event_time
    hit = Alert(alert_id="1", object_id="ZTF18mock", survey="ZTF", ra_deg=ra, dec_deg=dec,
                time=t0 + timedelta(hours=3), quality={"rb": 0.9})
    (_cid,) = second.process(lvk, b"alert", origin="b1", item=hit).touched
    with engine.connect() as conn:
        row = conn.execute(select(coincidences.c.region_pk, coincidences.c.payload)).one()
        newest = conn.execute(select(regions.c.id, regions.c.version).where(
            regions.c.status == "active")).one()
    assert (row.region_pk, row.payload["region_version"]) == tuple(newest)
    assert newest.version > held.version
    # Nothing changed in the database: the next batch keeps the index as it is.
    index = second.correlator.regions.index
    again = Alert(**{**hit.__dict__, "alert_id": "2", "time": hit.time + timedelta(hours=1)})
    second.process(lvk, b"alert", origin="b2", item=again)
    assert second.correlator.regions.index is index and set(second.correlator.active) == {
        held.event_pk}
    assert first.process(lvk, retraction_raw, origin="a9", item=retraction).touched
    late = Alert(**{**hit.__dict__, "alert_id": "3", "time": hit.time + timedelta(hours=2)})
    assert second.process(lvk, b"alert", origin="b3", item=late).touched == set()
    assert second.correlator.active == {}
