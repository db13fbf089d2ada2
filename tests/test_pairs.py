"""Event x event coincidences through the notice path, on SQLite and PostgreSQL.

GW170817 (the LVC Initial notice with the corpus's GWTC-1 map served for its URL)
and GRB 170817A (the Fermi GBM ground position) are the real pair: found with
dt = +2.02 s, an overlap integral above 1 (the maps agree) and a space-time FAR
below the temporal one, published once, revised only on material change, and
withdrawn when either event is retracted.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import Engine, select

from mma import report
from mma.config import Config, load_config
from mma.db.schema import coincidences, events, outbox, regions
from mma.handlers import fermi_gbm, icecube, lvk, lvk_voevent
from mma.ingest import Pipeline
from mma.match import joint
from mma.models import Alert, Notice
from tests.test_emitter_kafka import SCHEMA

# What does not depend on the database runs on SQLite only (the suite's time budget).
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

pytestmark = pytest.mark.slow  # GW170817's NSIDE 1024 map (~10 s per database)

GW = "voevent/gw/G298048-1-Initial_GW170817.xml"
GRB = "voevent/fermi-gbm/GRB170817A_GBM_Gnd_Pos_524666471.xml"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Defaults with the Kafka and Slack channels on (nothing is sent: the outbox is read)."""
    return load_config(environ={"MMA_PATHS__STATE_DIR": str(tmp_path / "state"),
                                "MMA_CHANNELS__KAFKA__ENABLED": "true",
                                "MMA_CHANNELS__SLACK__ENABLED": "true",
                                "MMA_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook"},
                       system_file=tmp_path / "absent.toml")


@pytest.fixture(scope="module")
def skymap(corpus: Path) -> bytes:
    return (corpus / "skymaps/gw/GW170817_skymap.fits.gz").read_bytes()


def _pairs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(coincidences).where(
            coincidences.c.other_event_pk.is_not(None))))


def _sent(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox.c.revision, outbox.c.channel, outbox.c.payload)
                                 .where(outbox.c.status == "pending").order_by(outbox.c.id)))


def _replay(engine: Engine, config: Config, corpus: Path, skymap: bytes,
            order: tuple[str, ...]) -> Pipeline:
    p = Pipeline(engine, config, fetch=lambda url: skymap)
    handlers = {GW: lvk_voevent, GRB: fermi_gbm}
    for path in order:
        assert p.process(handlers[path], (corpus / path).read_bytes(),
                         origin=path).kind == "notice"
    return p


@pytest.mark.parametrize("order", [(GW, GRB), (GRB, GW)], ids=["gw-first", "grb-first"])
def test_gw170817_pairs_with_grb170817a(engine: Engine, config: Config, corpus: Path,
                                        skymap: bytes, order: tuple[str, ...]) -> None:
    _replay(engine, config, corpus, skymap, order)
    (row,) = _pairs(engine)
    r = row.payload
    assert r["coincidence_type"] == "event-event"
    assert (r["event_id"], r["other"]["event_id"]) == ("G298048", "FermiGBM-524666471")
    assert r["dt_s"] == pytest.approx(2.024, abs=0.01)
    assert r["window_s"] == [-1.0, 5.0]
    assert r["overlap_integral"] > 1.0, r
    # Untargeted: 6 s x 325/yr x the GW's FAR, then divided by the overlap.
    far_gw = r["significance"]["far_hz"]
    assert r["temporal_far_hz"] == pytest.approx(6.0 * 325.0 / joint.YEAR_S * far_gw)
    assert r["space_time_far_hz"] == pytest.approx(r["temporal_far_hz"]
                                                   / r["overlap_integral"])
    assert r["space_time_far_hz"] < r["temporal_far_hz"]
    assert r["far_method"] == "untargeted"
    kafka = [m for m in _sent(engine) if m.payload["record"].get("coincidence_type")
             == "event-event"]
    # Kafka takes every pair; Slack only one rarer than once a month (this one is).
    # GRB first: the GW's map comes by URL after its notice, so the pair is first
    # found on time alone, then revised when the map gives the overlap.
    first = order[0] == GW
    expected = (1, "new") if first else (2, "update")
    assert [(m.revision, m.channel, m.payload["kind"]) for m in kafka] == [
        (*expected[:1], "kafka", expected[1]), (*expected[:1], "slack", expected[1])]
    if not first:
        assert "overlap_integral" in r["changes"] and "space_time_far_hz" in r["changes"]


