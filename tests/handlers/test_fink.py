"""Fink parquet night files: all 849 alerts of 2024-01-15, checked against the derived CSV."""

from __future__ import annotations

import csv
import io
import json
import math
import tracemalloc
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.time import Time

from mma.errors import HostileMessage, MalformedMessage, MissingField
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
        # Of the history only the detections, and of each the four fields it needs.
        assert all(set(e) == {"jd", "candid", "isdiffpos", "sigmapsf"}
                   and e["candid"] is not None for e in doc["prv_candidates"])
        assert fink.sniff(payload)
    assert max(len(p) for p in payloads.values()) < fink.MAX_PAYLOAD_BYTES


SIGMA_5 = 1.0857 / 5  # mag: S/N >= 5


def test_history_of_all_849_alerts(alerts: dict[str, Alert]) -> None:
    """Every alert's history against the raw prv_candidates column, read whole by pyarrow."""
    table = pa.concat_tables(pq.read_table(p, columns=["candid", "candidate", "prv_candidates"])
                             for p in PARTS)
    lengths = []
    for row in table.to_pylist():
        alert = alerts[str(row["candid"])]
        now = row["candidate"]["jd"]
        jds = sorted({e["jd"] for e in row["prv_candidates"]
                      if e["candid"] is not None and e["isdiffpos"] in ("t", "1")
                      and e["sigmapsf"] <= SIGMA_5 and e["jd"] < now})[-256:]
        assert alert.history_source == "ztf.prv_candidates"
        assert len(alert.history) == len(jds)
        got = [t.timestamp() for t in alert.history]
        want = [Time(jd, format="jd", scale="utc").unix for jd in jds]
        assert got == pytest.approx(want, abs=1e-3)
        assert all(t.tzinfo is not None for t in alert.history)
        lengths.append(len(alert.history))
    assert len(lengths) == 849
    assert 0 in lengths and max(lengths) == 256  # no earlier detection; and the cap
    raw_positive = sum(e["isdiffpos"] in ("t", "1") and e["candid"] is not None
                       for row in table.column("prv_candidates").to_pylist() for e in row)
    assert 0 < sum(lengths) < raw_positive  # negatives, 3-sigma and the cap left out


def test_history_absent_null_or_empty() -> None:
    table = _table(3)
    no_column = fink.parse(_parquet(table.slice(0, 1).drop_columns(["prv_candidates"])), topic="")
    assert no_column.history == () and no_column.history_source is None
    prv = table["prv_candidates"]
    empty = pa.array([[], None, prv[2].as_py()], type=prv.type)
    rows = list(fink.split(_parquet(table.set_column(
        table.schema.get_field_index("prv_candidates"), "prv_candidates", empty))))
    alerts = [fink.parse(r, topic="") for r in rows]
    assert alerts[0].history == () and alerts[0].history_source == "ztf.prv_candidates"
    assert alerts[1].history == () and alerts[1].history_source is None
    assert alerts[2].history_source == "ztf.prv_candidates"


def test_history_excludes_negative_low_snr_limits_and_hostile_values(
        payloads: dict[str, bytes]) -> None:
    doc: dict[str, Any] = json.loads(next(iter(payloads.values())))
    jd = doc["candidate"]["jd"]
    good = {"jd": jd - 1, "candid": 1, "isdiffpos": "t", "sigmapsf": 0.1}
    doc["prv_candidates"] = [
        good,
        dict(good, jd=jd - 2, isdiffpos="f"), dict(good, jd=jd - 3, sigmapsf=0.3),
        dict(good, jd=jd - 4, candid=None), dict(good, jd=jd - 5, sigmapsf=None),
        dict(good, jd=1e300), dict(good, jd=-1.0), dict(good, jd="2460000.5"),
        dict(good, jd=None), dict(good, isdiffpos="yes"), dict(good, sigmapsf="0.1"),
        dict(good, candid=doc["candid"]), dict(good, jd=jd + 1), ["not", "a", "record"],
    ]
    alert = fink.parse(json.dumps(doc).encode(), topic="")
    assert [t.timestamp() for t in alert.history] == pytest.approx(
        [Time(jd - 1, format="jd", scale="utc").unix], abs=1e-3)
    doc["prv_candidates"] = {"jd": jd - 1}  # not an array: not told, the alert stands
    alert = fink.parse(json.dumps(doc).encode(), topic="")
    assert alert.history == () and alert.history_source is None


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


