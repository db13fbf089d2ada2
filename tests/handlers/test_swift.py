"""Swift VOEvents: every corpus file, checked against an independent read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mma.errors import BadMessage, Ignored, InvalidValue, MissingField
from mma.handlers import swift
from tests.conftest import CORPUS
from tests.handlers.test_voevent_format import read_xml

VOEVENT = CORPUS / "voevent"
FILES = sorted(
    p for p in [*(VOEVENT / "swift").glob("*.xml"),
                *(VOEVENT / "gcn-2024-01-fink-mm").glob("*.xml")]
    if "/SWIFT#" in (read_xml(p)["ivorn"] or "")
)  # fmt: skip
OTHERS = sorted(p for p in VOEVENT.rglob("*.xml") if p not in FILES)
DAY = VOEVENT / "gcn-2024-01-fink-mm"
BAT = DAY / "BAT_GRB_Pos_1208389-262.xml"
XRT = DAY / "XRT_Pos_1208389-303.xml"
UVOT = DAY / "UVOT_Pos_1208389-316.xml"
LOST_LOCK = VOEVENT / "swift/finkmm_swift_voevent_number=17834.xml"
NO_POSITION = {"FOM_Obs", "BAT_Lightcurve"}


def _kind(ivorn: str) -> str:
    return re.sub(r"_\d.*$", "", ivorn.split("#", 1)[1])


def _edit(path: Path, old: str, new: str) -> bytes:
    text = path.read_text()
    assert old in text, old
    return text.replace(old, new, 1).encode()


def test_corpus_is_present() -> None:
    assert len(FILES) == 17  # 12 in swift/, 5 from 2024-01


def test_error_table() -> None:
    assert set(swift.ERRORS) == {"BAT_GRB_Pos", "BAT_QuickLook_Pos", "BAT_Trans_Pos",
                                 "XRT_Pos", "UVOT_Pos"}  # fmt: skip
    assert all(model.containment == 0.9 for model in swift.ERRORS.values())
    assert {k for k, m in swift.ERRORS.items() if not m.trigger_time} == {"XRT_Pos", "UVOT_Pos"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_corpus_notice_parses_or_is_ignored(path: Path) -> None:
    raw = path.read_bytes()
    ref = read_xml(path)
    kind = _kind(ref["ivorn"])
    assert swift.sniff(raw)
    if kind in NO_POSITION:
        with pytest.raises(Ignored, match=kind):
            swift.parse(raw, topic="gcn.classic.voevent.SWIFT_FOM_OBS")
        return
    notice = swift.parse(raw, topic="gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK")
    params = ref["params"]
    assert notice.event_id == f"Swift-{int(params['TrigID'])}"
    assert notice.notice_type == kind
    assert notice.messenger == ("xray" if kind == "BAT_Trans_Pos" else "grb")
    assert notice.event_class == ("xray" if kind == "BAT_Trans_Pos" else "grb")
    assert notice.event_time == ref["isotime"] and notice.issued_time == ref["date"]
    ra, dec, radius = ref["position"]
    region = notice.region
    assert region is not None and region.kind == "circle"
    assert (region.ra_deg, region.dec_deg, region.radius_deg) == (ra, dec, radius)
    assert region.containment == 0.9 and region.systematic is None
    full_names = [n.replace(" ", "") for n in ref["names"] if re.fullmatch(r"GRB \d{6}[A-Z]", n)]
    assert list(notice.aliases) == full_names
    assert ("no_event_time" in notice.flags) == (kind in ("XRT_Pos", "UVOT_Pos"))
    lost = params.get("StarTrack_Lost_Lock") == "true" or params.get(
        "ImTrig_during_ST_LoL") == "true"
    assert ("startrack_lost_lock" in notice.flags) == lost
    assert ("not_grb" in notice.flags) == (params.get("Def_NOT_a_GRB") == "true")
    assert not notice.test and not notice.retraction


def test_refinements_supersede_the_bat_circle_within_one_event() -> None:
    bat, xrt, uvot = (swift.parse(p.read_bytes(), topic="") for p in (BAT, XRT, UVOT))
    assert bat.event_id == xrt.event_id == uvot.event_id == "Swift-1208389"
    # XRT and UVOT refine the burst: same class (and window) as the BAT position.
    assert bat.event_class == xrt.event_class == uvot.event_class == "grb"
    radii = [n.region.radius_deg for n in (bat, xrt, uvot)
             if n.region is not None and n.region.radius_deg is not None]
    assert radii == sorted(radii, reverse=True) and radii[-1] * 3600 < 1.0  # arcsec
    assert bat.issued_time < xrt.issued_time < uvot.issued_time
    # XRT's ISOTime is its own observation, 156 s after the BAT trigger: not a new t0.
    assert (xrt.event_time - bat.event_time).total_seconds() == pytest.approx(156.03)
    assert xrt.properties["observation_time"] == xrt.event_time.isoformat()


def test_startrack_lost_lock_is_a_flag() -> None:
    notice = swift.parse(LOST_LOCK.read_bytes(), topic="")
    assert "startrack_lost_lock" in notice.flags and "known_source" in notice.flags
    assert notice.region is not None


def test_not_a_grb_is_flagged_not_dropped() -> None:
    raw = _edit(BAT, '<Param name="Def_NOT_a_GRB" value="false"/>',
                '<Param name="Def_NOT_a_GRB" value="true"/>')
    notice = swift.parse(raw, topic="")
    assert "not_grb" in notice.flags and notice.region is not None and not notice.retraction


def test_named_grb_alias() -> None:
    raw = _edit(BAT, "<Name>GRB 240112</Name>", "<Name>GRB 240112A</Name>")
    assert swift.parse(raw, topic="").aliases == ("GRB240112A",)
    # Without the letter the name is shared by every burst of the day: no alias.
    assert swift.parse(BAT.read_bytes(), topic="").aliases == ()


def test_test_and_utility_roles() -> None:
    assert swift.parse(_edit(BAT, 'role="observation"', 'role="test"'), topic="").test
    with pytest.raises(Ignored, match="utility"):
        swift.parse(_edit(BAT, 'role="observation"', 'role="utility"'), topic="")


@pytest.mark.parametrize("path", OTHERS, ids=lambda p: p.name)
def test_sniff_refuses_other_voevents(path: Path) -> None:
    assert not swift.sniff(path.read_bytes())


@pytest.mark.parametrize(
    ("old", "new", "error", "words"),
    [
        ('<Param name="TrigID" value="1208389" ucd="meta.id"/>', "", MissingField, "TrigID"),
        ('value="1208389"', 'value="12o8389"', InvalidValue, "not an integer"),
        ("<C1>270.6441</C1>", "<C1>nan</C1>", InvalidValue, "not finite"),
        ("<C1>270.6441</C1>", "<C1>-10</C1>", InvalidValue, "RA"),
        ("<Error2Radius>0.0500</Error2Radius>", "<Error2Radius>-0.05</Error2Radius>",
         InvalidValue, "Error2Radius -0.05 deg is outside the accepted range"),
        ("<ISOTime>2024-01-12T17:37:24.97</ISOTime>", "", MissingField, "ISOTime"),
        ("ivo://nasa.gsfc.gcn/SWIFT#", "ivo://nasa.gsfc.gcn/SWIFTY#", InvalidValue, "not a Swift"),
    ],
)
def test_bad_values(old: str, new: str, error: type[BadMessage], words: str) -> None:
    with pytest.raises(error) as info:
        swift.parse(_edit(BAT, old, new), topic="")
    assert words in str(info.value)
