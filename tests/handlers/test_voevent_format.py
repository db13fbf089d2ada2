"""mma.formats.voevent: safe parsing, namespace independence, positions and times.

Expected values are read independently with the standard library's
ElementTree (after the safe parser has vouched for the file), never from the
module under test.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from astropy.time import Time

from mma.errors import BadMessage, HostileMessage, InvalidValue, MalformedMessage, MissingField
from mma.formats.voevent import (
    parse_voevent,
    sniff_ivorn,
    sniff_stream,
    stream_of,
)
from tests.conftest import CORPUS

VOEVENTS = sorted((CORPUS / "voevent").rglob("*.xml"))
GBM_GND = CORPUS / "voevent/fermi-gbm/GRB170817A_GBM_Gnd_Pos_524666471.xml"
NO_NS = CORPUS / "voevent/other/no_namespace_packet.xml"
BAT = CORPUS / "voevent/gcn-2024-01-fink-mm/BAT_GRB_Pos_1208389-262.xml"


def _find(root: ET.Element, name: str) -> ET.Element | None:
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == name:
            return el
    return None


def _edit(path: Path, old: str, new: str) -> bytes:
    text = path.read_text()
    assert old in text, old
    return text.replace(old, new, 1).encode()


def test_corpus_is_present() -> None:
    assert len(VOEVENTS) >= 80


@pytest.mark.parametrize("path", VOEVENTS, ids=lambda p: p.name)
def test_every_corpus_voevent_parses(path: Path) -> None:
    raw = path.read_bytes()
    event = parse_voevent(raw)
    root = ET.fromstring(raw)
    assert event.ivorn == root.get("ivorn")
    assert event.role == root.get("role", "observation")
    assert sniff_ivorn(raw) == event.ivorn
    assert sniff_stream(raw) == event.stream
    assert event.ivorn.startswith(event.stream.partition("#")[0])
    date = _find(root, "Date")
    assert event.date is not None and date is not None and date.text is not None
    assert event.date.utcoffset() is not None
    assert event.date.replace(tzinfo=None) == datetime.fromisoformat(
        date.text.strip().rstrip("Z").split("+")[0]
    )
    for param in root.iter():
        named = param.get("name") and param.get("value") is not None
        if param.tag.rsplit("}", 1)[-1] == "Param" and named:
            assert param.get("name") in event.params
    pos = _find(root, "Position2D")
    position = event.position()
    if pos is None:
        assert position is None
    else:
        c1, c2 = _find(pos, "C1"), _find(pos, "C2")
        assert position is not None and c1 is not None and c2 is not None
        assert math.isclose(position.ra_deg, float(c1.text or "nan") % 360.0)
        assert math.isclose(position.dec_deg, float(c2.text or "nan"))


def test_gbm_ground_position() -> None:
    event = parse_voevent(GBM_GND.read_bytes())
    assert event.stream == "ivo://nasa.gsfc.gcn/Fermi#GBM_Gnd_Pos"
    assert event.packet_type == "GBM_Gnd_Pos"
    assert event.params["TrigID"] == "524666471"
    assert event.params["Def_NOT_a_GRB"] == "false"  # from inside a Group
    assert event.groups["Trigger_ID"]["Def_NOT_a_GRB"] == "false"
    assert event.params["Trigger_ID"] == "0x0"  # the top-level Param wins over the Group name
    assert event.isotime() == datetime(2017, 8, 17, 12, 41, 6, 470000, tzinfo=UTC)
    assert event.date == datetime(2017, 8, 17, 12, 41, 43, tzinfo=UTC)
    assert tuple(event.position() or ())[:3] == (186.62, -48.84, 17.45)
    assert event.param_float("Burst_Signif") == 6.0
    assert event.concepts() == ("process.variation.burst;em.gamma",)


def test_no_namespace_packet_reads_like_a_namespaced_one() -> None:
    event = parse_voevent(NO_NS.read_bytes())
    assert event.role == "test"
    assert event.params["BrokerDomain"] == "voevent.dc3.com"
    assert event.groups["Publish"]["Port"] == "8098"
    # ISOTime has no 'Z': UTC is the VOEvent default for a UTC-… system.
    assert event.isotime() == datetime(2014, 2, 24, 15, 55, 27, 720000, tzinfo=UTC)


def test_why_names() -> None:
    assert parse_voevent(BAT.read_bytes()).why_names() == ("GRB 240112",)


@pytest.mark.parametrize(
    ("ivorn", "stream"),
    [
        ("ivo://nasa.gsfc.gcn/Fermi#GBM_ALERT2018-05-24T09:58:26.31_548848711_0-566",
         "ivo://nasa.gsfc.gcn/Fermi#GBM_ALERT"),
        ("ivo://nasa.gsfc.gcn/SWIFT#XRT_Pos_1208389-303", "ivo://nasa.gsfc.gcn/SWIFT#XRT_Pos"),
        ("ivo://gwnet/LVC#S190425z-1-Initial", "ivo://gwnet/LVC"),
        ("ivo://gaia.cam.uk/alerts#Gaia16aac", "ivo://gaia.cam.uk/alerts"),
        ("ivo://x/y", "ivo://x/y"),
    ],
)
def test_stream_of(ivorn: str, stream: str) -> None:
    assert stream_of(ivorn) == stream


def test_sniff_ignores_non_voevents() -> None:
    assert sniff_ivorn(b'{"ivorn": "ivo://x"}') is None
    assert sniff_ivorn(b"<VOEventX ivorn='ivo://x'/>") is None
    assert sniff_ivorn(b"<voe:VOEvent role='test'/>") is None
    assert sniff_ivorn(b"<voe:VOEvent role='test' ivorn='ivo://a/b#C_D_1'/>") == "ivo://a/b#C_D_1"


# ------------------------------------------------------------------ hostile input
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" ivorn="ivo://x/y#A_B_1"
 role="test"><What><Param name="x" value="&lol3;"/></What></voe:VOEvent>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE VOEvent [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<VOEvent ivorn="ivo://x/y#A_B_1" role="test"><What><Param name="x" value="&xxe;"/></What>
</VOEvent>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE VOEvent SYSTEM "http://example.invalid/voevent.dtd">
<VOEvent ivorn="ivo://x/y#A_B_1" role="test"/>"""


