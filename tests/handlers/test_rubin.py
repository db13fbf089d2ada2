"""Rubin handler: every Rubin file of the corpus, fast path == full decode, hostile frames."""

from __future__ import annotations

import io
import math
import struct
from datetime import UTC
from pathlib import Path
from typing import Any

import fastavro
import pytest
from astropy.time import Time

from mma.errors import BadMessage, InvalidValue, MalformedMessage, UnknownFormat
from mma.formats import rubin as schemas
from mma.formats import rubin_frames
from mma.handlers import rubin
from mma.models import Alert
from tests.conftest import CORPUS

RUBIN = CORPUS / "alerts/rubin"
CONTAINERS = sorted(RUBIN.glob("avro/*.avro")) + sorted(RUBIN.glob("schema/*/fakeAlert.avro"))
CONTAINERS = [p for p in CONTAINERS if not p.name.endswith(".confluent.avro")]
CONFLUENT = RUBIN / "avro/lsst_v9_0_7912941781254298.confluent.avro"
# The v7.1 sample packet has a Unix time (1480360995 s) in midpointMjdTai.
UNIX_TIME_SAMPLE = RUBIN / "schema/v7_1/fakeAlert.avro"


def _records(path: Path) -> Any:
    with path.open("rb") as f:
        reader = fastavro.reader(f)
        return reader.writer_schema, list(reader)


def _frame(record: dict[str, Any], schema_id: int) -> bytes:
    out = io.BytesIO()
    out.write(struct.pack(">bi", 0, schema_id))
    fastavro.schemaless_writer(out, schemas.load(schema_id).parsed, record)
    return out.getvalue()


def _tai(mjd: float) -> Any:
    return Time(mjd, format="mjd", scale="tai").utc.to_datetime(timezone=UTC)


def _check(alert: Alert, record: dict[str, Any]) -> None:
    src = record["diaSource"]
    assert alert.alert_id == str(src["diaSourceId"])
    assert alert.ra_deg == src["ra"]
    assert alert.dec_deg == src.get("dec", src.get("decl"))
    mjd = src.get("midpointMjdTai", src.get("midPointTai"))
    assert abs((alert.time - _tai(mjd)).total_seconds()) < 1e-3
    assert alert.band == src.get("band", src.get("filterName"))
    flux = src.get("psfFlux", src.get("psFlux"))
    if flux is not None and flux > 0:
        assert alert.magnitude == pytest.approx(-2.5 * math.log10(flux) + 31.4)
    else:
        assert alert.magnitude is None


@pytest.mark.parametrize("path", CONTAINERS, ids=lambda p: str(p.relative_to(RUBIN)))
def test_every_container_record_parses(path: Path) -> None:
    raw = path.read_bytes()
    assert rubin.sniff(raw)
    _, records = _records(path)
    parts = list(rubin.split(raw))
    assert len(parts) == len(records)
    for part, record in zip(parts, records, strict=True):
        if path == UNIX_TIME_SAMPLE:
            with pytest.raises(InvalidValue, match="1480360995"):
                rubin.parse(part, topic="")
            continue
        alert = rubin.parse(part, topic="")
        _check(alert, record)
        expected = "ELAsTiCC" if "elasticc" in path.name else "LSST"
        assert alert.survey == expected


# ELAsTiCC simulations have no Rubin schema id, so no Confluent frame to compare.
FRAMEABLE = [p for p in CONTAINERS if "elasticc" not in p.name]


