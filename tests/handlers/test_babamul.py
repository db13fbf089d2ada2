"""Babamul handler against an independent fastavro read of the corpus file."""

from __future__ import annotations

import fastavro
import pytest

from mma.errors import MalformedMessage
from mma.handlers import babamul, ztf
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
