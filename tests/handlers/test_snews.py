"""Supernova neutrino alerts: SNEWS VOEvents, SNEWS 2.0 JSON and Super-K JSON."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from astropy.time import Time

from mma.errors import InvalidValue, MissingField
from mma.handlers import snews
from tests.conftest import CORPUS

VOEVENTS = sorted((CORPUS / "voevent/snews").glob("*.xml"))
SNEWS2 = sorted((CORPUS / "gcn-json/gcn-schema-unmerged/snews2").glob("*.json"))
SUPERK = sorted((CORPUS / "gcn-json/gcn-schema/superk").glob("*.json"))


def _utc(text: str) -> datetime:
    return Time(text.rstrip("Z"), format="isot", scale="utc").to_datetime(timezone=UTC)


def test_corpus_is_present() -> None:
    assert (len(VOEVENTS), len(SNEWS2), len(SUPERK)) == (2, 3, 2)


@pytest.mark.parametrize("path", VOEVENTS, ids=lambda p: p.name)
def test_snews_voevents_are_time_only(path: Path) -> None:
    raw = path.read_bytes()
    root = ET.fromstring(raw)
    params = {p.get("name"): p.get("value") for p in root.iter("Param")}
    assert snews.sniff(raw)
    notice = snews.parse(raw, topic="gcn.classic.voevent.SNEWS")
    assert notice.event_id == f"SNEWS-{params['TrigID']}"
    assert notice.messenger == "neutrino" and notice.instrument == "SNEWS"
    assert notice.event_class == "neutrino.sn_burst"
    assert notice.event_time == _utc(root.findtext(".//ISOTime") or "")
    assert notice.issued_time == _utc(root.findtext("Who/Date") or "")
    assert float(root.findtext(".//Error2Radius") or 0) == 360.0
    assert notice.region is None and "all_sky" in notice.flags
    is_test = root.get("role") == "test" or params["Test"] == "true"
    assert notice.test is is_test


@pytest.mark.parametrize("path", SNEWS2 + SUPERK, ids=lambda p: p.name)
def test_json_alerts(path: Path) -> None:
    raw = path.read_bytes()
    doc = json.loads(raw)
    assert snews.sniff(raw)
    notice = snews.parse(raw, topic="")
    prefix = "SuperK" if doc["mission"] == "Super-Kamiokande" else "SNEWS"
    assert notice.messenger == "neutrino" and notice.event_class == "neutrino.sn_burst"
    assert notice.event_id == f"{prefix}-{doc['id'].replace(' ', '_')}"
    assert notice.event_time == _utc(doc["trigger_time"])
    assert notice.issued_time == _utc(doc["alert_datetime"])
    assert notice.test is (doc["alert_tense"] == "test")
    region = notice.region
    if "ra" in doc:  # Super-K: the stated containment, not 0.9
        assert region is not None and region.kind == "circle"
        assert region.radius_deg == doc["ra_dec_error"]
        assert region.containment == doc["containment_probability"] == 0.68
        assert notice.properties["luminosity_distance"] == doc["luminosity_distance"]
    elif "healpix_url" in doc:  # triangulated: a map and nothing else
        assert region is not None and region.kind == "skymap"
        assert region.skymap_url == doc["healpix_url"] and region.skymap is None
    else:
        assert region is None and "time_only" in notice.flags


def _superk(**changes: Any) -> bytes:
    doc = json.loads(SUPERK[0].read_bytes())
    doc.update(changes)
    return json.dumps(doc).encode()


def test_directional_snews_voevent_is_a_circle() -> None:
    raw = VOEVENTS[0].read_bytes().replace(b"<Error2Radius>360.0000", b"<Error2Radius>12.0")
    region = snews.parse(raw, topic="").region
    assert region is not None and region.radius_deg == 12.0


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (_superk(trigger_time=None), MissingField, "trigger_time"),
        (_superk(containment_probability=1.5), InvalidValue, "containment_probability"),
        (_superk(dec=95), InvalidValue, "dec 95"),
        (_superk(ra_dec_error=[0.5, 0.9, 3]), InvalidValue, "semi-minor"),
        (_superk(id=None), MissingField, "id"),
        (_superk(mission="KamLAND", **{"$schema": "https://gcn.nasa.gov/schema/x.json"}),
         InvalidValue, "not a SNEWS or Super-K"),
        (VOEVENTS[0].read_bytes().replace(b'value="1000194"', b'value="abc"'),
         InvalidValue, "TrigID"),
        (VOEVENTS[0].read_bytes().replace(b"2018-09-18T16:00:01.00Z", b"yesterday"),
         InvalidValue, "ISOTime"),
    ],
)
def test_broken_alerts(raw: bytes, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        snews.parse(raw, topic="")