def test_retraction_withdraws_the_pair(engine: Engine, config: Config, corpus: Path,
                                      skymap: bytes) -> None:
    p = _replay(engine, config, corpus, skymap, (GW, GRB))
    gw = lvk_voevent.parse((corpus / GW).read_bytes(), topic="")
    retraction = dataclasses.replace(gw, notice_type="Retraction", region=None,
                                     retraction=True,
                                     issued_time=gw.issued_time + timedelta(hours=1))
    assert p.process(lvk_voevent, b"retraction of G298048", origin="test",
                     item=retraction).kind == "notice"
    (row,) = _pairs(engine)
    assert row.status == "retracted" and row.revision == 2
    assert "retracted:G298048" in row.payload["flags"]
    kinds = [(m.channel, m.payload["kind"]) for m in _sent(engine)
             if m.payload["record"].get("coincidence_type") == "event-event"]
    # On every channel that carried it; the newest revision replaces the pending new one.
    assert kinds == [("kafka", "retraction"), ("slack", "retraction")]


@SQLITE_ONLY
def test_a_grb_outside_the_window_is_no_pair(engine: Engine, config: Config, corpus: Path,
                                            skymap: bytes) -> None:
    p = _replay(engine, config, corpus, skymap, (GW,))
    grb = fermi_gbm.parse((corpus / GRB).read_bytes(), topic="")
    late: Notice = dataclasses.replace(grb, event_id="FermiGBM-late",
                                       event_time=grb.event_time + timedelta(seconds=30))
    assert p.process(fermi_gbm, b"a later burst", origin="test", item=late).kind == "notice"
    assert _pairs(engine) == []


@SQLITE_ONLY
def test_test_events_never_pair_with_real_ones(engine: Engine, config: Config,
                                               corpus: Path, skymap: bytes) -> None:
    p = _replay(engine, config, corpus, skymap, (GW,))
    grb = fermi_gbm.parse((corpus / GRB).read_bytes(), topic="")
    assert p.process(fermi_gbm, b"a test burst", origin="test",
                     item=dataclasses.replace(grb, test=True)).kind == "notice"
    assert _pairs(engine) == []


def test_optical_candidates_are_scored_on_the_joint_region(
        engine: Engine, config: Config, corpus: Path, skymap: bytes) -> None:
    """The pair's product map is the joint event's region: AT2017gfo is a candidate of
    the GW and of the joint event, whose record carries the pair's FARs; retracting
    the GRB withdraws the pair, the joint event and its candidate, not the GW's."""
    p = _replay(engine, config, corpus, skymap, (GW, GRB))
    (pair,) = _pairs(engine)
    name = pair.payload["joint_event_id"]
    assert name == "G298048+FermiGBM-524666471"
    t0 = lvk_voevent.parse((corpus / GW).read_bytes(), topic="").event_time
    kilonova = Alert(alert_id="AT2017gfo-1", object_id="AT2017gfo", survey="ZTF",
                     ra_deg=197.450374, dec_deg=-23.381495, time=t0 + timedelta(days=0.5),
                     quality={"rb": 0.95, "drb": 0.99, "isdiffpos": True})
    assert p.process(lvk_voevent, b"alert", origin="alert", item=kilonova).touched
    by_event = {c.payload["event_id"]: c for c in _candidates(engine)}
    # The GRB's own circle (17.45 deg at 1 sigma, with GBM systematics) holds it too.
    assert set(by_event) == {"G298048", "FermiGBM-524666471", name}
    joint_record = by_event[name].payload
    assert joint_record["joint"]["space_time_far_hz"] == pytest.approx(
        pair.payload["space_time_far_hz"])
    assert joint_record["joint"]["other_event_id"] == "FermiGBM-524666471"
    assert "joint" in joint_record["flags"] and "joint" not in by_event["G298048"].payload
    # The GRB circle favours the GW map's southern end, where the kilonova is: the
    # joint map puts it at a lower credible level, in a smaller searched area.
    gw_record = by_event["G298048"].payload
    assert joint_record["credible_level"] < gw_record["credible_level"]
    assert joint_record["searched_area_deg2"] < gw_record["searched_area_deg2"]

    grb = fermi_gbm.parse((corpus / GRB).read_bytes(), topic="")
    gone = dataclasses.replace(grb, notice_type="Retraction", region=None, retraction=True,
                               issued_time=grb.issued_time + timedelta(hours=1))
    assert p.process(fermi_gbm, b"retraction of the GRB", origin="test",
                     item=gone).kind == "notice"
    status = {c.payload["event_id"]: c.status for c in _candidates(engine)}
    assert status == {"G298048": "active", "FermiGBM-524666471": "retracted",
                      name: "retracted"}
    assert [r.status for r in _pairs(engine)] == ["retracted"]


