"""Fink parquet night files: all 849 alerts of 2024-01-15, checked against the derived CSV."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.time import Time

from mma.errors import MalformedMessage, MissingField
from mma.handlers import fink, lvk, ztf
from mma.models import Alert
from tests.conftest import CORPUS

NIGHT = CORPUS / "alerts" / "ztf" / "fink-2024-01-15"
PARTS = sorted(NIGHT.glob("*.parquet"))
CSV = CORPUS / "alerts" / "ztf" / "fink-2024-01-15_candidates.csv"


@pytest.fixture(scope="module")
def payloads() -> dict[str, bytes]:
    """Every split payload of the night, keyed by candid."""
    out: dict[str, bytes] = {}
    for part in PARTS:
        for payload in fink.split(part.read_bytes()):
            out[str(json.loads(payload)["candid"])] = payload
    return out


@pytest.fixture(scope="module")
def alerts(payloads: dict[str, bytes]) -> dict[str, Alert]:
    return {candid: fink.parse(p, topic="") for candid, p in payloads.items()}


def _table(rows: int = 1) -> pa.Table:
    return pq.read_table(PARTS[0]).slice(0, rows)


def _parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def test_all_csv_rows_parse_and_agree(alerts: dict[str, Alert]) -> None:
    with CSV.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(alerts) == 849
    for row in rows:
        alert = alerts[row["candid"]]
        assert alert.object_id == row["objectId"]
        assert alert.alert_id == row["candid"]
        assert alert.ra_deg == float(row["ra"]) and alert.dec_deg == float(row["dec"])
        jd = Time(float(row["jd"]), format="jd", scale="utc")
        assert abs(alert.time.timestamp() - jd.unix) < 1e-3
        assert alert.band == {"1": "g", "2": "r", "3": "i"}[row["fid"]]
        assert alert.magnitude == float(row["magpsf"])
        assert alert.magnitude_err == float(row["sigmapsf"])
        q = alert.quality
        assert q["isdiffpos"] is {"t": True, "f": False}[row["isdiffpos"]]
        assert q["rb"] == float(row["rb"]) and q["drb"] == float(row["drb"])
        assert q["ndethist"] == int(row["ndethist"])
        for key in ("ssdistnr", "sgscore1", "distpsnr1"):
            value = float(row[key])
            assert q[key] == (None if value == -999.0 else value), key
        assert q["jdstarthist"] == float(row["jdstarthist"])
        assert q["fink_cdsxmatch"] == row["fink_cdsxmatch"]
        assert alert.survey == "ZTF" and alert.broker == "Fink"


def test_host_distance_from_mangrove(alerts: dict[str, Alert]) -> None:
    table = pa.concat_tables(pq.read_table(p, columns=["candid", "mangrove"]) for p in PARTS)
    expected = {}
    for row in table.to_pylist():
        lum = dict(row["mangrove"]).get("lum_dist")
        if lum not in (None, "None"):
            expected[str(row["candid"])] = float(lum)
    assert len(expected) == 8
    got = {c: a.distance_mpc for c, a in alerts.items() if a.distance_mpc is not None}
    assert got == expected


def test_payloads_are_lean_json(payloads: dict[str, bytes]) -> None:
    for payload in payloads.values():
        doc = json.loads(payload)
        assert list(doc)[:2] == ["publisher", "objectId"]
        assert "prv_candidates" not in doc
        assert fink.sniff(payload)
    assert max(len(p) for p in payloads.values()) < 8192


def test_binary_cutout_columns_are_dropped() -> None:
    table = _table(2)
    table = table.append_column("cutoutScience", pa.array([b"\x1f\x8bFITS", b"\x00" * 64]))
    raw = _parquet(table)
    assert fink.sniff(raw)
    payloads = list(fink.split(raw))
    assert len(payloads) == 2
    assert all(b"cutout" not in p for p in payloads)
    assert fink.parse(payloads[1], topic="").alert_id == str(table["candid"][1].as_py())


def test_one_row_parquet_parses_many_rows_do_not() -> None:
    one = _parquet(_table(1))
    assert fink.parse(one, topic="").object_id == _table(1)["objectId"][0].as_py()
    with pytest.raises(MalformedMessage, match="holds 3 rows"):
        fink.parse(_parquet(_table(3)), topic="")


def test_sniff_needs_fink_columns() -> None:
    plain = _table(1).select(["objectId", "candid", "candidate"])  # a ZTF table, no Fink
    assert not fink.sniff(_parquet(plain))
    with pytest.raises(MissingField, match="candidate"):
        list(fink.split(_parquet(_table(1).drop_columns(["candidate"]))))
    assert not fink.sniff(
        (CORPUS / "alerts/ztf/avro/ZTF18abudxnw_2695378462115010012.avro").read_bytes()
    )
    assert not fink.sniff(
        (CORPUS / "gcn-json/igwn-gwalert/MS181101ab-retraction.json").read_bytes()
    )
    assert not fink.sniff((CORPUS / "alerts/ztf/json/ZTF20abbiixp_last_alert.json").read_bytes())


def test_shares_the_ztf_mapping(payloads: dict[str, bytes]) -> None:
    # Same candidate through both handlers' code paths gives the same fields.
    doc: dict[str, Any] = json.loads(next(iter(payloads.values())))
    direct = ztf.alert_from_candidate(
        doc["candidate"], object_id=doc["objectId"], candid=doc["candid"]
    )
    via_fink = fink.parse(json.dumps(doc).encode(), topic="")
    assert (direct.ra_deg, direct.dec_deg, direct.time, direct.band, direct.magnitude) == (
        via_fink.ra_deg,
        via_fink.dec_deg,
        via_fink.time,
        via_fink.band,
        via_fink.magnitude,
    )
    assert not lvk.sniff(json.dumps(doc).encode())
    assert all(math.isfinite(v) for v in (direct.ra_deg, direct.dec_deg))
