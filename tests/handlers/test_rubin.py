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
        full = rubin.decode_full(frame)
        version = rubin.decode_fast(frame)[3]
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
