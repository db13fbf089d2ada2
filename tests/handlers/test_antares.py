"""ANTARES locus handler against an independent json read of the corpus file."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

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


def _tai(mjd: float) -> float:
    return float(Time(mjd, format="mjd", scale="tai").unix)


def test_antares_lsst_history() -> None:
    doc = json.loads(FILE.read_bytes())
    rows = doc["alerts"]
    now = max(r[P + "midpointMjdTai"] for r in rows)
    mjds = sorted({r[P + "midpointMjdTai"] for r in rows
                   if r[P + "psfFlux"] > 0 and r[P + "psfFlux"] / r[P + "psfFluxErr"] >= 5
                   and r[P + "midpointMjdTai"] < now})
    assert mjds
    alert = antares.parse(FILE.read_bytes(), topic="")
    assert alert.history_source == "antares.alerts"
    assert [t.timestamp() for t in alert.history] == pytest.approx(
        [_tai(m) for m in mjds], abs=1e-3)


def test_antares_lsst_history_exclusions_and_hostile_values() -> None:
    doc = json.loads(FILE.read_bytes())
    rows = doc["alerts"]
    latest = max(rows, key=lambda r: r[P + "midpointMjdTai"])
    now = latest[P + "midpointMjdTai"]

    def row(mjd: Any, flux: Any, err: Any = 100.0, **more: Any) -> dict[str, Any]:
        return dict(latest, **{P + "midpointMjdTai": mjd, P + "psfFlux": flux,
                               P + "psfFluxErr": err}, **{P + k: v for k, v in more.items()})

    doc["alerts"] = [
        latest,
        row(now - 1, 500.0),                          # kept
        row(now - 2, -900.0),                         # negative flux
        row(now - 3, 900.0, isNegative=True),         # the pipeline says negative
        row(now - 4, 499.0),                          # S/N < 5
        row(now - 5, None), row(now - 6, 900.0, None), row(now - 7, "900", 100.0),
        row(1e12, 900.0), row(-5.0, 900.0), row("61000", 900.0),  # impossible epochs
    ]
    alert = antares.parse(json.dumps(doc).encode(), topic="")
    assert alert.time.timestamp() == pytest.approx(_tai(now), abs=1e-3)  # still the latest
    assert [t.timestamp() for t in alert.history] == pytest.approx([_tai(now - 1)], abs=1e-3)
    # Rows without the flux error cannot tell a 5-sigma detection: not told.
    doc["alerts"] = [latest, {k: v for k, v in row(now - 1, 900.0).items()
                              if k != P + "psfFluxErr"}]
    alert = antares.parse(json.dumps(doc).encode(), topic="")
    assert alert.history == () and alert.history_source is None
    # A locus of one detection: told, no earlier one.
    doc["alerts"] = [latest]
    alert = antares.parse(json.dumps(doc).encode(), topic="")
    assert alert.history == () and alert.history_source == "antares.alerts"


def test_antares_ztf_locus_history() -> None:
    jd = 2460300.5
    base = {"ztf_object_id": "ZTF23abcdefg", "ztf_ra": 10.0, "ztf_dec": 20.0, "ztf_fid": 2,
            "ztf_magpsf": 18.0, "ztf_sigmapsf": 0.1, "ztf_isdiffpos": "t"}
    alerts = [dict(base, ztf_jd=jd, ztf_candid=5),
              dict(base, ztf_jd=jd - 1, ztf_candid=4),                       # kept
              dict(base, ztf_jd=jd - 2, ztf_candid=3, ztf_isdiffpos="f"),    # negative
              dict(base, ztf_jd=jd - 3, ztf_candid=2, ztf_sigmapsf=0.3),     # S/N < 5
              dict(base, ztf_jd=jd - 4, ztf_candid=1, ztf_magpsf=None),      # upper limit
              dict(base, ztf_jd=1e300, ztf_candid=6)]                        # absurd jd
    doc = {"locus_id": "ANT2023abc", "ra": 10.0, "dec": 20.0, "alerts": alerts}
    alert = antares.parse(json.dumps(doc).encode(), topic="")
    assert alert.alert_id == "5" and alert.survey == "ZTF"
    assert alert.history_source == "antares.alerts"
    want = Time(jd - 1, format="jd", scale="utc").unix
    assert [t.timestamp() for t in alert.history] == pytest.approx([want], abs=1e-3)
