"""Both match directions, supersede, retraction and restart, on SQLite and PostgreSQL.

The regions are closed-form multi-order maps: whole order-0 HEALPix pixels
(area 4 pi / 12 sr each) holding given probabilities, so every credible
level, density and searched area is known exactly.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table
from astropy_healpix import HEALPix
from ligo.skymap.io.fits import write_sky_map
from sqlalchemy import Engine, select

from mma.config import Config
from mma.db.schema import coincidences
from mma.ingest import Pipeline
from mma.models import Alert, Notice, RegionSpec
from tests.helpers import HANDLER

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
BASE_AREA_SR = 4 * math.pi / 12
DEG2_PER_SR = (180 / math.pi) ** 2
_HP = HEALPix(nside=1, order="nested")


def base_pixel_centre(ipix: int) -> tuple[float, float]:
    lon, lat = _HP.healpix_to_lonlat([ipix])
    return float(lon.to_value(u.deg)[0]), float(lat.to_value(u.deg)[0])


def moc_fits(probs: dict[int, float]) -> bytes:
    """Multi-order FITS whose order-0 pixel i holds probability probs[i] (others 0)."""
    uniq = np.arange(12) + 4
    density = np.array([probs.get(i, 0.0) for i in range(12)]) / BASE_AREA_SR
    table = Table({"UNIQ": uniq, "PROBDENSITY": density * u.sr**-1})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.fits"
        write_sky_map(str(path), table, moc=True)
        return path.read_bytes()


def notice(kind: str, issued_h: float, probs: dict[int, float] | None = None,
           retraction: bool = False) -> Notice:
    return Notice(
        event_id="S250301x", messenger="gw", instrument="LVK", notice_type=kind,
        event_time=T0, issued_time=T0 + timedelta(hours=issued_h), retraction=retraction,
        region=None if probs is None else RegionSpec(kind="skymap", skymap=moc_fits(probs)),
    )


def alert(alert_id: str, pixel: int, hours: float, rb: float = 0.9) -> Alert:
    ra, dec = base_pixel_centre(pixel)
    return Alert(alert_id=alert_id, object_id=f"ZTF25obj{alert_id}", survey="ZTF",
                 ra_deg=ra, dec_deg=dec, time=T0 + timedelta(hours=hours),
                 quality={"rb": rb, "drb": 0.99, "isdiffpos": True})


def feed(pipeline: Pipeline, item: Notice | Alert) -> set[str]:
    # Bytes that identify the message as a real one would: equal items, equal bytes.
    raw = repr(item).encode()
    now = item.issued_time if isinstance(item, Notice) else item.time
    return pipeline.process(HANDLER, raw, origin="test", item=item, now=now).touched


def rows(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        # One object per alert here (object ZTF25obj<alert id>): keyed by that id.
        return {r.payload["object_id"].removeprefix("ZTF25obj"): {
                    **r.payload, "status": r.status, "rank": r.rank, "vetoed": r.vetoed,
                    "revision": r.revision}
                for r in conn.execute(select(coincidences))}


MAP_1 = {0: 0.75, 1: 0.25}


def test_alert_first_and_region_first_give_the_same_coincidence(engine: Engine,
                                                                config: Config) -> None:
    # Direction 1: region stored, then the alert arrives.
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    assert feed(p, alert("1", pixel=0, hours=5))
    live = rows(engine)["1"]
    # Direction 2 (fresh database would be cleaner; a second event does the same job):
    # the alert is stored first, then a region containing it arrives.
    p2 = Pipeline(engine, config)
    a2 = alert("2", pixel=0, hours=5)
    feed(p2, a2)
    n2 = Notice(event_id="S250301y", messenger="gw", instrument="LVK",
                notice_type="PRELIMINARY", event_time=T0,
                issued_time=T0 + timedelta(hours=6),
                region=RegionSpec(kind="skymap", skymap=moc_fits(MAP_1)))
    feed(p2, n2)
    back = next(r for r in rows(engine).values() if r["event_id"] == "S250301y"
                and r["object_id"] == "ZTF25obj2")
    for key in ("credible_level", "prob_density_sr", "searched_area_deg2",
                "log_bayes_factor"):
        assert back[key] == pytest.approx(live[key], rel=1e-12)
    # Closed form: CL 0.75, density 0.75 / (4 pi / 12), ln B_sky = ln(0.75 * 12).
    assert live["credible_level"] == pytest.approx(0.75, abs=1e-12)
    assert live["prob_density_sr"] == pytest.approx(0.75 / BASE_AREA_SR, rel=1e-12)
    assert live["components"]["ln_B_sky"] == pytest.approx(math.log(9.0), rel=1e-12)
    assert live["searched_area_deg2"] == pytest.approx(BASE_AREA_SR * DEG2_PER_SR, rel=1e-12)
    assert live["dt_days"] == pytest.approx(5 / 24)
    assert live["status"] == "active" and live["rank"] == 1


def test_a_new_map_before_or_after_the_detection_ends_the_same(engine: Engine,
                                                               config: Config) -> None:
    """Whether an object's detection arrives before or after a newer map that barely
    moves its numbers, its candidate ends scored against, and naming, the newer map."""
    v1, v2 = MAP_1, {0: 0.755, 1: 0.245}  # CL 0.75 -> 0.755, ln B +0.007: not material
    p = Pipeline(engine, config)
    # Event x: the detection between the two maps.
    feed(p, notice("PRELIMINARY", 0.01, v1))
    feed(p, alert("a", pixel=0, hours=5))
    feed(p, notice("UPDATE", 6, v2))
    # Event z: both maps first (the same maps turned to other pixels, another event id).
    for item in (notice("PRELIMINARY", 0.01, {k + 2: v for k, v in v1.items()}),
                 notice("UPDATE", 6, {k + 2: v for k, v in v2.items()})):
        feed(p, replace(item, event_id="S250301z"))
    feed(p, alert("b", pixel=2, hours=5))
    found = rows(engine)
    assert found["a"]["event_id"] == "S250301x" and found["b"]["event_id"] == "S250301z"
    assert (found["a"]["status"], found["b"]["status"]) == ("updated", "active")  # both live
    for key in ("region_version", "credible_level", "prob_density_sr"):
        assert found["a"][key] == pytest.approx(found["b"][key], rel=1e-12), key
    assert found["a"]["region_version"] == 2
    assert found["a"]["credible_level"] == pytest.approx(0.755, abs=1e-12)
    assert found["a"]["changes"] == ["region"]  # published: named the newer map


def test_outside_credible_level_or_window_does_not_match(engine: Engine,
                                                         config: Config) -> None:
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, alert("in-b", pixel=1, hours=5))  # CL 1.0 > 0.9
    feed(p, alert("late", pixel=0, hours=24 * 15))  # after +14 d
    feed(p, alert("early", pixel=0, hours=-30))  # before -1 d
    feed(p, alert("edge", pixel=0, hours=-20))  # inside [-1 d, 0): matched, prior
    found = rows(engine)
    assert set(found) == {"edge"}
    assert found["edge"]["dt_days"] == pytest.approx(-20 / 24)


def test_vetoed_alert_is_kept_but_unranked(engine: Engine, config: Config) -> None:
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, alert("bogus", pixel=0, hours=3, rb=0.1))
    feed(p, alert("good", pixel=0, hours=4))
    found = rows(engine)
    assert found["bogus"]["vetoed"] and found["bogus"]["rank"] is None
    assert "veto:rb=0.10<0.5" in found["bogus"]["flags"]
    assert found["good"]["rank"] == 1


def test_update_rescores_and_withdraws(engine: Engine, config: Config) -> None:
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, {0: 0.6, 1: 0.25, 2: 0.15}))
    feed(p, alert("a", pixel=0, hours=2))
    feed(p, alert("b", pixel=1, hours=2))
    before = rows(engine)
    assert before["b"]["credible_level"] == pytest.approx(0.85)
    touched = feed(p, notice("UPDATE", 3, {0: 0.85, 2: 0.15}))
    after = rows(engine)
    assert touched == {after["a"]["coincidence_id"], after["b"]["coincidence_id"]}
    assert after["a"]["status"] == "updated" and after["a"]["region_version"] == 2
    assert after["a"]["credible_level"] == pytest.approx(0.85)
    assert after["a"]["coincidence_id"] == before["a"]["coincidence_id"]  # stable id
    assert after["b"]["status"] == "retracted" and "left_region" in after["b"]["flags"]
    # The same update delivered again is a duplicate and changes nothing ...
    assert feed(p, notice("UPDATE", 3, {0: 0.85, 2: 0.15})) == set()
    # ... and a newer notice with the same map is a revision that names the new version
    # and nothing else: the numbers stay, the retracted candidate stays withdrawn.
    assert feed(p, notice("UPDATE", 4, {0: 0.85, 2: 0.15})) == {after["a"]["coincidence_id"]}
    again = rows(engine)
    assert again["a"]["region_version"] == 3 and again["a"]["status"] == "updated"
    assert again["a"]["revision"] == after["a"]["revision"] + 1
    assert again["a"]["changes"] == ["region"]
    assert again["a"]["credible_level"] == after["a"]["credible_level"]
    assert again["b"]["status"] == "retracted" and again["b"]["revision"] == after["b"]["revision"]


def test_retraction_withdraws_every_coincidence(engine: Engine, config: Config) -> None:
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, alert("a", pixel=0, hours=2))
    feed(p, alert("b", pixel=0, hours=3))
    touched = feed(p, notice("RETRACTION", 4, retraction=True))
    found = rows(engine)
    assert touched == {r["coincidence_id"] for r in found.values()}
    assert all(r["status"] == "retracted" and "event_retracted" in r["flags"]
               for r in found.values())
    assert all(r["rank"] is None for r in found.values())
    feed(p, alert("c", pixel=0, hours=5))  # the region is gone: no new match
    assert "c" not in rows(engine)


def test_restart_rebuilds_active_regions_from_the_database(engine: Engine,
                                                           config: Config) -> None:
    feed(Pipeline(engine, config), notice("PRELIMINARY", 0.01, MAP_1))
    restarted = Pipeline(engine, config)  # a new process: nothing in memory yet
    feed(restarted, alert("a", pixel=0, hours=2))  # the index is rebuilt first
    assert len(restarted.correlator.active) == 1
    assert rows(engine)["a"]["credible_level"] == pytest.approx(0.75)


def test_notice_vetoes_are_carried_as_flags(engine: Engine, config: Config) -> None:
    p = Pipeline(engine, config)
    flagged = replace(notice("PRELIMINARY", 0.01, MAP_1), flags=("low_significance",))
    feed(p, flagged)
    feed(p, alert("a", pixel=0, hours=2))
    assert "low_significance" in rows(engine)["a"]["flags"]
    # A newer notice without the caveat clears it on re-scoring.
    feed(p, notice("UPDATE", 3, {0: 0.7, 1: 0.3}))
    found = rows(engine)["a"]
    assert "low_significance" not in found["flags"] and found["status"] == "updated"


def _lsst(alert_id: str, *, withdrawn: bool = False, negative: bool = False) -> Alert:
    ra, dec = base_pixel_centre(0)
    quality = {"reliability": 0.9, "isNegative": negative, "isDipole": False,
               "timeWithdrawnMjdTai": 61000.5 if withdrawn else None}
    return Alert(alert_id=alert_id, object_id="313953129790079015", survey="LSST",
                 ra_deg=ra, dec_deg=dec, time=T0 + timedelta(hours=4), quality=quality)


def test_withdrawn_rubin_source_withdraws_its_matches(engine: Engine, config: Config) -> None:
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, _lsst("7000"))
    feed(p, _lsst("7001", negative=True))  # the same object: one candidate
    (found,) = rows(engine).values()
    # The negative source is no news: the published record stays revision 1.
    assert found["status"] == "active" and found["rank"] == 1 and found["revision"] == 1
    assert [d["alert_id"] for d in found["detections"]] == ["7000"]
    touched = feed(p, _lsst("7000", withdrawn=True))  # Rubin re-sends it, withdrawn
    (after,) = rows(engine).values()
    assert touched == {after["coincidence_id"]}
    assert after["status"] == "retracted" and "source_withdrawn" in after["flags"]
    assert after["vetoed"] and after["rank"] is None


def test_regions_expire_when_their_window_ends(engine: Engine, config: Config) -> None:
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, alert("a", pixel=0, hours=2))
    assert p.expire(T0 + timedelta(days=13)) == []  # window [-1, +14] d still open
    assert p.expire(T0 + timedelta(days=15)) == ["S250301x"]
    assert p.correlator.active == {}
    restarted = Pipeline(engine, config)
    feed(restarted, alert("b", pixel=0, hours=3))  # no active region after a restart either
    assert set(rows(engine)) == {"a"} and rows(engine)["a"]["status"] == "active"
