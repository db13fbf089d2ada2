"""SVOM FSC VOEvents: real ECLAIRs, GRM, MXT and retraction notices from GCN Kafka."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mma.epochs import check_item
from mma.errors import HostileMessage, Ignored, InvalidValue, MalformedMessage, MissingField
from mma.handlers import svom, svom_voevent, voevent_other
from mma.registry import Registry
from tests.conftest import CORPUS
from tests.handlers.test_voevent_format import read_xml

DATA = Path(__file__).resolve().parents[1] / "data" / "svom"
FILES = sorted(DATA.glob("*.xml"))
WAKEUP = DATA / "eclairs_319.xml"
GRM_TIME_ONLY = DATA / "grm_284.xml"
GRM_NO_ERROR = DATA / "grm_330.xml"
GRM_2025 = DATA / "sb25031103-GRM_TRIGGER-no_coords.xml"
CATALOG = DATA / "svom_voevent_sb25091702_eclairs-catalog.xml"
OTHERS = sorted([*(CORPUS / "voevent").rglob("*.xml"), *(CORPUS / "gcn-json").rglob("*.json")])
# FSC's notice types by instrument, read from the ivorn (``sb…_<type>[_qf#]``).
INSTRUMENT_OF = {"grm-trigger": "GRM", "eclairs-wakeup": "ECLAIRs", "eclairs-catalog": "ECLAIRs",
                 "slewing": "ECLAIRs", "not-slewing": "ECLAIRs", "mxt-initial": "MXT",
                 "mxt-update": "MXT"}  # fmt: skip


def _edit(path: Path, old: str, new: str) -> bytes:
    text = path.read_text()
    assert old in text, old
    return text.replace(old, new, 1).encode()


def _kind(ivorn: str) -> str:
    match = re.fullmatch(r"ivo://org\.svom/fsc#sb\d{8}_([a-z-]+?)(?:_qf\d)?", ivorn)
    assert match, ivorn
    return match.group(1)


def test_data_is_present() -> None:
    assert len(FILES) == 22


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_real_notice_parses(path: Path) -> None:
    raw = path.read_bytes()
    ref = read_xml(path)
    params = ref["params"]
    assert svom_voevent.sniff(raw)
    notice = svom_voevent.parse(raw, topic="gcn.notices.svom.voevent.eclairs")
    check_item(notice, svom_voevent)  # after FIRST_LIGHT, not in the future
    kind = _kind(ref["ivorn"])
    assert notice.notice_type == kind
    assert notice.event_id == f"SVOM-{params['Burst_Id']}"
    assert notice.instrument == f"SVOM-{params['Instrument']}"
    assert INSTRUMENT_OF.get(kind, params["Instrument"]) == params["Instrument"]
    assert notice.event_time == ref["isotime"] and notice.issued_time == ref["date"]
    assert notice.properties["ivorn"] == ref["ivorn"] and not notice.test
    assert notice.retraction is (kind == "retraction")
    if kind in ("retraction", "grm-trigger"):
        assert notice.region is None and "no_position" not in notice.flags  # time only
        return
    ra, dec, radius = ref["position"]
    region = notice.region
    assert region is not None and region.kind == "circle"
    assert (region.ra_deg, region.dec_deg, region.radius_deg) == (ra, dec, radius)
    assert region.containment == 0.9 and region.systematic is None
    assert ("no_event_time" in notice.flags) is kind.startswith("mxt")


def test_older_fsc_format_reads_the_same() -> None:
    # 2025-03 packets: Who/Date without an offset (UTC), AuthorIVORN ivo://org.svom/FSC.
    notice = svom_voevent.parse((DATA / "sb25031101-ECLAIRS_WAKEUP.xml").read_bytes(), topic="")
    assert notice.issued_time.isoformat() == "2025-03-11T07:26:09+00:00"
    assert notice.region is not None and notice.region.radius_deg == 0.1755


def test_mxt_time_is_an_observation_time() -> None:
    notice = svom_voevent.parse((DATA / "mxt_52.xml").read_bytes(), topic="")
    assert "no_event_time" in notice.flags
    assert notice.properties["observation_time"] == "2026-05-11T06:16:38.659000+00:00"
    assert notice.properties["alert_seq_t0"] == "2026-05-11T06:13:32.534Z"


def test_one_burst_one_event_across_instruments() -> None:
    names = ("grm_353.xml", "eclairs_319.xml", "eclairs_320.xml", "mxt_52.xml")
    notices = [svom_voevent.parse((DATA / n).read_bytes(), topic="") for n in names]
    assert {n.event_id for n in notices} == {"SVOM-sb26051101"}
    assert [n.instrument for n in notices] == ["SVOM-GRM", "SVOM-ECLAIRs", "SVOM-ECLAIRs",
                                               "SVOM-MXT"]  # fmt: skip


def test_grm_without_computed_error_is_time_only() -> None:
    # Three detectors: a direction with Error2Radius -1 (FSC: not computed on board).
    assert read_xml(GRM_NO_ERROR)["position"][2] == -1.0
    for path in (GRM_TIME_ONLY, GRM_NO_ERROR, GRM_2025):
        notice = svom_voevent.parse(path.read_bytes(), topic="gcn.notices.svom.voevent.grm")
        assert notice.region is None and notice.messenger == "grb" and notice.flags == ()
        grds = read_xml(path)["params"]["Triggered_GRDs"]
        assert notice.properties["triggered_grds"] == grds and grds.count("1") >= 2


@pytest.mark.parametrize(("name", "retracted"), [
    ("eclairs_304.xml", ["ivo://org.svom/fsc#sb26030408_eclairs-wakeup"]),
    ("grm_286.xml", ["ivo://org.svom/fsc#sb26020402_grm-trigger",
                     "ivo://org.svom/fsc#sb26020402_eclairs-preliminary",
                     "ivo://org.svom/fsc#sb26020402_not-slewing"]),
])  # fmt: skip
def test_retraction_withdraws_the_burst(name: str, retracted: list[str]) -> None:
    notice = svom_voevent.parse((DATA / name).read_bytes(), topic="")
    assert notice.retraction and notice.region is None
    assert notice.properties["retracts"] == retracted
    assert notice.event_id == "SVOM-" + retracted[0].split("#")[1][:10]


def test_not_slewing_keeps_its_position_and_says_so() -> None:
    notice = svom_voevent.parse((DATA / "eclairs_297.xml").read_bytes(), topic="")
    assert notice.notice_type == "not-slewing" and "slew_rejected" in notice.flags
    assert notice.region is not None and notice.region.radius_deg == 0.0947
    slewing = svom_voevent.parse((DATA / "eclairs_300.xml").read_bytes(), topic="")
    assert "slew_rejected" not in slewing.flags


def test_catalogue_flare_is_a_known_xray_source() -> None:
    notice = svom_voevent.parse(CATALOG.read_bytes(), topic="")
    assert notice.messenger == "xray" and notice.event_class == "xray"
    assert "known_source" in notice.flags
    assert notice.properties["source_name"] == "GX 340-00"


def test_mxt_outside_eclairs_r90_is_flagged() -> None:
    outside = svom_voevent.parse((DATA / "mxt_40.xml").read_bytes(), topic="")
    inside = svom_voevent.parse((DATA / "mxt_52.xml").read_bytes(), topic="")
    assert "outside_eclairs_r90" in outside.flags
    assert "outside_eclairs_r90" not in inside.flags


@pytest.mark.parametrize(("old", "new", "error"), [
    ("<Error2Radius>0.0406</Error2Radius>", "", InvalidValue),
    ("<Error2Radius>0.0406</Error2Radius>", "<Error2Radius>0</Error2Radius>", InvalidValue),
    ("<Error2Radius>0.0406</Error2Radius>", "<Error2Radius>-1.0</Error2Radius>", InvalidValue),
    ("<Error2Radius>0.0406</Error2Radius>", "<Error2Radius>nan</Error2Radius>", InvalidValue),
    ("<C2>-33.8525</C2>", "<C2>-133.8525</C2>", InvalidValue),
    ("<ISOTime>2026-05-11T06:13:32.594000</ISOTime>", "<ISOTime>yesterday</ISOTime>",
     InvalidValue),
    ("<ISOTime>2026-05-11T06:13:32.594000</ISOTime>", "", MissingField),
    ('value="sb26051101" ucd="meta.id"', 'value="sb26051102" ucd="meta.id"', InvalidValue),
    ('value="sb26051101" ucd="meta.id"', 'value="M1" ucd="meta.id"', InvalidValue),
    ('<Param name="Burst_Id"', '<Param name="Burst_ID"', MissingField),
    ('value="ECLAIRs" ucd="instr"', 'value="MXT" ucd="instr"', InvalidValue),
    ('value="ECLAIRs" ucd="instr"', 'value="VT" ucd="instr"', InvalidValue),
    ('name="Packet_Type" value="202"', 'name="Packet_Type" value="0xca"', InvalidValue),
    ("ivo://org.svom/fsc#", "ivo://org.example/fsc#", InvalidValue),
])  # fmt: skip
def test_hostile_variants_are_bad_messages(old: str, new: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        svom_voevent.parse(_edit(WAKEUP, old, new), topic="")


def test_missing_position_is_a_missing_field() -> None:
    text = WAKEUP.read_text()
    cut = re.sub(r"<Position2D.*?</Position2D>", "", text, flags=re.S)
    with pytest.raises(MissingField, match="Position2D"):
        svom_voevent.parse(cut.encode(), topic="")


def test_unsafe_or_broken_xml() -> None:
    raw = WAKEUP.read_bytes()
    with pytest.raises(HostileMessage):
        svom_voevent.parse(raw + b"<!--" + b"x" * 2**20 + b"-->", topic="")
    with pytest.raises(HostileMessage):
        svom_voevent.parse(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + raw,
                           topic="")  # fmt: skip
    for broken in (raw[: len(raw) // 2], b"not xml at all", b'{"id": ["sb26051101"]}', b""):
        with pytest.raises(MalformedMessage):
            svom_voevent.parse(broken, topic="")


def test_other_packet_types_are_ignored_not_dead_lettered() -> None:
    vt = _edit(WAKEUP, 'name="Packet_Type" value="202"', 'name="Packet_Type" value="211"')
    with pytest.raises(Ignored, match="211"):
        svom_voevent.parse(vt, topic="")
    with pytest.raises(Ignored, match="utility"):
        svom_voevent.parse(_edit(WAKEUP, 'role="observation"', 'role="utility"'), topic="")


def test_test_role_marks_a_test_notice() -> None:
    notice = svom_voevent.parse(_edit(WAKEUP, 'role="observation"', 'role="test"'), topic="")
    assert notice.test


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_nobody_else_claims_svom_voevents(path: Path) -> None:
    raw = path.read_bytes()
    assert Registry().detect(raw).NAME == "svom_voevent"
    assert not voevent_other.sniff(raw) and not svom.sniff(raw)


@pytest.mark.parametrize("path", OTHERS, ids=lambda p: p.name)
def test_sniff_refuses_other_families(path: Path) -> None:
    assert not svom_voevent.sniff(path.read_bytes())


def test_topics() -> None:
    assert svom_voevent.DEFAULT_TOPICS == (
        "gcn.notices.svom.voevent.eclairs", "gcn.notices.svom.voevent.grm",
        "gcn.notices.svom.voevent.mxt")  # fmt: skip
    assert svom.DEFAULT_TOPICS == ()  # the JSON stream is not public: replays only
    registry = Registry()
    for topic in svom_voevent.DEFAULT_TOPICS:
        assert registry.for_topic(topic) is svom_voevent
