"""LVK igwn.gwalert notices: every corpus file, checked against an independent read."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from astropy.io import fits
from astropy.time import Time

from mma.epochs import check_item
from mma.errors import InvalidValue
from mma.handlers import lvk
from tests.conftest import CORPUS

GWALERT = CORPUS / "gcn-json" / "igwn-gwalert"
FILES = sorted(GWALERT.rglob("*.json"))


def _read(name: str) -> tuple[bytes, dict[str, Any]]:
    raw = (GWALERT / name).read_bytes()
    return raw, json.loads(raw)


def _utc(text: str) -> datetime:
    # astropy's ISOT parser, not datetime.fromisoformat as in the handler.
    return Time(text.rstrip("Z"), format="isot", scale="utc").to_datetime(timezone=UTC)


def test_corpus_is_present() -> None:
    assert len(FILES) >= 30


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_corpus_notice_parses(path: Path) -> None:
    raw = path.read_bytes()
    doc = json.loads(raw)
    assert lvk.sniff(raw)
    notice = lvk.parse(raw, topic="igwn.gwalert")
    assert notice.event_id == doc["superevent_id"]
    assert notice.notice_type == doc["alert_type"]
    assert notice.messenger == "gw" and notice.instrument == "LVK"
    assert notice.issued_time == _utc(doc["time_created"])
    assert notice.issued_time.utcoffset() is not None
    assert notice.properties["alert_type"] == doc["alert_type"]
    assert notice.properties["urls"] == doc["urls"]
    assert notice.test is doc["superevent_id"].startswith("M")
    event = doc["event"]
    if event is None:
        assert notice.retraction and notice.region is None
        assert notice.event_class is None  # no event, no group: not stated
        return
    burst = event["group"].lower() == "burst"  # MSBURST spells it "burst"
    assert notice.event_class == ("gw.burst" if burst else "gw.cbc")
    assert abs(notice.event_time - _utc(event["time"])).total_seconds() < 1e-6
    assert notice.region is not None and notice.region.kind == "skymap"
    assert notice.region.skymap == base64.b64decode(event["skymap"])
    assert notice.properties["far"] == event["far"]
    for key in (
        "group",
        "pipeline",
        "search",
        "instruments",
        "classification",
        "properties",
        "significant",
    ):
        assert notice.properties[key] == event.get(key)  # MSBURST has no search
    assert ("low_significance" in notice.flags) is (event.get("significant") is False)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("S230528ay-preliminary.json", "gw.burst"),  # real O4 Burst-group (oLIB) event
        ("O4-2024-01/S240112e-preliminary-1.json", "gw.burst"),  # cWB BBH search: Burst group
        ("MSBURST-initial.json", "gw.burst"),  # group "burst" in lower case
        ("S230518h-initial.json", "gw.cbc"),
        ("O4-2024-01/S240114aj-preliminary-1.json", "gw.cbc"),
        ("MS181101ab-earlywarning.json", "gw.cbc"),
        ("MS181101ab-retraction.json", None),
    ],
)
def test_event_class_from_group(name: str, expected: str | None) -> None:
    notice = lvk.parse(_read(name)[0], topic="igwn.gwalert")
    assert notice.event_class == expected


def test_skymap_bytes_are_a_multiorder_fits_map() -> None:
    raw, _ = _read("S230518h-initial.json")
    notice = lvk.parse(raw, topic="igwn.gwalert")
    assert notice.region is not None and notice.region.skymap is not None
    with fits.open(BytesIO(notice.region.skymap)) as hdus:
        names = hdus[1].columns.names
    assert names[:2] == ["UNIQ", "PROBDENSITY"]  # multi-order, not flattened
    assert {"DISTMU", "DISTSIGMA", "DISTNORM"} <= set(names)


@pytest.mark.parametrize("name", ["MS181101ab-retraction.json", "MS230425k-retraction.json"])
def test_mock_retraction(name: str) -> None:
    raw, doc = _read(name)
    notice = lvk.parse(raw, topic="igwn.gwalert")
    assert doc["event"] is None
    assert notice.retraction and notice.test
    assert notice.region is None
    assert notice.notice_type == "RETRACTION"
    # No event, no event time: the placeholder is the issue time, and it is flagged.
    assert notice.event_time == notice.issued_time
    assert set(notice.flags) == {"mock", "no_event_time"}


def test_mock_life_cycle_ordered_by_issue_time() -> None:
    notices = [
        lvk.parse(_read(f"MS230425k-{kind}.json")[0], topic="igwn.gwalert")
        for kind in ("preliminary", "initial", "retraction")
    ]
    assert {n.event_id for n in notices} == {"MS230425k"}
    assert [n.notice_type for n in notices] == ["PRELIMINARY", "INITIAL", "RETRACTION"]
    assert notices[0].issued_time < notices[1].issued_time
    assert notices[1].issued_time > notices[2].issued_time  # the files are not in time order
    assert [n.retraction for n in notices] == [False, False, True]
    assert all(n.test and "mock" in n.flags for n in notices)


def test_early_warning_is_flagged() -> None:
    raw, doc = _read("MS181101ab-earlywarning.json")
    notice = lvk.parse(raw, topic="igwn.gwalert")
    assert doc["alert_type"] == "EARLY_WARNING"
    assert "early_warning" in notice.flags and "mock" in notice.flags
    assert notice.properties["significant"] is None  # the 2018 sample predates the field


def test_real_event_update_supersedes_initial() -> None:
    initial = lvk.parse(_read("S230518h-initial.json")[0], topic="igwn.gwalert")
    update = lvk.parse(_read("S230518h-update.json")[0], topic="igwn.gwalert")
    assert not initial.test and not update.test
    assert initial.flags == () and update.flags == ()
    assert update.event_id == initial.event_id == "S230518h"
    assert update.event_time == initial.event_time
    assert update.issued_time > initial.issued_time
    assert update.notice_type == "UPDATE"
    assert update.properties["properties"]["HasNS"] == pytest.approx(0.9956840182648402)
    assert update.properties["far"] == pytest.approx(3.218261352069347e-10)


def test_external_coincidence_kept_without_combined_map() -> None:
    raw, doc = _read("MSBURST-initial.json")
    notice = lvk.parse(raw, topic="igwn.gwalert")
    assert "external_coinc" in notice.flags
    coinc = notice.properties["external_coinc"]
    assert "combined_skymap" not in coinc
    assert coinc["observatory"] == doc["external_coinc"]["observatory"]
    assert notice.properties["has_combined_skymap"] is True


def test_non_utc_offset_is_converted() -> None:
    _, doc = _read("MS181101ab-retraction.json")
    doc["time_created"] = "2018-11-02T00:36:23+01:00"
    notice = lvk.parse(json.dumps(doc).encode(), topic="igwn.gwalert")
    assert notice.issued_time == datetime(2018, 11, 1, 23, 36, 23, tzinfo=UTC)
    assert notice.issued_time.tzinfo is UTC


def test_sniff_rejects_other_formats() -> None:
    assert not lvk.sniff(b"")
    assert not lvk.sniff(b'["superevent_id"]')
    assert not lvk.sniff(b'{"alert_type": "PRELIMINARY"}')
    assert not lvk.sniff(b'{"note": "the key \\"superevent_id\\": is quoted"}')
    for other in (CORPUS / "gcn-json" / "gcn-schema" / "icecube").rglob("*.json"):
        assert not lvk.sniff(other.read_bytes()), other
    assert not lvk.sniff(
        (CORPUS / "alerts/ztf/avro/ZTF18abudxnw_2695378462115010012.avro").read_bytes()
    )


def _edited(**changes: Any) -> bytes:
    """S230518h-initial with ``event.<key>`` (or a top-level key) replaced."""
    doc = json.loads((GWALERT / "S230518h-initial.json").read_bytes())
    for key, value in changes.items():
        if key.startswith("event_"):
            doc["event"][key.removeprefix("event_")] = value
        else:
            doc[key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(("changes", "words"), [
    ({"event_classification": {"BNS": 1e300}}, "event.classification.BNS 1e+300 is not a "
                                               "probability in [0, 1]"),
    ({"event_classification": {"BNS": "high"}}, "event.classification.BNS is str"),
    ({"event_properties": {"HasNS": -0.1}}, "event.properties.HasNS -0.1 is not a probability"),
    ({"event_properties": {"HasNS": None}}, "event.properties.HasNS is NoneType"),
    ({"event_duration": -1.0}, "event.duration -1.0 is negative"),
    ({"event_central_frequency": "x"}, "event.central_frequency is str"),
    ({"time_created": "9999-12-31T23:59:59-05:00"},
     "time_created '9999-12-31T23:59:59-05:00' is outside the years 1-9999 in UTC"),
    ({"event_time": "0001-01-01T00:00:00+01:00"}, "event.time '0001-01-01T00:00:00+01:00'"),
])
def test_numbers_and_times_out_of_range_are_refused_naming_the_field(
        changes: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidValue) as info:
        lvk.parse(_edited(**changes), topic="igwn.gwalert")
    assert words in str(info.value)


def test_far_of_401_digits_is_refused_naming_event_far() -> None:
    raw = _edited(event_far=0.5).replace(b'"far": 0.5', b'"far": ' + b"7" * 401)
    with pytest.raises(InvalidValue, match=r"^event\.far is a 401-digit integer: not a finite "
                                           r"number in range"):
        lvk.parse(raw, topic="igwn.gwalert")


def test_first_light_is_o1_and_gw170817_era_notices_pass() -> None:
    assert lvk.FIRST_LIGHT.isoformat() == "2015-09-12T00:00:00+00:00"
    for path in FILES:
        notice = lvk.parse(path.read_bytes(), topic="")
        check_item(notice, lvk)