@SQLITE_ONLY
def test_records_follow_the_published_schema(engine: Engine, config: Config, corpus: Path,
                                             skymap: bytes) -> None:
    _replay(engine, config, corpus, skymap, (GW, GRB))
    with engine.connect() as conn:
        records = report.records(conn)
    assert [r.get("coincidence_type") for r in records] == ["event-event"]
    validator = jsonschema.Draft202012Validator(SCHEMA)
    validator.validate(records[0])
    broken = {k: v for k, v in records[0].items() if k != "overlap_integral"}
    assert not validator.is_valid(broken)  # a pair must say its overlap (null or not)


def _candidates(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(coincidences).where(
            coincidences.c.other_event_pk.is_(None))))


@SQLITE_ONLY
def test_a_neutrino_of_icecubes_gw_search_pairs_by_its_p_value(
        engine: Engine, config: Config, corpus: Path) -> None:
    """IceCube's lvk_nu_track_search neutrino (the schema example, re-timed 12.91 s
    after a real O4 GW as the search reports it) pairs with that GW; the joint FAR is
    FAR_gw x the search's p-value, not the Gold-track rate, which would be far too low
    for a search over every track in +-500 s."""
    gw_raw = (corpus / "gcn-json/igwn-gwalert/O4-2024-01/S240112e-preliminary-1.json")
    p = Pipeline(engine, config)
    assert p.process(lvk, gw_raw.read_bytes(), origin="gw").kind == "notice"
    gw = lvk.parse(gw_raw.read_bytes(), topic="igwn.gwalert")
    raw = (corpus / "gcn-json/gcn-schema/icecube/lvk_nu_track_search.example.json"
           ).read_bytes()
    nu = icecube.parse(raw, topic="gcn.notices.icecube.lvk_nu_track_search")
    nu = dataclasses.replace(nu, event_time=gw.event_time + timedelta(seconds=12.91),
                             issued_time=gw.issued_time + timedelta(minutes=20))
    assert p.process(icecube, raw, origin="nu", item=nu).kind == "notice"
    (row,) = _pairs(engine)
    r = row.payload
    assert (r["event_id"], r["other"]["event_class"]) == (gw.event_id,
                                                          "neutrino.gw_followup")
    assert r["window_s"] == [-500.0, 500.0] and r["dt_s"] == pytest.approx(12.91)
    assert r["far_method"] == "search_p_value" and r["temporal_far_hz"] is None
    assert r["space_time_far_hz"] == pytest.approx(gw.properties["far"] * 0.0191)


@SQLITE_ONLY
def test_lvks_combined_sky_map_is_the_joint_region(engine: Engine, config: Config,
                                                   corpus: Path) -> None:
    """An LVK alert with RAVEN's external_coinc (the corpus's MDC burst MS230425j with
    Fermi trigger 1366451077): its combined_skymap becomes the joint event's region,
    with LVK's own joint FARs, and mma's product of the two maps does not replace it."""
    gw_raw = (corpus / "gcn-json/igwn-gwalert/MSBURST-initial.json").read_bytes()
    gw = lvk.parse(gw_raw, topic="igwn.gwalert")
    assert gw.joint_with == ("FermiGBM-1366451077",) and gw.joint_region is not None
    grb = fermi_gbm.parse((corpus / GRB).read_bytes(), topic="")
    mdc: Notice = dataclasses.replace(  # the MDC's Fermi trigger, as its ivorn dates it
        grb, event_id="FermiGBM-1366451077", test=True,
        event_time=gw.event_time + timedelta(seconds=4.564),
        issued_time=gw.issued_time - timedelta(minutes=5))
    p = Pipeline(engine, config)
    assert p.process(fermi_gbm, b"mdc burst", origin="grb", item=mdc).kind == "notice"
    assert p.process(lvk, gw_raw, origin="gw").kind == "notice"
    (pair,) = _pairs(engine)
    name = pair.payload["joint_event_id"]
    assert name == "MS230425j+FermiGBM-1366451077" and "test" in pair.payload["flags"]
    assert pair.payload["window_s"] == [-60.0, 600.0]  # a burst-group GW
    with engine.connect() as conn:
        (kind,) = conn.execute(
            select(regions.c.kind).join(events, events.c.id == regions.c.event_pk)
            .where(events.c.event_id == name, regions.c.status == "active")).scalars()
        (props,) = conn.execute(select(events.c.properties)
                                .where(events.c.event_id == name)).scalars()
    assert kind == "lvk_combined"
    assert props["joint"]["space_time_far_hz"] == pytest.approx(1.85587892471037e-18)
