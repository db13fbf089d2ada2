"""INTEGRAL IBAS VOEvents: every corpus file, checked against an independent read."""

from __future__ import annotations

from pathlib import Path

import pytest

from mma.errors import BadMessage, Ignored, InvalidValue, MissingField
from mma.handlers import integral
from tests.conftest import CORPUS
from tests.handlers.test_voevent_format import read_xml

VOEVENT = CORPUS / "voevent"
FILES = sorted([*(VOEVENT / "integral").glob("*.xml"),
                *(VOEVENT / "gcn-2024-01-fink-mm").glob("*_Pos_0*.xml")])  # fmt: skip
OTHERS = sorted(p for p in VOEVENT.rglob("*.xml") if p not in FILES)
WAKEUP = VOEVENT / "gcn-2024-01-fink-mm/Wakeup_Pos_010472-0-924.xml"
REFINED = VOEVENT / "gcn-2024-01-fink-mm/Refined_Pos_010472-1-937.xml"
TYPES = {"53": "Wakeup_Pos", "54": "Refined_Pos", "55": "Offline_Pos", "56": "Weak_Pos"}


def _edit(path: Path, old: str, new: str) -> bytes:
    text = path.read_text()
    assert old in text, old
    return text.replace(old, new, 1).encode()


def test_corpus_is_present() -> None:
    assert len(FILES) == 8


def test_error_table() -> None:
    expected = dict.fromkeys(TYPES.values(), 0.9)
    assert expected == integral.ERRORS


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_corpus_notice_parses(path: Path) -> None:
    raw = path.read_bytes()
    ref = read_xml(path)
    params = ref["params"]
    assert integral.sniff(raw)
    notice = integral.parse(raw, topic="gcn.classic.voevent.INTEGRAL_REFINED")
    assert notice.event_id == f"INTEGRAL-{int(params['TrigID']) % 65536}"
    assert notice.notice_type == TYPES[params["Packet_Type"]]
    assert notice.messenger == "grb" and notice.instrument == "INTEGRAL-IBAS"
    assert notice.event_class == "grb"
    assert notice.event_time == ref["isotime"] and notice.issued_time == ref["date"]
    ra, dec, radius = ref["position"]
    region = notice.region
    assert region is not None and region.kind == "circle"
    assert (region.ra_deg, region.dec_deg, region.radius_deg) == (ra, dec, radius)
    assert region.containment == 0.9 and region.systematic is None
    test = (ref["role"] == "test" or params["Test_Notice"] == "true"
            or ref["ivorn"].startswith("ivo://lvk.internal/"))
    assert notice.test is test
    assert ("mdc" in notice.flags) == ref["ivorn"].startswith("ivo://lvk.internal/")
    assert ("weak" in notice.flags) == (notice.notice_type == "Weak_Pos")


def test_wakeup_and_refined_are_one_event() -> None:
    wakeup = integral.parse(WAKEUP.read_bytes(), topic="")
    refined = integral.parse(REFINED.read_bytes(), topic="")
    # Refined's TrigID is 76008 = 10472 + 1 * 65536: the same IBAS trigger, revision 1.
    assert read_xml(REFINED)["params"]["TrigID"] == "76008"
    assert wakeup.event_id == refined.event_id == "INTEGRAL-10472"
    assert refined.properties["trigger_revision"] == 1
    assert refined.issued_time > wakeup.issued_time


def test_mdc_and_test_packets_are_test() -> None:
    mdc = integral.parse((VOEVENT / "integral/integral_mdc_gcn.xml").read_bytes(), topic="")
    role = integral.parse((VOEVENT / "integral/integral_test_gcn.xml").read_bytes(), topic="")
    assert mdc.test and "mdc" in mdc.flags and mdc.event_id == "INTEGRAL-1234"
    assert role.test and read_xml(VOEVENT / "integral/integral_test_gcn.xml")["role"] == "test"


def test_spiacs_and_utility_are_ignored() -> None:
    with pytest.raises(Ignored, match="SPIACS"):
        integral.parse(_edit(WAKEUP, 'name="Packet_Type" value="53"',
                             'name="Packet_Type" value="52"'), topic="")
    with pytest.raises(Ignored, match="utility"):
        integral.parse(_edit(WAKEUP, 'role="observation"', 'role="utility"'), topic="")


@pytest.mark.parametrize("path", OTHERS, ids=lambda p: p.name)
def test_sniff_refuses_other_voevents(path: Path) -> None:
    assert not integral.sniff(path.read_bytes())


@pytest.mark.parametrize(
    ("old", "new", "error", "words"),
    [
        ('name="Packet_Type" value="53"', 'name="Packet_Type" value="54"', InvalidValue,
         "ivorn says"),
        ('name="Packet_Type" value="53"', 'name="Packet_Type" value="99"', InvalidValue,
         "not an IBAS"),
        ('name="TrigID" value="10472"', 'name="TrigID" value="-5"', InvalidValue, "negative"),
        ('name="TrigID" value="10472"', 'name="Trig" value="1"', MissingField, "TrigID"),
        ("<C2>-35.5582</C2>", "<C2>95</C2>", InvalidValue, "Dec"),
        ("<Error2Radius>0.0531</Error2Radius>", "<Error2Radius>-1</Error2Radius>",
         InvalidValue, "Error2Radius -1.0 deg is outside the accepted range"),
        ("<ISOTime>2024-01-15T16:45:55.09</ISOTime>", "<ISOTime>2024-01-15 noon</ISOTime>",
         InvalidValue, "ISO 8601"),
    ],
)
def test_bad_values(old: str, new: str, error: type[BadMessage], words: str) -> None:
    with pytest.raises(error) as info:
        integral.parse(_edit(WAKEUP, old, new), topic="")
    assert words in str(info.value)
