"""Babamul handler against an independent fastavro read of the corpus file."""

from __future__ import annotations

import io

import fastavro
import pytest
from astropy.time import Time

from mma.errors import MalformedMessage
from mma.handlers import babamul, ztf
from mma.models import Alert
from tests.conftest import CORPUS

FILE = CORPUS / "alerts/brokers/boom_babamul_ztf_alert_ZTF26aauybpk.avro"


def test_babamul_ztf_alert() -> None:
    raw = FILE.read_bytes()
    with FILE.open("rb") as f:
        record = next(iter(fastavro.reader(f)))
    assert isinstance(record, dict)
    cand = record["candidate"]
    assert babamul.sniff(raw) and not ztf.sniff(raw)
    alert = babamul.parse(raw, topic="babamul.ztf.lsst-match.hosted")
    assert (alert.alert_id, alert.object_id) == (str(record["candid"]), record["objectId"])
    assert (alert.survey, alert.broker) == ("ZTF", "Babamul")
    assert (alert.ra_deg, alert.dec_deg) == (cand["ra"], cand["dec"])
    assert alert.magnitude == cand["magpsf"] and alert.band == ztf.BANDS[cand["fid"]]
    assert alert.quality["isdiffpos"] is cand["isdiffpos"]
    assert alert.quality["rb"] == cand["rb"]
    lsst = record["survey_matches"]["lsst"]["objectId"]
    assert alert.quality["babamul_lsst_object_id"] == lsst
    assert alert.quality["babamul_stationary"] is record["properties"]["stationary"]


def test_ztf_container_is_not_babamul() -> None:
    raw = (CORPUS / "alerts/ztf/avro/ZTF18abudxnw_2695378462115010012.avro").read_bytes()
    assert not babamul.sniff(raw)
    with pytest.raises(MalformedMessage, match="BabamulZtfAlert"):
        babamul.parse(raw, topic="")


def _record() -> tuple[dict, dict]:
    with FILE.open("rb") as f:
        reader = fastavro.reader(f)
        schema, record = reader.writer_schema, next(iter(reader))
    assert isinstance(schema, dict) and isinstance(record, dict)
    return schema, record


def _parse(schema: dict, record: dict) -> Alert:
    out = io.BytesIO()
    fastavro.writer(out, schema, [record])
    return babamul.parse(out.getvalue(), topic="")


def _utc(jd: float) -> float:
    return float(Time(jd, format="jd", scale="utc").unix)


def test_babamul_history_from_prv_candidates() -> None:
    _, record = _record()
    now = record["candidate"]["jd"]
    prv = record["prv_candidates"]
    # BOOM's photometry: signed flux and its error, no isdiffpos/sigmapsf; the current
    # detection is in the array too.
    assert {"psfFlux", "psfFluxErr", "jd"} <= set(prv[0]) and "isdiffpos" not in prv[0]
    assert any(e["jd"] == now for e in prv)
    jds = sorted({e["jd"] for e in prv if e["psfFlux"] > 0
                  and e["psfFlux"] / e["psfFluxErr"] >= 5 and e["jd"] < now})
    assert 0 < len(jds) < len(prv)  # some below 5 sigma in the packet itself
    alert = babamul.parse(FILE.read_bytes(), topic="")
    assert alert.history_source == "babamul.prv_candidates"
    assert [t.timestamp() for t in alert.history] == pytest.approx(
        [_utc(jd) for jd in jds], abs=1e-3)
    # The matched LSST object's light curve is another survey's object: not history.
    lsst = {e["jd"] for e in record["survey_matches"]["lsst"]["prv_candidates"]}
    lsst_only = [_utc(jd) for jd in lsst - {e["jd"] for e in prv}]
    assert lsst_only
    assert not any(abs(t.timestamp() - u) < 1e-3 for t in alert.history for u in lsst_only)


def test_babamul_history_exclusions_and_hostile_values() -> None:
    schema, record = _record()
    now = record["candidate"]["jd"]
    base = record["prv_candidates"][0]
    record["prv_candidates"] = [
        dict(base, jd=now - 1, psfFlux=500.0, psfFluxErr=100.0),           # kept
        dict(base, jd=now - 2, psfFlux=-900.0, psfFluxErr=100.0),          # negative
        dict(base, jd=now - 3, psfFlux=499.0, psfFluxErr=100.0),           # S/N < 5
        dict(base, jd=now - 4, psfFlux=float("nan"), psfFluxErr=100.0),    # NaN flux
        dict(base, jd=now - 5, psfFlux=900.0, psfFluxErr=float("nan")),
        dict(base, jd=float("nan"), psfFlux=900.0, psfFluxErr=100.0),      # NaN jd
        dict(base, jd=1e300, psfFlux=900.0, psfFluxErr=100.0),             # absurd jd
        dict(base, jd=-3.0, psfFlux=900.0, psfFluxErr=100.0),
    ]
    alert = _parse(schema, record)
    assert [t.timestamp() for t in alert.history] == pytest.approx([_utc(now - 1)], abs=1e-3)
    assert all(t.tzinfo is not None for t in alert.history)
    record["prv_candidates"] = []
    alert = _parse(schema, record)
    assert alert.history == () and alert.history_source == "babamul.prv_candidates"
    del record["prv_candidates"]  # the schema requires it; a decoded dict may lack it
    alert = babamul.alert_from_record(record)
    assert alert.history == () and alert.history_source is None
