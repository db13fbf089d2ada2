"""IPN VOEvents: the real timestamp-only IPN_RAW packets, annuli, IPN_POS, hostile variants."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mma.errors import BadMessage, HostileMessage, InvalidValue, MalformedMessage, MissingField
from mma.handlers import ipn, voevent_other
from mma.registry import Registry
from tests.handlers.test_amon import assert_sniff_claims_only

DATA = Path(__file__).parents[1] / "data" / "ipn"
FILES = sorted(DATA.glob("*.xml"))
LATEST = DATA / "Raw_2023-12-10T21-29-07.98_-00001-400.xml"
# Read off each packet: file → (ISOTime, Who/Date, Pkt_Ser_Num, contributors).
EXPECTED = {
    "Raw_2014-04-23T10-25-03.31_-00001-714.xml": (
        "2014-04-23T10:25:03.31", "2014-04-23T17:50:52", 1, ["INTEGRAL-SPIACS"]),
    "Raw_2023-12-10T15-25-06.26_-00001-740.xml": (
        "2023-12-10T15:25:06.26", "2023-12-10T17:12:02", 11, ["KONUS-Wind"]),
    "Raw_2023-12-10T21-29-07.98_-00001-400.xml": (
        "2023-12-10T21:29:07.98", "2023-12-11T09:21:59", 12, ["KONUS-Wind"]),
}
# The real packet's annulus and position placeholders (GCN's -1).
ANNULUS = ('name="IPN_RA_Center" value="-1.0000"', 'name="IPN_Dec_Center" value="-1.0000"',
           'name="IPN_Radius" value="-1.0000"', 'name="IPN_Width" value="-1.0000"')


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _edit(*pairs: tuple[str, str]) -> bytes:
    text = LATEST.read_text()
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text.encode()


def _annulus(ra: str, dec: str, radius: str, width: str) -> list[tuple[str, str]]:
    return [(old, old.replace("-1.0000", new)) for old, new in
            zip(ANNULUS, (ra, dec, radius, width), strict=True)]


def _position(ra: str, dec: str, radius: str) -> list[tuple[str, str]]:
    return [("<C1>-1.0000</C1>", f"<C1>{ra}</C1>"), ("<C2>-1.0000</C2>", f"<C2>{dec}</C2>"),
            ("<Error2Radius>-1.0000</Error2Radius>", f"<Error2Radius>{radius}</Error2Radius>")]


def test_real_packets_are_here() -> None:
    assert sorted(p.name for p in FILES) == sorted(EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name[:26])
def test_real_raw_packets_are_time_only_notices(path: Path) -> None:
    raw = path.read_bytes()
    assert ipn.sniff(raw) and Registry().detect(raw) is ipn
    notice = ipn.parse(raw, topic="gcn.classic.voevent.IPN_RAW")
    t0, issued, serial, contributors = EXPECTED[path.name]
    stamp = t0.replace("-", "").replace(":", "")
    assert notice.event_id == f"IPN-{stamp}"  # TrigID is -1: the burst time names it
    assert (notice.messenger, notice.instrument, notice.event_class) == ("grb", "IPN", "grb")
    assert notice.notice_type == "IPN_RAW"
    assert notice.event_time == _utc(t0) and notice.issued_time == _utc(issued)
    assert notice.region is None and notice.flags == ("time_only",)
    assert notice.properties["contributors"] == contributors
    assert notice.properties["packet_serial"] == serial
    assert not notice.test and not notice.retraction


def test_an_annulus_is_not_turned_into_a_circle() -> None:
    raw = _edit(("<Param name=\"Times_Only\" value=\"true\"/>",
                 "<Param name=\"Times_Only\" value=\"false\"/>"),
                *_annulus("120.5", "-33.25", "42.0", "0.15"))
    notice = ipn.parse(raw, topic="")
    assert notice.region is None
    assert notice.flags == ("annulus_not_representable", "time_only")
    assert notice.properties["annulus"] == {"ra_center_deg": 120.5, "dec_center_deg": -33.25,
                                            "radius_deg": 42.0, "width_deg": 0.15}


def test_a_segment_packet_is_time_only_even_without_its_annulus() -> None:
    notice = ipn.parse(_edit(('name="Packet_Type" value="31"', 'name="Packet_Type" value="32"')),
                       topic="")
    assert notice.notice_type == "IPN_SEG" and notice.region is None
    assert "annulus_not_representable" in notice.flags


def test_ipn_pos_is_a_circle_with_an_assumed_containment() -> None:
    """No real IPN_POS packet exists in the archives: this one is the real RAW packet with
    the type, the bits and a position changed."""
    raw = _edit(('name="Packet_Type" value="31"', 'name="Packet_Type" value="39"'),
                ('name="TrigID" value="-1"', 'name="TrigID" value="4321"'),
                ("<Param name=\"Times_Only\" value=\"true\"/>",
                 "<Param name=\"Times_Only\" value=\"false\"/>"),
                *_position("201.25", "-12.5", "0.75"))
    notice = ipn.parse(raw, topic="gcn.classic.voevent.IPN_POS")
    assert notice.event_id == "IPN-4321" and notice.notice_type == "IPN_POS"
    region = notice.region
    assert region is not None and region.kind == "circle"
    assert (region.ra_deg, region.dec_deg, region.radius_deg) == (201.25, -12.5, 0.75)
    assert region.containment == 0.9 and notice.flags == ("containment_default_0.9",)


def test_test_role() -> None:
    assert ipn.parse(_edit(('role="observation"', 'role="test"')), topic="").test


TEXT = LATEST.read_text()


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (TEXT[:-300].encode(), MalformedMessage, "not well-formed"),
        (TEXT.replace("<voe:VOEvent", '<!DOCTYPE v [<!ENTITY a "aaaa">]><voe:VOEvent',
                      1).encode(), HostileMessage, "DOCTYPE"),
        (_edit(('name="Packet_Type" value="31"', 'name="Packet_Type" value="30"')),
         InvalidValue, "Packet_Type 30"),
        (_edit(('name="Packet_Type" value="31"', 'name="Packet_Type" value=""')), MissingField,
         "Packet_Type"),
        (_edit(("IPN#Raw_", "IPNX#Raw_")), InvalidValue, "not an IPN"),
        (_edit(('name="TrigID" value="-1"', 'name="TrigID" value="1e9"')), InvalidValue,
         "TrigID"),
        (_edit(*_annulus("361", "0", "10", "1")), InvalidValue, "outside the sky"),
        (_edit(*_annulus("10", "0", "10", "inf")), InvalidValue, "not finite"),
        (_edit(('name="Packet_Type" value="31"', 'name="Packet_Type" value="39"'),
               ("<Param name=\"Times_Only\" value=\"true\"/>",
                "<Param name=\"Times_Only\" value=\"false\"/>")), InvalidValue, "RA"),
        (_edit(("<ISOTime>2023-12-10T21:29:07.98</ISOTime>", "<ISOTime></ISOTime>")),
         MissingField, "ISOTime"),
    ],
)
def test_hostile_variants_raise_bad_message(raw: bytes, error: type[BadMessage],
                                            match: str) -> None:
    with pytest.raises(error, match=match):
        ipn.parse(raw, topic="")


def test_sniff_claims_only_ipn() -> None:
    assert_sniff_claims_only(ipn, DATA)
    # The catch-all leaves IPN packets to this handler.
    assert not voevent_other.sniff(LATEST.read_bytes())


def test_default_topics_skip_streams_without_a_localisation() -> None:
    assert ipn.DEFAULT_TOPICS == ("gcn.classic.voevent.IPN_POS",)
