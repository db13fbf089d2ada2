"""Swift BAT-GUANO (and proposed BAT/XRT/UVOT position) JSON: corpus, maps, retraction, caps."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from astropy.time import Time

from mma.errors import HostileMessage, InvalidValue, MissingField
from mma.formats import gcn_json
from mma.handlers import swift_guano
from tests.conftest import CORPUS

GUANO = CORPUS / "gcn-json/gcn-schema/swift/bat"
FIXTURES = CORPUS / "gcn-json/gwcelery-fixtures"
FILES = [
    *sorted(GUANO.glob("*.json")),
    *sorted((CORPUS / "gcn-json/gcn-schema-unmerged/swift").rglob("*.json")),
    *sorted(FIXTURES.glob("kafka_alert_swift*.json")),
]
TOPIC = "gcn.notices.swift.bat.guano"


def _utc(text: str) -> datetime:
    return Time(text.rstrip("Z"), format="isot", scale="utc").to_datetime(timezone=UTC)


def _read(path: Path) -> tuple[bytes, dict[str, Any]]:
    raw = path.read_bytes()
    return raw, json.loads(raw)


def test_corpus_is_present() -> None:
    assert len(FILES) == 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_corpus_notice_parses(path: Path) -> None:
    raw, doc = _read(path)
    assert swift_guano.sniff(raw)
    notice = swift_guano.parse(raw, topic=TOPIC)
    trigger = doc["id"][0] if isinstance(doc["id"], list) else doc["id"]
    assert notice.event_id == f"Swift-{trigger}" and notice.messenger == "grb"
    assert notice.event_class == "grb"  # XRT and UVOT positions refine the BAT burst
    assert notice.notice_type == doc["alert_type"]
    time_key = "trigger_time" if "trigger_time" in doc else "observation_start"
    assert abs(notice.event_time - _utc(doc[time_key])).total_seconds() < 1e-3
    if "alert_datetime" in doc:
        assert abs(notice.issued_time - _utc(doc["alert_datetime"])).total_seconds() < 1e-3
    assert notice.retraction is (doc["alert_type"] == "retraction")
    if notice.retraction or "ra" not in doc:
        assert notice.region is None
        return
    region = notice.region
    assert region is not None
    if "healpix_file" in doc and "healpix_file_unusable" not in notice.flags:
        assert region.kind == "skymap" and region.skymap == base64.b64decode(doc["healpix_file"])
    else:
        radius = doc.get("ra_dec_error") or doc["ra_uncertainty"][0]
        assert region.kind == "circle" and region.radius_deg == radius
        assert (region.ra_deg, region.dec_deg) == (doc["ra"], doc["dec"])
        assert region.containment == doc.get("containment_probability", 0.9)


def test_guano_sequence_initial_update_retraction() -> None:
    initial = swift_guano.parse(_read(GUANO / "Guano.example.json")[0], topic=TOPIC)
    update = swift_guano.parse(_read(GUANO / "guano.loc_arc_min.example.json")[0], topic=TOPIC)
    gone = swift_guano.parse(_read(GUANO / "Guano.Retraction.example.json")[0], topic=TOPIC)
    assert initial.event_id == update.event_id == gone.event_id == "Swift-694215995"
    assert initial.region is None and "no_position" in initial.flags
    assert update.region is not None and update.region.radius_deg == 0.5
    assert "statistical_error_only" not in update.flags  # systematic_included: true
    assert gone.retraction and gone.region is None
    assert initial.instrument == "Swift-BAT-GUANO"


def test_embedded_map_fixture() -> None:
    raw, doc = _read(FIXTURES / "kafka_alert_swift_wskymap.json")
    notice = swift_guano.parse(raw, topic=TOPIC)
    assert notice.region is not None and notice.region.kind == "skymap"
    assert notice.region.skymap is not None and notice.region.skymap.startswith(b"SIMPLE  =")
    # The circle of the same notice is kept on record beside the map.
    assert notice.properties["localization"]["shape"] == {"radius_deg": doc["ra_uncertainty"][0]}


def test_schema_example_placeholder_map_is_flagged_not_fatal() -> None:
    raw, doc = _read(GUANO / "guano.loc_map.example.json")
    assert doc["healpix_file"] == "hhhh..."
    notice = swift_guano.parse(raw, topic=TOPIC)
    assert notice.region is None and "healpix_file_unusable" in notice.flags
    assert "base64" in notice.properties["localization"]["healpix_file_error"]


def test_uvot_without_trigger_time_does_not_revise_the_event_time() -> None:
    uvot = CORPUS / "gcn-json/gcn-schema-unmerged/swift/uvot/position.initial.example.json"
    raw, doc = _read(uvot)
    notice = swift_guano.parse(raw, topic="")
    assert "trigger_time" not in doc
    assert {"no_event_time", "no_issued_time"} <= set(notice.flags)
    assert notice.instrument == "Swift-UVOT"


def _guano(**changes: Any) -> bytes:
    doc = _read(GUANO / "guano.loc_arc_min.example.json")[1]
    for key, value in changes.items():
        if value is ...:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


def test_classification_not_grb_is_flagged() -> None:
    notice = swift_guano.parse(_guano(classification={"GRB": 0.1, "SGR": 0.9}), topic=TOPIC)
    assert "classification_not_grb" in notice.flags


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (_guano(trigger_time=...), MissingField, "trigger_time"),
        (_guano(id=["sw-1"]), InvalidValue, "Swift trigger number"),
        (_guano(ra_dec_error=[0.5, 0.9, 10]), InvalidValue, "semi-minor"),
        (_guano(containment_probability=1.5), InvalidValue, "containment_probability"),
        (_guano(systematic_included="yes"), InvalidValue, "systematic_included"),
        (_guano(dec=95), InvalidValue, "dec 95"),
        (_guano(healpix_file=42), InvalidValue, "healpix_file"),
        (_guano(classification={"GRB": "certain"}), InvalidValue, "classification"),
        (_guano(alert_type="withdrawn"), InvalidValue, "alert_type"),
        (_guano(**{"$schema": "https://gcn.nasa.gov/schema/main/gcn/notices/swift/bat/x.json"}),
         InvalidValue, "not a Swift"),
    ],
)
def test_broken_notices(raw: bytes, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        swift_guano.parse(raw, topic=TOPIC)


def test_non_fits_inline_map_is_flagged() -> None:
    gif = base64.b64encode(b"GIF89a" + b"\x00" * 100).decode()
    notice = swift_guano.parse(_guano(healpix_file=gif), topic=TOPIC)
    assert "healpix_file_unusable" in notice.flags
    assert notice.region is not None and notice.region.kind == "circle"  # the circle remains
    assert "FITS" in notice.properties["localization"]["healpix_file_error"]


def _explode(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("decoded although it should have been refused first")


def test_100_mb_healpix_file_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    head = _guano()[:-1]  # drop the closing brace
    raw = head + b', "healpix_file": "' + b"A" * 100_000_000 + b'"}'
    monkeypatch.setattr(gcn_json.binascii, "a2b_base64", _explode)
    with monkeypatch.context() as m:
        m.setattr(gcn_json.json, "loads", _explode)  # refused on size, before any JSON work
        with pytest.raises(HostileMessage, match="above the cap"):
            swift_guano.parse(raw, topic=TOPIC)
    monkeypatch.setattr(swift_guano, "MAX_MESSAGE_BYTES", 2**28)  # the map cap still holds
    with pytest.raises(HostileMessage, match="healpix_file would decode"):
        swift_guano.parse(raw, topic=TOPIC)
