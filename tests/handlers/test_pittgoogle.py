"""Pitt-Google light-curve handler against an independent json read of the corpus file."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from astropy.time import Time

from mma.errors import BadMessage, InvalidValue
from mma.handlers import antares, fink, pittgoogle, ztf
from mma.models import Alert
from tests.conftest import CORPUS

FILE = CORPUS / "alerts/brokers/pittgoogle_rows_ZTF19acfixfe.json"


def _first(alert: Alert) -> datetime:
    assert alert.first_detection is not None
    return alert.first_detection.replace(tzinfo=None)


def test_pittgoogle_latest_detection() -> None:
    raw = FILE.read_bytes()
    doc = json.loads(raw)
    rows = doc["rows"]
    latest = max(rows, key=lambda r: r["jd"])
    assert pittgoogle.sniff(raw) and not antares.sniff(raw) and not fink.sniff(raw)
    alert = pittgoogle.parse(raw, topic="pittgoogle.ztf")
    assert (alert.broker, alert.survey) == ("Pitt-Google", "ZTF")
    assert alert.object_id == doc["objectId"]
    assert (alert.ra_deg, alert.dec_deg) == (latest["ra"], latest["decl"])
    expected = Time(latest["jd"], format="jd", scale="utc").datetime
    assert abs((alert.time.replace(tzinfo=None) - expected).total_seconds()) < 1e-3
    first = Time(min(r["jd"] for r in rows), format="jd", scale="utc").datetime
    assert abs((_first(alert) - first).total_seconds()) < 1e-3
    assert alert.band == ztf.BANDS[latest["fid"]]
    assert (alert.magnitude, alert.magnitude_err) == (latest["magpsf"], latest["sigmapsf"])
    assert alert.alert_id == f"pittgoogle:{doc['objectId']}:{alert.time.isoformat()}"
    assert pittgoogle.parse(raw, topic="").alert_id == alert.alert_id  # stable
    assert alert.quality["n_detections"] == len(rows) and alert.quality["candid"] is None


def test_candid_and_vetting_fields_are_used_when_present() -> None:
    doc = json.loads(FILE.read_bytes())
    latest = max(doc["rows"], key=lambda r: r["jd"])
    latest.update(candid=2950000000015010001, rb=0.9, drb=0.99, isdiffpos="t", sgscore1=0.1)
    alert = pittgoogle.parse(json.dumps(doc).encode(), topic="")
    assert alert.alert_id == "2950000000015010001"
    assert (alert.quality["rb"], alert.quality["drb"]) == (0.9, 0.99)
    assert alert.quality["isdiffpos"] is True and alert.quality["sgscore1"] == 0.1


@pytest.mark.parametrize("cut", [0.3, 0.5, 0.99])
def test_truncated_rows_are_bad_message(cut: float) -> None:
    raw = FILE.read_bytes()
    with pytest.raises(BadMessage):
        pittgoogle.parse(raw[: int(len(raw) * cut)], topic="")


def test_bad_position() -> None:
    doc = json.loads(FILE.read_bytes())
    max(doc["rows"], key=lambda r: r["jd"])["decl"] = 123.0
    with pytest.raises(InvalidValue):
        pittgoogle.parse(json.dumps(doc).encode(), topic="")


def test_pittgoogle_rows_without_isdiffpos_tell_no_history() -> None:
    # The corpus rows carry magnitudes only: a fading and a brightening look alike.
    doc = json.loads(FILE.read_bytes())
    assert not any("isdiffpos" in r for r in doc["rows"])
    alert = pittgoogle.parse(FILE.read_bytes(), topic="")
    assert alert.history == () and alert.history_source is None


def test_pittgoogle_history_when_rows_carry_isdiffpos() -> None:
    doc = json.loads(FILE.read_bytes())
    rows = doc["rows"]
    latest = max(rows, key=lambda r: r["jd"])
    for i, row in enumerate(rows):
        row["isdiffpos"] = "f" if i % 3 == 0 else "t"  # some negative detections
    rows.append(dict(latest, jd=latest["jd"] - 0.5, isdiffpos="t", sigmapsf=float("nan")))
    rows.append(dict(latest, jd=-1.0, isdiffpos="t"))
    jds = sorted({r["jd"] for r in rows if r["isdiffpos"] == "t"
                  and r["sigmapsf"] <= 1.0857 / 5 and 0 < r["jd"] < latest["jd"]})
    assert 0 < len(jds) < len(rows) - 1
    raw = json.dumps(doc).encode().replace(b"NaN", b"null")  # strict JSON: no NaN
    alert = pittgoogle.parse(raw, topic="")
    assert alert.history_source == "pittgoogle.rows"
    want = [Time(jd, format="jd", scale="utc").unix for jd in jds]
    assert [t.timestamp() for t in alert.history] == pytest.approx(want, abs=1e-3)
    assert alert.time.timestamp() == pytest.approx(
        Time(latest["jd"], format="jd", scale="utc").unix, abs=1e-3)
