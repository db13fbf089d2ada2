"""GECAM VOEvents: the real flight and ground notices of GECAM-B trigger 260."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mma.epochs import check_item
from mma.errors import HostileMessage, Ignored, InvalidValue, MalformedMessage, MissingField
from mma.handlers import gecam
from mma.registry import Registry
from tests.conftest import CORPUS
from tests.handlers.test_voevent_format import read_xml

DATA = Path(__file__).resolve().parents[1] / "data"
FILES = sorted((DATA / "gecam").glob("*.xml"))
GND = DATA / "gecam/260-GND.xml"
FLT = DATA / "gecam/260-FLT.xml"
OTHERS = sorted([*(CORPUS / "voevent").rglob("*.xml"), *(DATA / "svom").glob("*.xml"),
                 *(DATA / "fermi_lat").glob("*.xml")])  # fmt: skip


def _edit(path: Path, old: str, new: str) -> bytes:
    text = path.read_text()
    assert old in text, old
    return text.replace(old, new, 1).encode()


def test_data_is_present() -> None:
    assert len(FILES) == 2


def test_containment_is_gcns_68_percent() -> None:
    assert abs(gecam.CONTAINMENT - 0.6827) < 1e-4


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_real_notice_parses(path: Path) -> None:
    raw = path.read_bytes()
    ref = read_xml(path)
    params = ref["params"]
    assert gecam.sniff(raw) and Registry().detect(raw) is gecam
    assert not any(re.search("contain", name, re.I) for name in params)  # stated nowhere
    notice = gecam.parse(raw, topic="gcn.classic.voevent.GECAM_GND")
    check_item(notice, gecam)  # after FIRST_LIGHT, not in the future
    assert notice.notice_type == {"188": "GECAM_FLT", "189": "GECAM_GND"}[params["Packet_Type"]]
    assert notice.event_id == f"GECAM-{params['MISSION']}-{int(params['Trigger_Number'])}"
    assert notice.messenger == "grb" and notice.instrument == "GECAM"
    assert notice.event_class == "grb" and not notice.test and notice.flags == ()
    assert notice.event_time == ref["isotime"] and notice.issued_time == ref["date"]
    ra, dec, radius = ref["position"]
    region = notice.region
    assert region is not None and region.kind == "circle"
    assert (region.ra_deg, region.dec_deg, region.radius_deg) == (ra, dec, radius)
    assert region.containment == pytest.approx(0.6827, abs=1e-4) and region.systematic is None
    assert notice.properties["src_class"] == params["SRC_CLASS"] == "GRB"


def test_flight_and_ground_are_one_event() -> None:
    flt, gnd = (gecam.parse(p.read_bytes(), topic="") for p in (FLT, GND))
    assert flt.event_id == gnd.event_id == "GECAM-B-260"
    assert flt.event_time == gnd.event_time
    assert flt.issued_time < gnd.issued_time  # the ground position supersedes
    assert flt.properties["trigger_signif_sigma"] == 4.9
    assert gnd.properties["burst_dur_s"] == 3.0


def test_non_grb_class_is_a_flag_not_a_drop() -> None:
    notice = gecam.parse(_edit(GND, 'value="GRB">', 'value="SFLARE">'), topic="")
    assert notice.flags == ("not_grb:sflare",) and notice.region is not None


def test_test_trigger_numbers_and_radius_zero() -> None:
    test = gecam.parse(_edit(GND, 'value="260"', 'value="100000260"'), topic="")
    assert test.test and test.event_id == "GECAM-B-100000260"
    none = gecam.parse(_edit(GND, "<Error2Radius>1.9299", "<Error2Radius>0"), topic="")
    assert none.region is None and none.flags == ("no_position",)


@pytest.mark.parametrize(("old", "new", "error"), [
    ("<Error2Radius>1.9299", "<Error2Radius>-1.9299", InvalidValue),
    ("<Error2Radius>1.9299", "<Error2Radius>1e400", InvalidValue),
    ("<Error2Radius>1.9299", "<Error2Radius>999", InvalidValue),
    ("<C2>1.1900</C2>", "<C2>91.1900</C2>", InvalidValue),
    ("<ISOTime>2024-01-12T05:41:25.85</ISOTime>", "<ISOTime>2024-13-12T05:41:25.85</ISOTime>",
     InvalidValue),
    ("<ISOTime>2024-01-12T05:41:25.85</ISOTime>", "", MissingField),
    ('value="260"', 'value="two hundred"', InvalidValue),
    ('value="260"', 'value="0"', InvalidValue),
    ('name="Trigger_Number"', 'name="TrigID"', MissingField),
    ('value="B">', 'value="C">', InvalidValue),
    ('value="GRB">', 'value="grb\nGRB">', InvalidValue),
    ('value="189"', 'value="x"', InvalidValue),
    ("ivo://nasa.gsfc.gcn/GECAM#", "ivo://nasa.gsfc.gcn/INTEGRAL#", InvalidValue),
])  # fmt: skip
def test_hostile_variants_are_bad_messages(old: str, new: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        gecam.parse(_edit(GND, old, new), topic="")


def test_missing_position_and_broken_xml() -> None:
    text = GND.read_text()
    with pytest.raises(MissingField, match="Position2D"):
        gecam.parse(re.sub(r"<Position2D.*?</Position2D>", "", text, flags=re.S).encode(),
                    topic="")  # fmt: skip
    with pytest.raises(HostileMessage):
        gecam.parse(GND.read_bytes() + b"<!--" + b"x" * 2**20 + b"-->", topic="")
    for broken in (text[: len(text) // 2].encode(), b"GECAM 260", b"[]"):
        with pytest.raises(MalformedMessage):
            gecam.parse(broken, topic="")


def test_other_packet_types_are_ignored() -> None:
    with pytest.raises(Ignored, match="190"):
        gecam.parse(_edit(GND, 'value="189"', 'value="190"'), topic="")
    with pytest.raises(Ignored, match="utility"):
        gecam.parse(_edit(GND, 'role="observation"', 'role="utility"'), topic="")


@pytest.mark.parametrize("path", OTHERS, ids=lambda p: p.name)
def test_sniff_refuses_other_families(path: Path) -> None:
    assert not gecam.sniff(path.read_bytes())


def test_topics() -> None:
    registry = Registry()
    assert gecam.DEFAULT_TOPICS == ("gcn.classic.voevent.GECAM_FLT",
                                    "gcn.classic.voevent.GECAM_GND")  # fmt: skip
    assert all(registry.for_topic(t) is gecam for t in gecam.DEFAULT_TOPICS)
