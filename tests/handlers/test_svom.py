"""SVOM ECLAIRs/GRM JSON triggers: schema examples and gwcelery's wakeup fixture."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mma.errors import InvalidValue, MissingField
from mma.handlers import svom
from tests.conftest import CORPUS

FILES = [*sorted((CORPUS / "gcn-json/gcn-schema/svom").rglob("*.json")),
         CORPUS / "gcn-json/gwcelery-fixtures/kafka_alert_svom_wakeup.json"]


def _naive_utc(text: str) -> datetime:
    # SVOM writes times without 'Z'; strptime, not the handler's fromisoformat.
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)


def test_corpus_is_present() -> None:
    assert len(FILES) == 6


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_corpus_notice_parses(path: Path) -> None:
    raw = path.read_bytes()
    doc = json.loads(raw)
    assert svom.sniff(raw)
    notice = svom.parse(raw, topic="gcn.notices.svom")
    assert notice.event_id == f"SVOM-{doc['id'][0]}"
    assert notice.instrument == f"SVOM-{doc['instrument']}" and notice.messenger == "grb"
    assert notice.event_class == "grb"  # ECLAIRs and GRM alike
    assert notice.notice_type == doc["alert_type"]
    assert notice.event_time == _naive_utc(doc["trigger_time"])
    assert notice.issued_time == _naive_utc(doc["alert_datetime"] + ".0")
    assert "naive_time_assumed_utc" in notice.flags
    assert doc["alert_tense"] == "test" and notice.test and "alert_tense_test" in notice.flags
    region = notice.region
    assert region is not None and region.kind == "circle"
    assert (region.ra_deg, region.dec_deg) == (doc["ra"], doc["dec"])
    radius = doc["ra_dec_error"] if "ra_dec_error" in doc else doc["ra_uncertainty"][0]
    assert region.radius_deg == radius
    assert region.containment == 0.9 and "containment_default_0.9" in notice.flags
    assert ("legacy_uncertainty_fields" in notice.flags) is ("ra_uncertainty" in doc)
    assert notice.aliases == ()  # 'M1' is not a burst name
    assert ("slew_rejected" in notice.flags) is (doc.get("slew_status") == "rejected")


def test_eclairs_and_grm_share_the_burst() -> None:
    ids = {svom.parse(p.read_bytes(), topic="").event_id for p in FILES}
    assert ids == {"SVOM-sb24022203"}


def _edit(**changes: Any) -> bytes:
    doc = json.loads(FILES[0].read_bytes())
    for key, value in changes.items():
        if value is ...:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


def test_grb_names_are_aliases() -> None:
    notice = svom.parse(_edit(event_name=["GRB 240222A", "M1"]), topic="")
    assert notice.aliases == ("GRB240222A",)


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (_edit(instrument="MXT"), InvalidValue, "instrument"),
        (_edit(instrument=...), MissingField, "instrument"),
        (_edit(trigger_time=...), MissingField, "trigger_time"),
        (_edit(alert_tense="rehearsal"), InvalidValue, "alert_tense"),
        (_edit(ra=400), InvalidValue, "ra 400"),
        (_edit(ra_dec_error=-0.1), InvalidValue, "ra_dec_error"),
        (_edit(id=[]), InvalidValue, "id"),
        (_edit(uncertainty_shape="ellipse", ra_uncertainty=[1.0], ra_dec_error=...),
         InvalidValue, "uncertainty_shape"),
    ],
)
def test_broken_notices(raw: bytes, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        svom.parse(raw, topic="")