def test_parquet_without_fink_columns_is_refused_by_name() -> None:
    # Any parquet is claimed (Fink's tables are the only parquet read), so that a
    # table without Fink's columns is refused saying so, not "no handler".
    plain = _table(1).select(["objectId", "candid", "candidate"])  # a ZTF table, no Fink
    assert fink.sniff(_parquet(plain))
    with pytest.raises(MissingField, match="lacks Fink's column cdsxmatch"):
        list(fink.split(_parquet(plain)))
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


# --- bounds: streamed in batches, rows and histories capped ------------------------

def test_split_streams_batch_by_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.hostile import alerts

    raw = alerts.fink_rows(5_000)  # 20 batches

    def whole(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the whole table was read")

    monkeypatch.setattr(pq.ParquetFile, "read", whole)
    monkeypatch.setattr(pq, "read_table", whole)
    payloads = fink.split(raw)
    tracemalloc.start()
    try:
        first = next(payloads)  # yielded before the rest of the file is decoded
        after_first = tracemalloc.get_traced_memory()[1]
        count = 1 + sum(1 for _ in payloads)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert json.loads(first)["objectId"] == "ZTF24aaaaaaa" and count == 5_000
    assert after_first < 2 * 2**20 and peak < 4 * 2**20  # a batch, whatever the rows


def test_row_cap_from_the_footer(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = PARTS[0].read_bytes()  # 107 rows
    monkeypatch.setattr(fink, "MAX_FILE_ROWS", 100)
    with pytest.raises(HostileMessage, match="declares 107 rows, above the cap of 100"):
        next(fink.split(raw))
    with pytest.raises(HostileMessage, match="above the cap of 100"):
        fink.parse(raw, topic="")


def test_history_cap_per_row_in_the_batch() -> None:
    # Two rows, 10,500 entries and none: under the footer's per-row-group bound
    # (2 x 10,001 values), over the cap for the first row, caught on its batch.
    from tests.hostile import alerts

    one = pq.read_table(io.BytesIO(alerts.fink_history(fink.MAX_HISTORY_ENTRIES + 500)))
    empty = one.set_column(one.schema.get_field_index("prv_candidates"), "prv_candidates",
                           pa.array([[]], one.schema.field("prv_candidates").type))
    raw = _parquet(pa.concat_tables([one, empty]))
    with pytest.raises(HostileMessage, match=r"row 0: prv_candidates holds 10500 entries"):
        list(fink.split(raw))
    doc = {"publisher": "Fink", "objectId": "ZTF24aaaaaaa", "candid": 1, "candidate": {},
           "prv_candidates": [{}] * (fink.MAX_HISTORY_ENTRIES + 1)}
    with pytest.raises(HostileMessage, match="prv_candidates holds 10001 entries"):
        fink.parse(json.dumps(doc).encode(), topic="")


def test_corrupt_and_truncated_files_are_named() -> None:
    from tests.hostile import alerts

    raw = _parquet(_table(2))
    assert fink.sniff(raw[:-50]) and fink.sniff(alerts.corrupt_footer(raw))
    with pytest.raises(MalformedMessage, match="PAR1 magic missing at the end"):
        list(fink.split(raw[:-50]))
    with pytest.raises(MalformedMessage, match="corrupt parquet footer"):
        fink.parse(alerts.corrupt_footer(raw), topic="")
