"""AMPEL LSSTReport handler against an independent fastavro read of the corpus file."""

from __future__ import annotations

import io
import math
from datetime import datetime

import fastavro
import pytest
from astropy.cosmology import Planck18
from astropy.time import Time

from mma.errors import BadMessage, MalformedMessage
from mma.handlers import ampel, rubin
from mma.models import Alert
from tests.conftest import CORPUS

FILE = CORPUS / "alerts/brokers/ampel_lsst_report.avro"
RUBIN_FILE = CORPUS / "alerts/rubin/avro/lsst_v7_1_hsc_cosmos_10alerts.avro"


def _record() -> dict:
    with FILE.open("rb") as f:
        record = next(iter(fastavro.reader(f)))
    assert isinstance(record, dict)
    return record


def _first(alert: Alert) -> datetime:
    assert alert.first_detection is not None
    return alert.first_detection.replace(tzinfo=None)


def test_ampel_report_latest_detection() -> None:
    raw = FILE.read_bytes()
    record = _record()
    points = record["photometry"]
    dets = [p for p in points
            if p["source"] == "LSST_DP" or p["flux"] / p["fluxerr"] >= 5]
    latest = max(dets, key=lambda p: p["time"])
    assert ampel.sniff(raw) and not rubin.sniff(raw)
    alert = ampel.parse(raw, topic="ampel.lsst")
    assert (alert.broker, alert.survey) == ("AMPEL", "LSST")
    assert alert.alert_id == str(latest["id"])
    assert alert.object_id == str(record["object"]["id"])
    assert (alert.ra_deg, alert.dec_deg) == (record["object"]["ra"], record["object"]["dec"])
    expected = Time(latest["time"], format="jd", scale="tai").utc.datetime
    assert abs((alert.time.replace(tzinfo=None) - expected).total_seconds()) < 1e-3
    first = Time(min(p["time"] for p in dets), format="jd", scale="tai").utc.datetime
    assert abs((_first(alert) - first).total_seconds()) < 1e-3
    assert alert.band == latest["band"].removeprefix("lsst")
    assert alert.magnitude == pytest.approx(-2.5 * math.log10(latest["flux"]) + latest["zp"])
    z = record["host"][0]["redshift"]
    assert alert.distance_mpc == pytest.approx(Planck18.luminosity_distance(z).value)
    assert alert.distance_mpc is not None and 2500 < alert.distance_mpc < 2700  # z = 0.452
    q = alert.quality
    assert q["n_detections"] == len(dets) and q["n_points"] == len(points)
    assert q["isNegative"] is False and q["ampel_state"] == record["state"]
    assert q["ampel_host_redshift"] == z
    probs = record["classification"][0]["models"][0]["probabilities"]
    assert q["ampel_classification"]["ParsnipRiseDecline/sn+2ulens+dwarfs"] == probs


@pytest.mark.parametrize("cut", [0.3, 0.5, 0.9])
def test_truncated_report_is_bad_message(cut: float) -> None:
    raw = FILE.read_bytes()
    with pytest.raises(BadMessage):
        ampel.parse(raw[: int(len(raw) * cut)], topic="")


def test_garbled_report_is_bad_message() -> None:
    raw = bytearray(FILE.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\xff" * 64
    with pytest.raises(BadMessage):
        ampel.parse(bytes(raw), topic="")


def test_rubin_container_is_not_ampel() -> None:
    raw = RUBIN_FILE.read_bytes()
    assert not ampel.sniff(raw)
    with pytest.raises(MalformedMessage, match="LSSTReport"):
        ampel.parse(next(iter(rubin.split(raw))), topic="")


def _report(record: dict) -> bytes:
    with FILE.open("rb") as f:
        schema = fastavro.reader(f).writer_schema
    out = io.BytesIO()
    fastavro.writer(out, schema, [record])
    return out.getvalue()


def _tai_jd(jd: float) -> float:
    return float(Time(jd, format="jd", scale="tai").unix)  # Unix seconds of the UTC instant


def test_ampel_history_from_photometry() -> None:
    record = _record()
    points = record["photometry"]
    latest = max(points, key=lambda p: p["time"])
    times = sorted({p["time"] for p in points if p["flux"] > 0 and p["fluxerr"] > 0
                    and p["flux"] / p["fluxerr"] >= 5 and p["time"] < latest["time"]})
    low = [p for p in points if p["flux"] / p["fluxerr"] < 5]
    assert times and low  # the report holds both kinds
    alert = ampel.parse(FILE.read_bytes(), topic="")
    assert alert.history_source == "ampel.photometry"
    assert [t.timestamp() for t in alert.history] == pytest.approx(
        [_tai_jd(t) for t in times], abs=1e-3)
    assert alert.history[-1] < alert.time


def test_ampel_history_exclusions_and_hostile_values() -> None:
    record = _record()
    base = max(record["photometry"], key=lambda p: p["time"])
    now = base["time"]
    record["photometry"] = [
        base,
        dict(base, id=2, time=now - 1, flux=500.0, fluxerr=100.0),           # kept
        dict(base, id=3, time=now - 2, flux=-900.0, fluxerr=100.0),          # negative
        dict(base, id=4, time=now - 3, flux=400.0, fluxerr=100.0, source="LSST_DP"),  # 4 sigma
        dict(base, id=5, time=now - 4, flux=float("nan"), fluxerr=100.0),    # NaN flux
        dict(base, id=6, time=float("nan"), flux=900.0, fluxerr=100.0),      # NaN time
        dict(base, id=7, time=1e12, flux=900.0, fluxerr=100.0),              # absurd time
    ]
    alert = ampel.parse(_report(record), topic="")
    assert alert.alert_id == str(base["id"])
    assert [t.timestamp() for t in alert.history] == pytest.approx([_tai_jd(now - 1)], abs=1e-3)
    record["photometry"] = [base]
    alert = ampel.parse(_report(record), topic="")
    assert alert.history == () and alert.history_source == "ampel.photometry"