@pytest.mark.parametrize("path", [*FRAMEABLE, CONFLUENT], ids=lambda p: p.name)
def test_fast_path_equals_full_decode(path: Path) -> None:
    """Leading-field decode + tail walk gives exactly the Alert of a full fastavro decode."""
    if path == CONFLUENT:
        frames = [path.read_bytes()]
    else:
        schema, records = _records(path)
        schema_id = schemas.schema_id_of_name(schema["name"])
        assert schema_id is not None
        frames = [_frame(r, schema_id) for r in records]
    for frame in frames:
        full = rubin_frames.decode_full(frame)
        version = rubin_frames.decode_fast(frame)[3]
        try:
            slow = rubin.alert_from_parts(full, full["diaSource"], full, version=version)
        except BadMessage as exc:
            with pytest.raises(type(exc)):
                rubin.parse(frame, topic="lsst-alerts-v11")
            continue
        fast = rubin.parse(frame, topic="lsst-alerts-v11")
        assert fast == slow


def test_real_lsstcam_alert() -> None:
    raw = CONFLUENT.read_bytes()
    assert raw[0] == 0 and struct.unpack(">i", raw[1:5])[0] == 900
    record = fastavro.schemaless_reader(io.BytesIO(raw[5:]), schemas.load(900).parsed, None)
    assert isinstance(record, dict)
    alert = rubin.parse(raw, topic="lsst-alerts-v11")
    _check(alert, record)
    assert alert.object_id == str(record["diaSource"]["diaObjectId"])
    assert alert.quality["reliability"] == record["diaSource"]["reliability"]
    assert alert.quality["isNegative"] is record["diaSource"]["isNegative"]
    assert alert.quality["ssObjectId"] is None  # 0 in the packet means none
    assert alert.quality["timeWithdrawnMjdTai"] is None  # NaN in the packet
    assert record["diaObject"]["nDiaSources"] == 1  # no history, no firstDiaSourceMjdTai
    assert alert.first_detection == alert.time


def test_first_detection_from_dia_object() -> None:
    _, records = _records(RUBIN / "schema/v11_0/fakeAlert.avro")
    alert = rubin.parse(_frame(records[0], 1100), topic="")
    first = records[0]["diaObject"]["firstDiaSourceMjdTai"]
    assert alert.first_detection is not None
    assert abs((alert.first_detection - _tai(first)).total_seconds()) < 1e-3


def test_tai_to_utc_across_the_2016_leap_second() -> None:
    for mjd in (57753.9999, 57754.0001, 57754.0004, 60961.23309222222):
        assert abs((schemas.tai_mjd_to_utc(mjd) - _tai(mjd)).total_seconds()) < 1e-5


def test_unknown_schema_id_is_named() -> None:
    raw = CONFLUENT.read_bytes()
    with pytest.raises(UnknownFormat, match="schema id 704"):
        rubin.parse(raw[:1] + struct.pack(">i", 704) + raw[5:], topic="")


@pytest.mark.parametrize(("head", "claimed", "error", "match"), [
    # A Rubin-shaped id not bundled: claimed, and parse names it and the known ones.
    (b"\x00" + struct.pack(">i", 1200), True, UnknownFormat,
     r"schema id 1200 \(v12\.0\) is not bundled \(known: 701 \(v7\.1\), 900"),
    # A bundled id behind a wrong magic byte: claimed, and parse names the byte.
    (b"\x01" + struct.pack(">i", 900), True, MalformedMessage,
     "magic byte is 0x01, expected 0x00; bytes 1-4 hold schema id 900"),
    (b"\x2a" + struct.pack(">i", 1100), True, MalformedMessage, "magic byte is 0x2a"),
    # Not Rubin-shaped: left to the other handlers (and to the registry's reasons).
    (b"\x00" + struct.pack(">i", 0), False, UnknownFormat, "schema id 0 is not bundled"),
    (b"\x00" + struct.pack(">i", 100_000), False, UnknownFormat, "100000 is not bundled"),
    (b"\x01" + struct.pack(">i", 1200), False, MalformedMessage, "magic byte is 0x01"),
])
def test_sniff_claims_rubin_shaped_frames_and_parse_says_what_is_wrong(
        head: bytes, claimed: bool, error: type, match: str) -> None:
    raw = head + CONFLUENT.read_bytes()[5:]
    assert rubin.sniff(raw) is claimed
    with pytest.raises(error, match=match):
        rubin.parse(raw, topic="")
    assert not rubin.sniff(head + b"\x00" * 10)  # too short to be an alert



