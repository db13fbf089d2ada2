"""Legacy LVC/LVK VOEvents: every corpus file, checked against an independent read."""

from __future__ import annotations

from pathlib import Path

import pytest

from mma.errors import BadMessage, Ignored, InvalidValue, MissingField
from mma.handlers import lvk_voevent
from tests.conftest import CORPUS
from tests.handlers.test_voevent_format import read_xml

VOEVENT = CORPUS / "voevent"
FILES = sorted((VOEVENT / "gw").glob("*.xml"))
OTHERS = sorted(p for p in VOEVENT.rglob("*.xml") if p not in FILES)
GW170817 = VOEVENT / "gw/G298048-1-Initial_GW170817.xml"
GW190814 = VOEVENT / "gw/S190814bv-5-Update_GW190814.xml"


def _edit(path: Path, old: str, new: str) -> bytes:
    text = path.read_text()
    assert old in text, old
    return text.replace(old, new, 1).encode()


def test_corpus_is_present() -> None:
    assert len(FILES) == 3


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_corpus_notice_parses(path: Path) -> None:
    raw = path.read_bytes()
    ref = read_xml(path)
    params = ref["params"]
    assert lvk_voevent.sniff(raw)
    notice = lvk_voevent.parse(raw, topic="gcn.classic.voevent.LVC_INITIAL")
    assert notice.event_id == params["GraceID"]
    assert notice.notice_type == params["AlertType"].upper()
    assert notice.messenger == "gw" and notice.instrument == "LVK"
    assert notice.event_time == ref["isotime"] and notice.issued_time == ref["date"]
    assert notice.properties["far"] == float(params["FAR"])
    assert notice.properties["instruments"] == params["Instruments"].split(",")
    assert not notice.retraction and not notice.test
    assert params["Group"] == "CBC" and notice.event_class == "gw.cbc"
    urls = [params[k] for k in ("skymap_fits", "skymap_fits_basic") if k in params]
    if urls[0].startswith("https://"):
        assert notice.region is not None and notice.region.kind == "skymap"
        assert notice.region.skymap_url == urls[0] and notice.region.skymap is None
    else:  # the skyportal fixtures carry relative paths
        assert notice.region is None and "no_skymap_url" in notice.flags


def test_gw170817_initial() -> None:
    notice = lvk_voevent.parse(GW170817.read_bytes(), topic="")
    assert notice.event_id == "G298048"
    assert notice.event_time.isoformat() == "2017-08-17T12:41:04.445710+00:00"
    assert notice.region is not None and notice.region.skymap_url == (
        "https://gracedb.ligo.org/apibasic/events/G298048/files/bayestar.fits.gz")
    assert notice.properties["properties"] == {"ProbHasNS": 1.0, "ProbHasRemnant": 1.0}


def test_classification_of_gw190814() -> None:
    notice = lvk_voevent.parse(GW190814.read_bytes(), topic="")
    assert notice.properties["classification"]["NSBH"] == pytest.approx(0.99789)
    assert notice.properties["group"] == "CBC"


def test_burst_group_is_gw_burst() -> None:
    raw = _edit(GW170817, 'name="Group" dataType="string" value="CBC"',
                'name="Group" dataType="string" value="Burst"')
    notice = lvk_voevent.parse(raw, topic="")
    assert notice.event_class == "gw.burst" and notice.properties["group"] == "Burst"


def test_retraction() -> None:
    raw = _edit(GW170817, 'name="AlertType" dataType="string" value="Initial"',
                'name="AlertType" dataType="string" value="Retraction"')
    notice = lvk_voevent.parse(raw, topic="")
    assert notice.retraction and notice.region is None and notice.notice_type == "RETRACTION"
    assert notice.event_class == "gw.cbc"  # this edited packet still states its Group
    bare = lvk_voevent.parse(raw.replace(b'name="Group"', b'name="NoGroup"'), topic="")
    assert bare.retraction and bare.event_class is None  # not stated
    flagged = lvk_voevent.parse(_edit(GW170817, 'value="false" ucd="meta.code"',
                                      'value="true" ucd="meta.code"'), topic="")
    assert flagged.retraction


def test_retraction_without_time_keeps_no_event_time() -> None:
    raw = _edit(GW170817, 'name="AlertType" dataType="string" value="Initial"',
                'name="AlertType" dataType="string" value="Retraction"')
    raw = raw.replace(b"<ISOTime>2017-08-17T12:41:04.445710Z</ISOTime>", b"")
    notice = lvk_voevent.parse(raw, topic="")
    assert notice.event_time == notice.issued_time and "no_event_time" in notice.flags


@pytest.mark.parametrize(
    ("old", "new", "flag"),
    [
        ('role="observation"', 'role="test"', None),
        ('name="HardwareInj" dataType="int" value="0"',
         'name="HardwareInj" dataType="int" value="1"', "hardware_injection"),
        ('value="G298048"', 'value="MS181101ab"', "mock"),
    ],
)
def test_test_traffic(old: str, new: str, flag: str | None) -> None:
    notice = lvk_voevent.parse(_edit(GW170817, old, new), topic="")
    assert notice.test
    assert flag is None or flag in notice.flags


def test_utility_and_counterpart_are_ignored() -> None:
    with pytest.raises(Ignored, match="utility"):
        lvk_voevent.parse(_edit(GW170817, 'role="observation"', 'role="utility"'), topic="")
    with pytest.raises(Ignored, match="Counterpart"):
        lvk_voevent.parse(_edit(GW170817, 'value="Initial" ucd', 'value="Counterpart" ucd'),
                          topic="")


@pytest.mark.parametrize("path", OTHERS, ids=lambda p: p.name)
def test_sniff_refuses_other_voevents(path: Path) -> None:
    assert not lvk_voevent.sniff(path.read_bytes())


@pytest.mark.parametrize(
    ("old", "new", "error", "words"),
    [
        ('value="G298048"', 'value="G29 8048"', InvalidValue, "GraceID"),
        ('name="GraceID"', 'name="GraceIDx"', MissingField, "GraceID"),
        ('value="3.47773444765e-12"', 'value="-1e-9"', InvalidValue, "negative"),
        ('value="3.47773444765e-12"', 'value="NaN"', InvalidValue, "not finite"),
        ("<ISOTime>2017-08-17T12:41:04.445710Z</ISOTime>", "", MissingField, "ISOTime"),
        ("ivo://gwnet/", "ivo://elsewhere/", InvalidValue, "not an LVK"),
    ],
)
def test_bad_values(old: str, new: str, error: type[BadMessage], words: str) -> None:
    with pytest.raises(error) as info:
        lvk_voevent.parse(_edit(GW170817, old, new), topic="")
    assert words in str(info.value)
