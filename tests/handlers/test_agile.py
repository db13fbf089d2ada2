"""AGILE VOEvents: the corpus file (an MCAL alert), checked against an independent read."""

from __future__ import annotations

from pathlib import Path

import pytest

from mma.errors import Ignored, InvalidValue
from mma.handlers import agile
from tests.conftest import CORPUS
from tests.handlers.test_voevent_format import read_xml

VOEVENT = CORPUS / "voevent"
MCAL = VOEVENT / "agile/agile_grb_gcn.xml"
OTHERS = sorted(p for p in VOEVENT.rglob("*.xml") if p != MCAL)


def _edit(old: str, new: str) -> bytes:
    text = MCAL.read_text()
    assert old in text, old
    return text.replace(old, new, 1).encode()


def test_mcal_alert_is_time_only() -> None:
    raw = MCAL.read_bytes()
    ref = read_xml(MCAL)
    assert agile.sniff(raw)
    notice = agile.parse(raw, topic="gcn.classic.voevent.AGILE_MCAL_ALERT")
    assert ref["params"]["TrigID"] == "0" and ref["params"]["Packet_Type"] == "105"
    assert notice.event_id == "AGILE-MCAL-" + ref["isotime"].strftime("%Y%m%dT%H%M%S.%f")[:-4]
    assert notice.notice_type == "A_Alert"
    assert notice.properties["packet_type_name"] == "MCAL_ALERT"
    assert notice.event_time == ref["isotime"] and notice.issued_time == ref["date"]
    assert notice.region is None and notice.flags == ("no_position",)
    assert notice.messenger == "grb" and not notice.test
    assert notice.event_class == "grb"


def test_grb_position_notice() -> None:
    raw = _edit('name="Packet_Type"  value="105"', 'name="Packet_Type"  value="102"')
    raw = raw.replace(b'name="TrigID"       value="0"', b'name="TrigID"       value="4321"')
    raw = raw.replace(b"<Error2Radius>0.0000</Error2Radius>", b"<Error2Radius>0.2</Error2Radius>")
    notice = agile.parse(raw, topic="")
    assert notice.event_id == "AGILE-4321"
    assert notice.region is not None and notice.region.radius_deg == 0.2
    assert notice.region.containment == 0.9 and notice.properties["containment_assumed"]


def test_error_table_and_test_packets() -> None:
    assert set(agile.ERRORS) == {100, 101, 102, 108, 109}
    raw = _edit('name="Packet_Type"  value="105"', 'name="Packet_Type"  value="109"')
    raw = raw.replace(b'name="TrigID"       value="0"', b'name="TrigID"       value="7"')
    raw = raw.replace(b"<Error2Radius>0.0000</Error2Radius>", b"<Error2Radius>1</Error2Radius>")
    assert agile.parse(raw, topic="").test


@pytest.mark.parametrize(
    ("old", "new", "error", "words"),
    [
        ('name="Packet_Type"  value="105"', 'name="Packet_Type"  value="107"', Ignored,
         "POINTDIR"),
        ('role="observation"', 'role="utility"', Ignored, "utility"),
        ('name="Packet_Type"  value="105"', 'name="Packet_Type"  value="42"', InvalidValue,
         "not a known"),
        ('name="Packet_Type"  value="105"', 'name="Packet_Type"  value="101"', InvalidValue,
         "TrigID 0"),
        ("ivo://nasa.gsfc.gcn/AGILE#", "ivo://example.org/AGILE#", InvalidValue, "not an AGILE"),
    ],
)
def test_refused_or_ignored(old: str, new: str, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        agile.parse(_edit(old, new), topic="")


@pytest.mark.parametrize("path", OTHERS, ids=lambda p: p.name)
def test_sniff_refuses_other_voevents(path: Path) -> None:
    assert not agile.sniff(path.read_bytes())
