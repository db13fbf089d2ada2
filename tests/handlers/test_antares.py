"""ANTARES locus handler against an independent json read of the corpus file."""

from __future__ import annotations

import json
import math
from datetime import datetime

import pytest
from astropy.time import Time

from mma.errors import BadMessage, MissingField
from mma.handlers import antares, pittgoogle
from mma.models import Alert
from tests.conftest import CORPUS

FILE = CORPUS / "alerts/brokers/antares_lsst_locus_ANT2019b5sdo.json"
P = "lsst_diaSource_"


def _first(alert: Alert) -> datetime:
    assert alert.first_detection is not None
    return alert.first_detection.replace(tzinfo=None)


def test_antares_lsst_locus_latest_detection() -> None:
    raw = FILE.read_bytes()
    doc = json.loads(raw)
    rows = doc["alerts"]
    latest = max(rows, key=lambda r: r[P + "midpointMjdTai"])
    assert antares.sniff(raw) and not pittgoogle.sniff(raw)
    alert = antares.parse(raw, topic="antares.lsst")
    assert (alert.broker, alert.survey) == ("ANTARES", "LSST")
    assert alert.object_id == str(latest[P + "diaObjectId"])
    assert alert.object_id == doc["properties"]["survey"]["lsst"]["dia_object_id"][0]
    assert (alert.ra_deg, alert.dec_deg) == (latest[P + "ra"], latest[P + "dec"])
    expected = Time(latest[P + "midpointMjdTai"], format="mjd", scale="tai").utc.datetime
    assert abs((alert.time.replace(tzinfo=None) - expected).total_seconds()) < 1e-3
    first = Time(min(r[P + "midpointMjdTai"] for r in rows), format="mjd", scale="tai")
    assert abs((_first(alert)
                - first.utc.datetime).total_seconds()) < 1e-3
    assert alert.band == latest[P + "band"]
    assert alert.magnitude == pytest.approx(-2.5 * math.log10(latest[P + "psfFlux"]) + 31.4)
    assert alert.alert_id == f"antares:{alert.object_id}:{alert.time.isoformat()}"
    assert antares.parse(raw, topic="").alert_id == alert.alert_id  # stable
    assert alert.quality["n_detections"] == len(rows)
    assert alert.quality["antares_locus_id"] == doc["locus_id"]
    assert alert.quality["isNegative"] is False
    assert alert.distance_mpc is None


def test_diasource_id_is_used_when_present() -> None:
    doc = json.loads(FILE.read_bytes())
    for i, row in enumerate(doc["alerts"]):
        row[P + "diaSourceId"] = 1000 + i
    alert = antares.parse(json.dumps(doc).encode(), topic="")
    assert alert.alert_id == "1002"


@pytest.mark.parametrize("cut", [0.3, 0.5, 0.99])
def test_truncated_locus_is_bad_message(cut: float) -> None:
    raw = FILE.read_bytes()
    with pytest.raises(BadMessage):
        antares.parse(raw[: int(len(raw) * cut)], topic="")


def test_locus_without_detections() -> None:
    doc = json.loads(FILE.read_bytes())
    for row in doc["alerts"]:
        del row[P + "midpointMjdTai"]
    with pytest.raises(MissingField, match="midpointMjdTai"):
        antares.parse(json.dumps(doc).encode(), topic="")
