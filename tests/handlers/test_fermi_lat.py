"""Fermi LAT: GCN Classic VOEvent positions and JSON notices; flares and transients Ignored."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mma.epochs import check_item
from mma.errors import HostileMessage, Ignored, InvalidValue, MalformedMessage, MissingField
from mma.handlers import fermi_gbm, fermi_lat, voevent_other
from mma.registry import Registry
from tests.conftest import CORPUS
from tests.handlers.test_voevent_format import read_xml

FLARE = CORPUS / "gcn-json/gcn-schema/fermi/lat/flare.example.json"
DATA = Path(__file__).resolve().parents[1] / "data" / "fermi_lat"
FILES = sorted(DATA.glob("*.xml"))
INITIAL = DATA / "fermi_lat_pos_ini_0.xml"
OFFLINE = DATA / "fermi_lat_offline_29.xml"
MONITOR = CORPUS / "voevent/fermi-gbm/finkmm_fermi_voevent_number=2842.xml"
OTHERS = sorted(p for p in (CORPUS / "voevent").rglob("*.xml") if p != MONITOR)
# Packet type → notice type, as GCN names the Kafka topics (gcn.classic.voevent.FERMI_<…>).
TOPIC_OF = {120: "LAT_POS_INI", 121: "LAT_POS_UPD", 122: "LAT_POS_DIAG", 128: "LAT_OFFLINE"}


def _edit(path: Path, old: str, new: str) -> bytes:
    text = path.read_text()
    assert old in text, old
    return text.replace(old, new, 1).encode()


def test_data_is_present() -> None:
    assert len(FILES) == 5


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_real_lat_position_parses(path: Path) -> None:
    raw = path.read_bytes()
    ref = read_xml(path)
    params = ref["params"]
    assert fermi_lat.sniff(raw) and not fermi_gbm.sniff(raw)
    assert Registry().detect(raw) is fermi_lat
    notice = fermi_lat.parse(raw, topic="gcn.classic.voevent.FERMI_LAT_POS_UPD")
    check_item(notice, fermi_lat)  # after FIRST_LIGHT, not in the future
    assert notice.notice_type == TOPIC_OF[int(params["Packet_Type"])]
    assert notice.event_id == f"FermiLAT-{int(params['TrigID'])}"
    assert notice.messenger == "grb" and notice.instrument == "Fermi-LAT"
    assert notice.event_class == "grb" and not notice.test and not notice.retraction
    assert notice.event_time == ref["isotime"] and notice.issued_time == ref["date"]
    assert notice.properties["ivorn"] == ref["ivorn"]
    ra, dec, radius = ref["position"]
    region = notice.region
    assert region is not None and region.kind == "circle"
    assert (region.ra_deg, region.dec_deg, region.radius_deg) == (ra, dec, radius)
    assert region.containment == 0.9 and region.systematic is None  # 90 % statistical
    assert notice.flags == ()


def test_on_board_notices_form_one_event_the_offline_search_its_own() -> None:
    ids = {fermi_lat.parse(p.read_bytes(), topic="").event_id for p in FILES if p != OFFLINE}
    assert ids == {"FermiLAT-793795104"}
    offline = fermi_lat.parse(OFFLINE.read_bytes(), topic="")
    assert offline.event_id == "FermiLAT-793795080" and offline.aliases == ()
    assert offline.properties["temporal_prox_match"] is True
    assert offline.region is not None and offline.region.radius_deg == 0.1059


@pytest.mark.parametrize(("packet_type", "why"), [
    ("123", "unknown-source transient"), ("125", "known source"), ("999", "no mma model")])
def test_lat_packets_that_are_not_bursts_are_ignored(packet_type: str, why: str) -> None:
    raw = _edit(INITIAL, 'name="Packet_Type"     value="120"',
                f'name="Packet_Type"     value="{packet_type}"')  # fmt: skip
    with pytest.raises(Ignored, match=why):
        fermi_lat.parse(raw, topic="gcn.classic.voevent.FERMI_LAT_TRANS")


def test_lat_monitor_is_left_to_the_catch_all() -> None:
    raw = MONITOR.read_bytes()
    assert not fermi_lat.sniff(raw) and voevent_other.sniff(raw)
    with pytest.raises(Ignored, match="LAT_MONITOR"):
        fermi_lat.parse(raw, topic="gcn.classic.voevent.FERMI_LAT_MONITOR")


def test_lat_test_packet_and_vetoes() -> None:
    test = fermi_lat.parse(_edit(INITIAL, 'value="120"', 'value="124"'), topic="")
    assert test.test and test.notice_type == "LAT_POS_TEST"
    vetoed = _edit(INITIAL, '"Def_NOT_a_GRB"          value="false"',
                   '"Def_NOT_a_GRB"          value="true"')  # fmt: skip
    assert fermi_lat.parse(vetoed, topic="").flags == ("not_grb",)
    no_position = _edit(INITIAL, "<Error2Radius>0.5000</Error2Radius>",
                        "<Error2Radius>0</Error2Radius>")  # fmt: skip
    notice = fermi_lat.parse(no_position, topic="")
    assert notice.region is None and notice.flags == ("no_position",)


@pytest.mark.parametrize(("old", "new", "error"), [
    ("<Error2Radius>0.5000</Error2Radius>", "<Error2Radius>-0.5</Error2Radius>", InvalidValue),
    ("<Error2Radius>0.5000</Error2Radius>", "<Error2Radius>500</Error2Radius>", InvalidValue),
    ("<C1>42.2333</C1>", "<C1>inf</C1>", InvalidValue),
    ("<ISOTime>2026-02-26T10:38:00</ISOTime>", "<ISOTime>2026-02-30T10:38:00</ISOTime>",
     InvalidValue),
    ("<ISOTime>2026-02-26T10:38:00</ISOTime>", "", MissingField),
    ('"TrigID"          value="793795104"', '"TrigID"          value="79379x5104"',
     InvalidValue),
    ('"TrigID"          value="793795104"', '"TrigNum"          value="793795104"',
     MissingField),
    ("ivo://nasa.gsfc.gcn/Fermi#LAT_", "ivo://nasa.gsfc.gcn/Fermi#GBM_", InvalidValue),
])  # fmt: skip
def test_hostile_lat_variants(old: str, new: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        fermi_lat.parse(_edit(INITIAL, old, new), topic="")


def test_lat_without_position_or_broken_xml() -> None:
    raw = INITIAL.read_text()
    cut = re.sub(r"<Position2D.*?</Position2D>", "", raw, flags=re.S)
    with pytest.raises(MissingField, match="Position2D"):
        fermi_lat.parse(cut.encode(), topic="")
    with pytest.raises(HostileMessage):
        fermi_lat.parse(INITIAL.read_bytes() + b"<!--" + b"x" * 2**20 + b"-->", topic="")
    with pytest.raises(MalformedMessage):
        fermi_lat.parse(raw[: len(raw) // 2].encode(), topic="")
    with pytest.raises(MalformedMessage):
        fermi_lat.parse(b"not a notice", topic="")


@pytest.mark.parametrize("path", OTHERS, ids=lambda p: p.name)
def test_sniff_refuses_other_voevents(path: Path) -> None:
    assert not fermi_lat.sniff(path.read_bytes())


def test_topics_are_the_public_classic_ones() -> None:
    assert "gcn.notices.fermi.lat.flare" not in fermi_lat.DEFAULT_TOPICS  # not public
    assert all(t.startswith("gcn.classic.voevent.FERMI_LAT_") for t in fermi_lat.DEFAULT_TOPICS)
    registry = Registry()
    for topic in fermi_lat.DEFAULT_TOPICS:
        assert registry.for_topic(topic) is fermi_lat


def test_flare_is_ignored_with_its_source() -> None:
    raw = FLARE.read_bytes()
    doc = json.loads(raw)
    assert fermi_lat.sniff(raw)
    with pytest.raises(Ignored, match=f"{doc['event_name']}.*flux ratio {doc['flux_ratio']}"):
        fermi_lat.parse(raw, topic="gcn.notices.fermi.lat.flare")


def test_flare_with_broken_values_is_still_a_bad_message() -> None:
    doc = json.loads(FLARE.read_bytes())
    doc["TS"] = "high"
    with pytest.raises(InvalidValue, match="TS"):
        fermi_lat.parse(json.dumps(doc).encode(), topic="")


def _grb() -> dict[str, object]:
    return {"$schema": "https://gcn.nasa.gov/schema/main/gcn/notices/fermi/lat/grb.schema.json",
            "mission": "Fermi", "instrument": "LAT", "id": ["726773850"],
            "alert_type": "initial", "alert_tense": "current",
            "trigger_time": "2024-01-12T17:37:25.12Z", "alert_datetime": "2024-01-12T17:40:00Z",
            "ra": 270.6, "dec": 24.5, "ra_dec_error": 0.4, "event_name": ["GRB 240112A"]}


def test_grb_position_becomes_a_notice() -> None:
    notice = fermi_lat.parse(json.dumps(_grb()).encode(), topic="")
    assert notice.event_id == "FermiLAT-726773850" and notice.messenger == "grb"
    assert notice.event_class == "grb"
    assert notice.aliases == ("GRB240112A",)
    assert notice.region is not None and notice.region.radius_deg == 0.4


def test_grb_without_trigger_time() -> None:
    doc = _grb()
    del doc["trigger_time"]
    with pytest.raises(MissingField, match="trigger_time"):
        fermi_lat.parse(json.dumps(doc).encode(), topic="")


def test_foreign_schema() -> None:
    raw = (CORPUS / "gcn-json/gcn-schema/fermi/gbm/trigger.alert.example.json").read_bytes()
    assert not fermi_lat.sniff(raw)
    with pytest.raises(InvalidValue, match="not a Fermi LAT"):
        fermi_lat.parse(raw, topic="")