@pytest.mark.parametrize("cut", [6, 60, 395, 5000, -69000, -2, -1])
def test_truncated_payload(cut: int) -> None:
    with pytest.raises(MalformedMessage):
        rubin.parse(CONFLUENT.read_bytes()[:cut], topic="")


@pytest.mark.parametrize(("field", "value", "match"), [
    ("ra", float("nan"), "diaSource.ra"),
    ("midpointMjdTai", 1e9, "not a time"),
    ("midpointMjdTai", -5.0, "not a time"),
])
def test_bad_values(field: str, value: float, match: str) -> None:
    schema = schemas.load(900)
    record = schema.decode_full(CONFLUENT.read_bytes(), 5, max_bytes=2**24)
    record["diaSource"][field] = value
    with pytest.raises(InvalidValue, match=match):
        rubin.parse(_frame(record, 900), topic="")


def test_flux_to_mag() -> None:
    assert rubin.flux_to_mag(3631e9, 0.0) == (pytest.approx(0.0, abs=1e-3), 0.0)
    assert rubin.flux_to_mag(-5.0, 1.0) == (None, None)
    assert rubin.flux_to_mag(float("nan"), 1.0) == (None, None)


# --- history: the packet's earlier positive >= 5 sigma detections -----------------

def _expected_history(record: dict[str, Any]) -> list[Any] | None:
    """Independent reading of raw prvDiaSources (astropy TAI → UTC); None if null."""
    src = record["diaSource"]
    elasticc = "midPointTai" in src
    t, f, e = ("midPointTai", "psFlux", "psFluxErr") if elasticc else \
        ("midpointMjdTai", "psfFlux", "psfFluxErr")
    prv = record.get("prvDiaSources")
    if prv is None:
        return None
    mjds = {s[t] for s in prv
            if s[f] is not None and s[e] is not None and s[e] > 0 and s[f] > 0
            and s[f] / s[e] >= 5 and s.get("isNegative") is not True and s[t] < src[t]}
    return [_tai(m) for m in sorted(mjds)][-256:]


def _same_times(got: tuple[Any, ...], want: list[Any]) -> None:
    assert len(got) == len(want)
    assert all(g.tzinfo is UTC for g in got) and list(got) == sorted(set(got))
    assert all(abs((g - w).total_seconds()) < 1e-3 for g, w in zip(got, want, strict=True))


def _corpus_records() -> list[tuple[str, dict[str, Any], Alert]]:
    out = []
    raw = CONFLUENT.read_bytes()
    out.append((CONFLUENT.name, rubin_frames.decode_full(raw), rubin.parse(raw, topic="")))
    for path in CONTAINERS:
        if path == UNIX_TIME_SAMPLE:
            continue
        _, records = _records(path)
        for part, record in zip(rubin.split(path.read_bytes()), records, strict=True):
            out.append((path.name, record, rubin.parse(part, topic="")))
    return out


def test_history_of_every_corpus_packet() -> None:
    counts: dict[str, list[int]] = {}
    for name, record, alert in _corpus_records():
        want = _expected_history(record)
        source = "elasticc.prvDiaSources" if "elasticc" in name else "lsst.prvDiaSources"
        if want is None:
            assert alert.history == () and alert.history_source is None, name
        else:
            assert alert.history_source == source, name
            _same_times(alert.history, want)
        counts.setdefault(name, []).append(len(alert.history))
    # The real LSSTCam packet sends no history (null), nor do 9 of the 10 HSC alerts.
    assert counts[CONFLUENT.name] == [0]
    assert sum(counts["lsst_v7_1_hsc_cosmos_10alerts.avro"]) == 1
    assert sum(map(sum, counts.values())) >= 10