@pytest.mark.parametrize(
    ("label", "raw", "error", "words"),
    [
        ("billion_laughs", BILLION_LAUGHS, HostileMessage, "DOCTYPE"),
        ("xxe", XXE, HostileMessage, "DOCTYPE"),
        ("external_dtd", EXTERNAL_DTD, HostileMessage, "DOCTYPE"),
        ("lower_case_entity", b"<VOEvent ivorn='i'><!entity a 'b'></VOEvent>", HostileMessage,
         "declaration"),
        ("oversized", b"<VOEvent ivorn='ivo://x'>" + b" " * 2**20 + b"</VOEvent>",
         HostileMessage, "cap"),
        ("deep", b"<VOEvent ivorn='ivo://x'>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</VOEvent>",
         HostileMessage, "limits"),
        ("truncated", GBM_GND.read_bytes()[:-40], MalformedMessage, "well-formed"),
        ("utf16", GBM_GND.read_text().encode("utf-16"), MalformedMessage, "UTF-8"),
        ("not_voevent", b"<?xml version='1.0'?><html/>", MalformedMessage, "expected <VOEvent>"),
        ("empty", b"  \n", MalformedMessage, "empty"),
        ("no_ivorn", b"<VOEvent role='test'/>", MissingField, "ivorn"),
        ("bad_role", b"<VOEvent ivorn='ivo://x' role='fake'/>", InvalidValue, "role"),
        ("undeclared_entity", b"<VOEvent ivorn='ivo://x'>&nope;</VOEvent>", MalformedMessage,
         "well-formed"),
    ],
)
def test_hostile_and_broken_documents(
    label: str, raw: bytes, error: type[BadMessage], words: str
) -> None:
    with pytest.raises(error) as info:
        parse_voevent(raw)
    assert words in str(info.value), (label, str(info.value))


def test_xxe_never_reads_the_file() -> None:
    # Even a parser that got past the check must not include /etc/passwd.
    with pytest.raises(HostileMessage) as info:
        parse_voevent(XXE)
    assert "root:" not in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "error", "words"),
    [
        ("<C1>186.6200</C1>", "<C1>NaN</C1>", InvalidValue, "not finite"),
        ("<C1>186.6200</C1>", "<C1>361.0</C1>", InvalidValue, "RA"),
        ("<C1>186.6200</C1>", "<C1>-0.5</C1>", InvalidValue, "RA"),
        ("<C2>-48.8400</C2>", "<C2>-95.0</C2>", InvalidValue, "Dec"),
        ("<C2>-48.8400</C2>", "<C2>inf</C2>", InvalidValue, "not finite"),
        ("<C2>-48.8400</C2>", "<C2></C2>", MissingField, "C2"),
        ("<C2>-48.8400</C2>", "<C2>south</C2>", InvalidValue, "not a number"),
        ("<Error2Radius>17.4500</Error2Radius>", "<Error2Radius>-1</Error2Radius>",
         InvalidValue, "Error2Radius -1.0 deg is outside the accepted range"),
        ("<Error2Radius>17.4500</Error2Radius>", "<Error2Radius>0.000001</Error2Radius>",
         InvalidValue, "Error2Radius 1e-06 deg is outside the accepted range [1e-05 deg"),
        ("<Error2Radius>17.4500</Error2Radius>", f"<Error2Radius>{'9' * 401}</Error2Radius>",
         InvalidValue, "Error2Radius"),
        ('<Position2D unit="deg">', '<Position2D unit="furlong">', InvalidValue, "unit"),
        ("<Name1>RA</Name1>", "<Name1>GLON</Name1>", InvalidValue, "axes"),
        ('coord_system_id="UTC-FK5-GEO"', 'coord_system_id="UTC-GAL-GEO"', InvalidValue,
         "ICRS or FK5"),
    ],
)
def test_bad_positions(old: str, new: str, error: type[BadMessage], words: str) -> None:
    event = parse_voevent(_edit(GBM_GND, old, new))
    with pytest.raises(error) as info:
        event.position()
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "error", "words"),
    [
        ("<ISOTime>2017-08-17T12:41:06.47Z</ISOTime>", "", MissingField, "ISOTime"),
        ("<ISOTime>2017-08-17T12:41:06.47Z</ISOTime>", "<ISOTime>yesterday</ISOTime>",
         InvalidValue, "ISO 8601"),
        ("<ISOTime>2017-08-17T12:41:06.47Z</ISOTime>", "<ISOTime>2017-13-40T12:41:06Z</ISOTime>",
         InvalidValue, "ISO 8601"),
    ],
)
def test_bad_times(old: str, new: str, error: type[BadMessage], words: str) -> None:
    event = parse_voevent(_edit(GBM_GND, old, new))
    with pytest.raises(error) as info:
        event.isotime()
    assert words in str(info.value)


