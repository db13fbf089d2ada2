"""Einstein Probe WXT alerts: every corpus file, checked against an independent read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from astropy.time import Time

from mma.errors import InvalidValue, MalformedMessage, MissingField
from mma.handlers import einstein_probe
from tests.conftest import CORPUS

FILES = [
    CORPUS / "gcn-json/gcn-schema/einstein_probe/wxt/alert.example.json",
    CORPUS / "gcn-json/gwcelery-fixtures/kafka_alert_einteinprobe.json",
    CORPUS / "gcn-json/other/EP240508a_wxt_alert.json",
]
TOPIC = "gcn.notices.einstein_probe.wxt.alert"


def _utc(text: str) -> datetime:
    return Time(text.rstrip("Z"), format="isot", scale="utc").to_datetime(timezone=UTC)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_corpus_alert_parses(path: Path) -> None:
    raw = path.read_bytes()
    doc = json.loads(raw)
    assert einstein_probe.sniff(raw)
    notice = einstein_probe.parse(raw, topic=TOPIC)
    assert notice.messenger == "xray" and notice.instrument == "EP-WXT"
    assert notice.event_class == "xray"
    assert abs(notice.event_time - _utc(doc["trigger_time"])).total_seconds() < 1e-3
    # No alert_datetime in any WXT notice: the issue time is the trigger time, flagged.
    assert "alert_datetime" not in doc
    assert notice.issued_time == notice.event_time and "no_issued_time" in notice.flags
    region = notice.region
    assert region is not None and region.kind == "circle"
    assert (region.ra_deg, region.dec_deg) == (doc["ra"], doc["dec"])
    assert region.radius_deg == doc["ra_dec_error"]
    assert "containment_probability" not in doc
    assert region.containment == 0.9 and "containment_default_0.9" in notice.flags
    if "id" in doc:
        assert notice.event_id == f"EP-{doc['id'][0]}"
    assert not notice.test and not notice.retraction


def test_alert_without_id_gets_a_time_based_id() -> None:
    raw = FILES[2].read_bytes()
    notice = einstein_probe.parse(raw, topic=TOPIC)
    assert notice.event_id == "EP-20240508T073801151"  # trigger 2024-05-08T07:38:01.151Z
    assert "no_trigger_id" in notice.flags
    assert einstein_probe.parse(raw, topic=TOPIC).event_id == notice.event_id  # stable


def test_ep_name_becomes_an_alias_and_tense_marks_tests() -> None:
    doc = json.loads(FILES[0].read_bytes())
    doc.update(event_name=["EP240301a", "some other name"], alert_tense="test")
    notice = einstein_probe.parse(json.dumps(doc).encode(), topic=TOPIC)
    assert notice.aliases == ("EP240301a",)
    assert notice.test and "alert_tense_test" in notice.flags


def _edit(**changes: Any) -> bytes:
    doc = json.loads(FILES[1].read_bytes())
    for key, value in changes.items():
        if value is ...:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (_edit(trigger_time=...), MissingField, "trigger_time"),
        (_edit(trigger_time="2024-13-01T00:00:00Z"), InvalidValue, "trigger_time"),
        (_edit(dec=95.0), InvalidValue, "dec 95"),
        (_edit(ra=-1.0), InvalidValue, "ra -1"),
        (_edit(dec=...), MissingField, "dec is missing"),
        (_edit(ra_dec_error=0), InvalidValue, "ra_dec_error"),
        (_edit(ra_dec_error="2 arcmin"), InvalidValue, "ra_dec_error"),
        (_edit(containment_probability=1.5), InvalidValue, "containment_probability"),
        (_edit(id=["../../etc/passwd"]), InvalidValue, "id"),
        (_edit(**{"$schema": "https://gcn.nasa.gov/schema/main/gcn/notices/chime/frb.schema.json"}),
         InvalidValue, "not an Einstein Probe"),
        (FILES[1].read_bytes().replace(b"345.134", b"NaN"), MalformedMessage, "NaN"),
    ],
)
def test_broken_alerts(raw: bytes, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        einstein_probe.parse(raw, topic=TOPIC)


def test_sniff_rejects_other_formats() -> None:
    assert not einstein_probe.sniff(b"")
    assert not einstein_probe.sniff((CORPUS / "gcn-json/gcn-schema/maxi/gsc.known.example.json")
                                    .read_bytes())
