"""Fermi LAT JSON: flare notices are Ignored with a reason; GRB positions become Notices."""

from __future__ import annotations

import json

import pytest

from mma.errors import Ignored, InvalidValue, MissingField
from mma.handlers import fermi_lat
from tests.conftest import CORPUS

FLARE = CORPUS / "gcn-json/gcn-schema/fermi/lat/flare.example.json"


def test_flare_is_ignored_with_its_source() -> None:
    raw = FLARE.read_bytes()
    doc = json.loads(raw)
    assert fermi_lat.sniff(raw)
    with pytest.raises(Ignored, match=f"{doc['event_name']}.*flux ratio {doc['flux_ratio']}"):
        fermi_lat.parse(raw, topic="gcn.notices.fermi.lat.flare")


def test_flare_with_broken_values_is_still_a_bad_message() -> None:
    doc = json.loads(FLARE.read_bytes())
    doc["TS"] = "high"
    with pytest.raises(InvalidValue, match="TS"):
        fermi_lat.parse(json.dumps(doc).encode(), topic="")


def _grb() -> dict[str, object]:
    return {"$schema": "https://gcn.nasa.gov/schema/main/gcn/notices/fermi/lat/grb.schema.json",
            "mission": "Fermi", "instrument": "LAT", "id": ["726773850"],
            "alert_type": "initial", "alert_tense": "current",
            "trigger_time": "2024-01-12T17:37:25.12Z", "alert_datetime": "2024-01-12T17:40:00Z",
            "ra": 270.6, "dec": 24.5, "ra_dec_error": 0.4, "event_name": ["GRB 240112A"]}


def test_grb_position_becomes_a_notice() -> None:
    notice = fermi_lat.parse(json.dumps(_grb()).encode(), topic="")
    assert notice.event_id == "FermiLAT-726773850" and notice.messenger == "grb"
    assert notice.event_class == "grb"
    assert notice.aliases == ("GRB240112A",)
    assert notice.region is not None and notice.region.radius_deg == 0.4


def test_grb_without_trigger_time() -> None:
    doc = _grb()
    del doc["trigger_time"]
    with pytest.raises(MissingField, match="trigger_time"):
        fermi_lat.parse(json.dumps(doc).encode(), topic="")


def test_foreign_schema() -> None:
    raw = (CORPUS / "gcn-json/gcn-schema/fermi/gbm/trigger.alert.example.json").read_bytes()
    assert not fermi_lat.sniff(raw)
    with pytest.raises(InvalidValue, match="not a Fermi LAT"):
        fermi_lat.parse(raw, topic="")