def test_bad_who_date() -> None:
    with pytest.raises(InvalidValue, match="Who/Date"):
        parse_voevent(_edit(GBM_GND, "<Date>2017-08-17T12:41:43</Date>", "<Date>soon</Date>"))


def test_ra_360_wraps_to_zero() -> None:
    event = parse_voevent(_edit(GBM_GND, "<C1>186.6200</C1>", "<C1>360.0</C1>"))
    position = event.position()
    assert position is not None and position.ra_deg == 0.0


def test_time_with_offset_is_converted_to_utc() -> None:
    event = parse_voevent(_edit(GBM_GND, "2017-08-17T12:41:06.47Z", "2017-08-17T14:41:06.47+02:00"))
    assert event.isotime() == datetime(2017, 8, 17, 12, 41, 6, 470000, tzinfo=UTC)


def test_param_value_element_and_missing_param() -> None:
    event = parse_voevent(
        b"<VOEvent ivorn='ivo://x/y#A_B_1'><What><Param name='p'><Value> 4 </Value></Param>"
        b"</What></VOEvent>"
    )
    assert event.params == {"p": "4"} and event.param_float("p") == 4.0
    assert event.date is None and event.position() is None and event.why_names() == ()
    with pytest.raises(MissingField, match="q"):
        event.param("q")


# ------------------------------------------------- independent reader for handler tests
def read_xml(path: Path) -> dict[str, Any]:
    """Ivorn, role, params, Who/Date, ISOTime and Position2D of *path*, via ElementTree.

    Used by the handler tests as the independent reference. Times are returned
    as aware UTC datetimes; the position as (ra, dec, radius) floats or None.
    """
    root = ET.fromstring(path.read_bytes())
    params: dict[str, str] = {}
    for el in root.iter():
        name, value = el.get("name"), el.get("value")
        if el.tag.rsplit("}", 1)[-1] == "Param" and name and value is not None:
            params.setdefault(name, value.strip())
    date, isotime = _find(root, "Date"), _find(root, "ISOTime")
    pos = _find(root, "Position2D")
    position = None
    if pos is not None:
        c1, c2, err = _find(pos, "C1"), _find(pos, "C2"), _find(pos, "Error2Radius")
        position = tuple(float(e.text or "nan") if e is not None else math.nan
                         for e in (c1, c2, err))
    names = [el.text.strip() for el in root.iter()
             if el.tag.rsplit("}", 1)[-1] == "Name" and el.text]
    return {
        "ivorn": root.get("ivorn"),
        "role": root.get("role", "observation"),
        "params": params,
        "date": _aware(date.text if date is not None else None),
        "isotime": _aware(isotime.text if isotime is not None else None),
        "position": position,
        "names": names,
    }


def _aware(text: str | None) -> datetime | None:
    # astropy's ISOT parser, not datetime.fromisoformat as in the module under test.
    if text is None:
        return None
    text = text.strip().removesuffix("Z").removesuffix("+00:00")
    return Time(text, format="isot", scale="utc").to_datetime(timezone=UTC)


@pytest.mark.parametrize(("old", "new", "words"), [
    ("<ISOTime>2017-08-17T12:41:06.47Z</ISOTime>",
     "<ISOTime>9999-12-31T23:59:59-05:00</ISOTime>",
     "WhereWhen ISOTime '9999-12-31T23:59:59-05:00' is outside the years 1-9999 in UTC"),
    ("<ISOTime>2017-08-17T12:41:06.47Z</ISOTime>",
     "<ISOTime>0001-01-01T00:00:00+05:00</ISOTime>", "WhereWhen ISOTime '0001-01-01"),
    ("<Date>2017-08-17T12:41:43</Date>", "<Date>0001-01-01T00:30:00+01:00</Date>",
     "Who/Date '0001-01-01T00:30:00+01:00' is outside the years 1-9999"),
])
def test_times_beyond_datetime_in_utc_are_invalid(old: str, new: str, words: str) -> None:
    """Valid ISO 8601 whose conversion to UTC once raised OverflowError."""
    with pytest.raises(InvalidValue) as info:
        parse_voevent(_edit(GBM_GND, old, new)).isotime()
    assert words in str(info.value)