def _v11() -> dict[str, Any]:
    return _records(RUBIN / "schema/v11_0/fakeAlert.avro")[1][0]


def test_empty_history_array_is_told() -> None:
    record = _v11()
    record["prvDiaSources"] = []
    for raw in (_frame(record, 1100), _container(record, 1100)):
        alert = rubin.parse(raw, topic="")
        assert alert.history == () and alert.history_source == "lsst.prvDiaSources"


def test_null_history_is_not_told() -> None:
    record = _v11()
    record["prvDiaSources"] = None
    for raw in (_frame(record, 1100), _container(record, 1100)):
        alert = rubin.parse(raw, topic="")
        assert alert.history == () and alert.history_source is None


def _container(record: dict[str, Any], schema_id: int) -> bytes:
    """A one-record container with the writer schema of the corpus file of that version."""
    path = {701: RUBIN / "avro/lsst_v7_1_hsc_cosmos_10alerts.avro",
            1100: RUBIN / "schema/v11_0/fakeAlert.avro"}[schema_id]
    out = io.BytesIO()
    fastavro.writer(out, _records(path)[0], [record])
    return out.getvalue()


def _zigzag(n: int) -> bytes:
    """Avro long encoding."""
    v, out = (n << 1) ^ (n >> 63), bytearray()
    while v > 0x7F:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    return bytes([*out, v])


def _source(base: dict[str, Any], mjd: float, flux: float, err: float = 100.0,
            **more: Any) -> dict[str, Any]:
    return dict(base, midpointMjdTai=mjd, psfFlux=flux, psfFluxErr=err, **more)


@pytest.mark.parametrize("schema_id", [701, 1100])
def test_negative_and_low_snr_sources_excluded(schema_id: int) -> None:
    if schema_id == 701:  # v7.1 has no isNegative: the flux sign alone decides
        record = next(r for r in _records(RUBIN / "avro/lsst_v7_1_hsc_cosmos_10alerts.avro")[1]
                      if r["prvDiaSources"])
    else:
        record = _v11()
    base = record["prvDiaSources"][0]
    now = record["diaSource"]["midpointMjdTai"]
    prv = [
        _source(base, now - 1.0, 500.0),                  # S/N 5: kept
        _source(base, now - 1.5, 499.0),                  # S/N 4.99
        _source(base, now - 2.0, -900.0),                 # negative flux
        _source(base, now - 2.5, 900.0, 0.0),             # no error: no S/N
        _source(base, now - 3.0, 900.0, -100.0),          # negative error
        _source(base, now, 900.0),                        # this source's epoch
        _source(base, now + 1.0, 900.0),                  # later
        _source(base, now - 1.0, 800.0),                  # same epoch again
    ]
    if schema_id != 701:
        prv.append(_source(base, now - 4.0, 900.0, isNegative=True))
        prv.append(_source(base, now - 0.5, 900.0, isNegative=None))  # unknown: flux decides
        want = [_tai(now - 1.0), _tai(now - 0.5)]
    else:
        assert "isNegative" not in base
        want = [_tai(now - 1.0)]
    record["prvDiaSources"] = prv
    for raw in (_frame(record, schema_id), _container(record, schema_id)):
        alert = rubin.parse(raw, topic="")
        assert alert.history_source == "lsst.prvDiaSources"
        _same_times(alert.history, want)


@pytest.mark.parametrize(("field", "value"), [
    ("psfFlux", float("nan")), ("psfFluxErr", float("nan")), ("psfFlux", float("inf")),
    ("psfFlux", None), ("psfFluxErr", None),
    ("midpointMjdTai", float("nan")), ("midpointMjdTai", float("inf")),
    ("midpointMjdTai", 1480360995.0), ("midpointMjdTai", -5.0), ("midpointMjdTai", 1e308),
])
def test_hostile_history_entry_is_skipped(field: str, value: float | None) -> None:
    record = _v11()
    base = record["prvDiaSources"][0]
    now = record["diaSource"]["midpointMjdTai"]
    hostile = _source(base, now - 1.0, 900.0)
    hostile[field] = value
    record["prvDiaSources"] = [hostile, _source(base, now - 2.0, 900.0)]
    for raw in (_frame(record, 1100), _container(record, 1100)):
        alert = rubin.parse(raw, topic="")
        _same_times(alert.history, [_tai(now - 2.0)])
        assert alert.first_detection is not None  # diaObject.firstDiaSourceMjdTai, unchanged


