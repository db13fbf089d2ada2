"""ZTF Avro alert packets: every corpus packet, checked against fastavro and astropy."""

from __future__ import annotations

import io
from datetime import UTC
from pathlib import Path
from typing import Any

import fastavro
import pytest
from astropy.time import Time

from mma.errors import InvalidValue, MalformedMessage, MissingField
from mma.formats import avro
from mma.handlers import ztf
from tests.conftest import CORPUS

AVRO = CORPUS / "alerts" / "ztf" / "avro"
PACKETS = sorted(p for p in AVRO.glob("*.avro") if not p.name.startswith("prototype"))
PROTOTYPE = AVRO / "prototype_87704463155000.avro"


def _fastavro(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    # fastavro directly, not mma.formats.avro: an independent read of the packet.
    with path.open("rb") as fh:
        reader: Any = fastavro.reader(fh)
        return reader.writer_schema, list(reader)


def _container(schema: dict[str, Any], records: list[dict[str, Any]]) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, schema, records)
    return out.getvalue()


def test_corpus_is_present() -> None:
    assert len(PACKETS) == 9 and PROTOTYPE.exists()


@pytest.mark.parametrize("path", PACKETS, ids=lambda p: p.name)
def test_every_packet_parses(path: Path) -> None:
    raw = path.read_bytes()
    _, (packet,) = _fastavro(path)
    cand = packet["candidate"]
    assert ztf.sniff(raw)
    alert = ztf.parse(raw, topic="ztf_20240115_programid1")
    assert alert.alert_id == str(packet["candid"]) == str(cand["candid"])
    assert alert.object_id == packet["objectId"]
    assert alert.survey == "ZTF" and alert.broker is None
    assert (alert.ra_deg, alert.dec_deg) == (cand["ra"], cand["dec"])
    expected = Time(cand["jd"], format="jd", scale="utc").to_datetime(timezone=UTC)
    assert abs((alert.time - expected).total_seconds()) < 1e-3
    first = Time(cand["jdstarthist"], format="jd", scale="utc").to_datetime(timezone=UTC)
    assert alert.first_detection is not None
    assert abs((alert.first_detection - first).total_seconds()) < 1e-3
    assert alert.band == {1: "g", 2: "r", 3: "i"}[cand["fid"]]
    assert (alert.magnitude, alert.magnitude_err) == (cand["magpsf"], cand["sigmapsf"])
    q = alert.quality
    assert q["isdiffpos"] is (cand["isdiffpos"] in ("t", "1"))
    assert q["rb"] == cand["rb"] and q["drb"] == cand.get("drb")
    for key in ("ssdistnr", "ssmagnr", "sgscore1", "distpsnr1"):
        assert q[key] == (None if cand[key] == -999 else cand[key]), key
    for key in ("ndethist", "programid", "ncovhist"):
        assert q[key] == cand[key]
    assert q["ssnamenr"] is None  # 'null' in every corpus packet
    assert q["schemavsn"] == packet.get("schemavsn")


def test_prototype_packet_is_rejected_with_reason() -> None:
    # The 2016 pre-survey prototype (alertId, negative candid, PTF-era data) is
    # recognised as ZTF Avro but is not a survey alert: refused, not guessed at.
    raw = PROTOTYPE.read_bytes()
    assert ztf.sniff(raw)
    with pytest.raises(MissingField, match=r"objectId.*prototype"):
        ztf.parse(raw, topic="")


def test_split_many_record_container() -> None:
    schema, (packet,) = _fastavro(PACKETS[-1])
    records = [dict(packet, objectId=f"ZTF24aaaaa{i:03d}"[:12]) for i in range(3)]
    raw = _container(schema, records)  # what a nightly dump of several packets looks like
    assert ztf.sniff(raw)
    with pytest.raises(MalformedMessage, match="holds 3 records"):
        ztf.parse(raw, topic="")
    parts = list(ztf.split(raw))
    assert len(parts) == 3
    assert all(p.startswith(avro.AVRO_MAGIC) for p in parts)
    alerts = [ztf.parse(p, topic="") for p in parts]
    assert [a.object_id for a in alerts] == [r["objectId"] for r in records]
    assert {a.alert_id for a in alerts} == {str(packet["candid"])}


def test_other_avro_is_not_ztf() -> None:
    rubin = (CORPUS / "alerts/rubin/schema/v7_1/fakeAlert.avro").read_bytes()
    assert not ztf.sniff(rubin)
    with pytest.raises(MalformedMessage, match="not a ZTF alert"):
        ztf.parse(rubin, topic="")
    assert not ztf.sniff((CORPUS / "gcn-json/igwn-gwalert/MS181101ab-retraction.json").read_bytes())
    assert not ztf.sniff(b"Obj\x01")


@pytest.mark.parametrize("jd", [2458493.7607639, 2460324.7135301, 2451545.0, 2457754.5])
def test_jd_conversion_matches_astropy(jd: float) -> None:
    expected = Time(jd, format="jd", scale="utc").to_datetime(timezone=UTC)
    got = ztf.jd_to_datetime(jd)
    assert got.tzinfo is UTC
    assert abs((got - expected).total_seconds()) < 1e-4


@pytest.mark.parametrize(
    ("value", "expected"),
    [("t", True), ("1", True), ("f", False), ("0", False), (1, True), (0, False), (None, None)],
)
def test_isdiffpos_normalised(value: Any, expected: bool | None) -> None:
    assert ztf.isdiffpos_to_bool(value) is expected


def test_isdiffpos_unknown_value() -> None:
    with pytest.raises(InvalidValue, match="isdiffpos"):
        ztf.isdiffpos_to_bool("maybe")


def test_sentinels_become_none() -> None:
    _, (packet,) = _fastavro(PACKETS[0])
    cand = dict(packet["candidate"], sgscore1=-999.0, distpsnr1=-999.0, jdstarthist=-999.0)
    alert = ztf.alert_from_candidate(cand, object_id="ZTF17aaacxxf", candid=packet["candid"])
    assert alert.quality["sgscore1"] is None and alert.quality["distpsnr1"] is None
    assert alert.first_detection is None