def test_history_keeps_the_newest_256() -> None:
    record = _v11()
    base = record["prvDiaSources"][0]
    now = record["diaSource"]["midpointMjdTai"]
    record["prvDiaSources"] = [_source(base, now - 0.01 * (i + 1), 900.0) for i in range(300)]
    alert = rubin.parse(_frame(record, 1100), topic="")
    _same_times(alert.history, [_tai(now - 0.01 * (i + 1)) for i in range(255, -1, -1)])


def test_elasticc_history_excludes_low_snr() -> None:
    path = RUBIN / "avro/elasticc_v0_9_11290844.avro"
    schema, records = _records(path)
    record = next(r for r in records if r["prvDiaSources"])
    now = record["diaSource"]["midPointTai"]
    base = record["prvDiaSources"][0]
    record["prvDiaSources"] = [dict(base, midPointTai=now - 1, psFlux=100.0, psFluxErr=50.0),
                               dict(base, midPointTai=now - 2, psFlux=float("nan")),
                               dict(base, midPointTai=now - 3, psFlux=600.0, psFluxErr=100.0)]
    out = io.BytesIO()
    fastavro.writer(out, schema, [record])
    alert = rubin.parse(out.getvalue(), topic="")
    assert alert.survey == "ELAsTiCC" and alert.history_source == "elasticc.prvDiaSources"
    _same_times(alert.history, [_tai(now - 3)])


def _history_offset(raw: bytes) -> int:
    return schemas.load(1100).prefix.decode(raw, 5)[2]


def test_history_decoder_refuses_bad_union_and_counts() -> None:
    record = _v11()
    record["prvDiaSources"] = []
    raw = _frame(record, 1100)
    at = _history_offset(raw)
    assert raw[at : at + 2] == b"\x02\x00"  # union branch 1 (array), then an empty block
    with pytest.raises(MalformedMessage, match="union index"):
        rubin.parse(raw[:at] + b"\x04" + raw[at + 1 :], topic="")
    # An item count far beyond the bytes left (2**62 items) is refused, not looped over.
    huge = b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"
    with pytest.raises(MalformedMessage, match="items announced"):
        rubin.parse(raw[:at + 1] + huge + raw[at + 2 :], topic="")
    # A negative count announces a block byte size (Avro): accepted like the plain form.
    record["prvDiaSources"] = _v11()["prvDiaSources"][:1]
    one = _frame(record, 1100)
    assert one[at : at + 2] == b"\x02\x02"  # one item
    size = len(one) - len(raw) - 1  # the item's bytes
    assert _zigzag(1) == b"\x02" and _zigzag(-1) == b"\x01"
    negative = one[:at + 1] + _zigzag(-1) + _zigzag(size) + one[at + 2 :]
    assert rubin.parse(negative, topic="") == rubin.parse(one, topic="")


@pytest.mark.parametrize("cut", [0.2, 0.5, 0.8, 0.99])
def test_truncated_inside_history(cut: float) -> None:
    record = _v11()
    base = record["prvDiaSources"][0]
    now = record["diaSource"]["midpointMjdTai"]
    record["prvDiaSources"] = [_source(base, now - 0.01 * (i + 1), 900.0) for i in range(50)]
    raw = _frame(record, 1100)
    at = _history_offset(raw)
    end = at + int((len(raw) - at) * cut)
    with pytest.raises(MalformedMessage):
        rubin.parse(raw[:end], topic="")
