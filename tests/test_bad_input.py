"""Hostile and broken input: every handler raises a BadMessage that says what is wrong.

A handler that lets any other exception escape would stop the stream instead of
dead-lettering one message; these tests feed each handler garbage, truncations,
hostile sizes and values that are present but wrong.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import random
from collections.abc import Callable
from types import ModuleType
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mma.errors import (
    BadMessage,
    BadSkymap,
    HostileMessage,
    InvalidValue,
    MalformedMessage,
    MissingField,
)
from mma.formats import avro, gcn_json
from mma.handlers import fink, lvk, ztf
from mma.registry import discover
from tests.conftest import CORPUS

HANDLERS = discover()  # every handler in the tree, including ones added later
LVK_FILE = CORPUS / "gcn-json/igwn-gwalert/S230528ay-preliminary.json"
ZTF_FILE = CORPUS / "alerts/ztf/avro/ZTF18abudxnw_2695378462115010012.avro"
FINK_FILE = sorted((CORPUS / "alerts/ztf/fink-2024-01-15").glob("*.parquet"))[5]
SMALL_FITS = base64.b64encode(b"SIMPLE  =                    T" + b" " * 50).decode()


def _samples() -> dict[str, bytes]:
    fink_payload = next(iter(fink.split(FINK_FILE.read_bytes())))
    return {
        "lvk": LVK_FILE.read_bytes(),
        "ztf": ZTF_FILE.read_bytes(),
        "fink_parquet": FINK_FILE.read_bytes(),
        "fink_payload": fink_payload,
    }


def _garbage() -> list[tuple[str, bytes]]:
    rnd = random.Random(20240115)
    cases = [
        ("empty", b""),
        ("whitespace", b" \r\n\t "),
        ("nul_bytes", b"\x00" * 64),
        ("random", rnd.randbytes(4096)),
        ("json_nan", b'{"superevent_id": "S230518h", "far": NaN, "publisher": "Fink"}'),
        ("json_infinity", b'{"publisher": "Fink", "candidate": {"ra": Infinity}}'),
        ("json_overflow", b'{"superevent_id": "S230518h", "far": 1e999}'),
        ("invalid_utf8", b'{"superevent_id": "S23\xff\xfe", "candidate": "\xc3\x28"}'),
        ("utf16", '{"superevent_id": "S230518h"}'.encode("utf-16")),
        ("json_array", b'[{"superevent_id": "S230518h"}]'),
        ("json_null", b"null"),
        ("deep_nesting", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
        ("huge_int", b'{"candid": ' + b"9" * 5000 + b"}"),
        ("avro_magic_only", avro.AVRO_MAGIC),
        ("avro_junk", avro.AVRO_MAGIC + rnd.randbytes(512)),
        ("parquet_junk", b"PAR1" + rnd.randbytes(512) + b"PAR1"),
        ("xml", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'),
    ]
    for name, raw in _samples().items():
        for label, cut in (
            ("third", len(raw) // 3),
            ("half", len(raw) // 2),
            ("minus1", len(raw) - 1),
        ):
            cases.append((f"{name}_truncated_{label}", raw[:cut]))
    return cases


GARBAGE = _garbage()


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda h: h.NAME)
@pytest.mark.parametrize(("label", "raw"), GARBAGE, ids=[g[0] for g in GARBAGE])
def test_garbage_raises_bad_message(handler: ModuleType, label: str, raw: bytes) -> None:
    with pytest.raises(BadMessage) as info:  # anything else fails the test
        handler.parse(raw, topic="test")
    assert len(str(info.value)) > 10, label
    if hasattr(handler, "sniff"):
        assert isinstance(handler.sniff(raw), bool)


# ---------------------------------------------------------------- LVK
def _lvk_doc() -> dict[str, Any]:
    doc = json.loads(LVK_FILE.read_bytes())
    doc["event"]["skymap"] = SMALL_FITS
    return doc


def _drop(*path: str) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        for key in path[:-1]:
            doc = doc[key]
        del doc[path[-1]]

    return edit


def _set(value: Any, *path: str) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        for key in path[:-1]:
            doc = doc[key]
        doc[path[-1]] = value

    return edit


LVK_CASES = [
    ("no_id", _drop("superevent_id"), MissingField, "superevent_id"),
    ("id_number", _set(230518, "superevent_id"), InvalidValue, "superevent_id"),
    ("id_path", _set("../../etc/passwd", "superevent_id"), InvalidValue, "superevent_id"),
    ("no_type", _drop("alert_type"), MissingField, "alert_type"),
    ("bad_type", _set("MAYBE", "alert_type"), InvalidValue, "alert_type"),
    ("no_created", _drop("time_created"), MissingField, "time_created"),
    ("naive_created", _set("2023-05-28T11:40:43", "time_created"), InvalidValue, "timezone"),
    ("bad_created", _set("yesterday", "time_created"), InvalidValue, "ISO 8601"),
    (
        "naive_event_time",
        _set("2023-05-28T11:10:53.670", "event", "time"),
        InvalidValue,
        "timezone",
    ),
    ("event_null", _set(None, "event"), MissingField, "event"),
    ("event_string", _set("S230528ay", "event"), InvalidValue, "event"),
    ("no_event_time", _drop("event", "time"), MissingField, "event.time"),
    ("no_far", _drop("event", "far"), MissingField, "far"),
    ("far_text", _set("high", "event", "far"), InvalidValue, "far"),
    ("far_negative", _set(-1e-9, "event", "far"), InvalidValue, "far"),
    ("skymap_not_b64", _set("not base64 at all!", "event", "skymap"), MalformedMessage, "base64"),
    (
        "skymap_not_fits",
        _set(base64.b64encode(b"GIF89a...").decode(), "event", "skymap"),
        BadSkymap,
        "FITS",
    ),
    ("skymap_number", _set(42, "event", "skymap"), InvalidValue, "skymap"),
    ("instruments_ints", _set([1, 2], "event", "instruments"), InvalidValue, "instruments"),
    ("significant_text", _set("yes", "event", "significant"), InvalidValue, "significant"),
]


@pytest.mark.parametrize(
    ("label", "edit", "error", "match"), LVK_CASES, ids=[c[0] for c in LVK_CASES]
)
def test_lvk_bad_fields(
    label: str, edit: Callable[[dict[str, Any]], None], error: type, match: str
) -> None:
    doc = _lvk_doc()
    lvk.parse(json.dumps(doc).encode(), topic="igwn.gwalert")  # the unedited base parses
    edit(doc)
    with pytest.raises(error, match=match):
        lvk.parse(json.dumps(doc).encode(), topic="igwn.gwalert")


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b'{"superevent_id": "S1", "superevent_id": "S2"}', "duplicate key"),
        (b'{"superevent_id": "S230528ay", "far": NaN}', "NaN"),
        (b'{"superevent_id": "S230528ay", "far": 1e999}', "overflows"),
        (b'{"superevent_id": "S230528\xff"}', "UTF-8"),
        (b'["superevent_id"]', "expected an object"),
        (b'{"superevent_id": ', "invalid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nesting"),
    ],
)
def test_strict_json(raw: bytes, match: str) -> None:
    with pytest.raises((MalformedMessage, HostileMessage), match=match):
        lvk.parse(raw, topic="igwn.gwalert")


def test_utf8_bom_is_tolerated() -> None:
    raw = b"\xef\xbb\xbf" + json.dumps(_lvk_doc()).encode()
    assert lvk.parse(raw, topic="igwn.gwalert").event_id == "S230528ay"


def _explode(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("decoded although it should have been refused first")


def test_huge_base64_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = "A" * 100_000_000  # 100 MB of base64 (75 MB decoded), built in one allocation
    monkeypatch.setattr(gcn_json.binascii, "a2b_base64", _explode)
    with pytest.raises(HostileMessage, match="above the cap"):
        gcn_json.b64decode_capped(huge, max_bytes=lvk.MAX_SKYMAP_BYTES, what="event.skymap")


def test_huge_skymap_message_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    head = b'{"alert_type": "PRELIMINARY", "superevent_id": "S230528ay", '
    raw = (
        head + b'"time_created": "2023-05-28T11:40:43Z", "event": {"skymap": "' + b"A" * 100_000_000
    )
    raw += b'", "time": "2023-05-28T11:10:53.670Z", "far": 1e-7}}'
    monkeypatch.setattr(gcn_json.binascii, "a2b_base64", _explode)
    with monkeypatch.context() as m:
        m.setattr(gcn_json.json, "loads", _explode)  # refused on size, before any JSON work
        with pytest.raises(HostileMessage, match="above the cap"):
            lvk.parse(raw, topic="igwn.gwalert")
    # Even with the message cap lifted, the skymap cap refuses it before decoding.
    monkeypatch.setattr(lvk, "MAX_MESSAGE_BYTES", 2**28)
    with pytest.raises(HostileMessage, match=r"event\.skymap would decode"):
        lvk.parse(raw, topic="igwn.gwalert")


# ---------------------------------------------------------------- ZTF
def _ztf(edit: Callable[[dict[str, Any]], None]) -> bytes:
    with ZTF_FILE.open("rb") as fh:
        reader: Any = fastavro.reader(fh)
        schema, (record,) = reader.writer_schema, list(reader)
    record = copy.deepcopy(record)
    edit(record)
    out = io.BytesIO()
    fastavro.writer(out, schema, [record])
    return out.getvalue()


ZTF_CASES = [
    ("ra_nan", _set(float("nan"), "candidate", "ra"), InvalidValue, "candidate.ra"),
    ("ra_400", _set(400.0, "candidate", "ra"), InvalidValue, "RA 400"),
    ("ra_negative", _set(-0.5, "candidate", "ra"), InvalidValue, "RA"),
    ("dec_nan", _set(float("nan"), "candidate", "dec"), InvalidValue, "candidate.dec"),
    ("dec_minus_91", _set(-91.0, "candidate", "dec"), InvalidValue, "Dec -91"),
    ("jd_nan", _set(float("nan"), "candidate", "jd"), InvalidValue, "candidate.jd"),
    ("jd_zero", _set(0.0, "candidate", "jd"), InvalidValue, "Julian date"),
    ("jd_inf", _set(float("inf"), "candidate", "jd"), InvalidValue, "candidate.jd"),
    (
        "candid_negative",
        lambda r: (_set(-5, "candid")(r), _set(-5, "candidate", "candid")(r)),
        InvalidValue,
        "candid",
    ),
    ("candid_mismatch", _set(1, "candid"), InvalidValue, "disagrees"),
    ("fid_7", _set(7, "candidate", "fid"), InvalidValue, "fid"),
    ("isdiffpos_x", _set("x", "candidate", "isdiffpos"), InvalidValue, "isdiffpos"),
    ("object_empty", _set("", "objectId"), MissingField, "objectId"),
]


@pytest.mark.parametrize(
    ("label", "edit", "error", "match"), ZTF_CASES, ids=[c[0] for c in ZTF_CASES]
)
def test_ztf_bad_values(
    label: str, edit: Callable[[dict[str, Any]], None], error: type, match: str
) -> None:
    assert ztf.parse(_ztf(lambda r: None), topic="").object_id == "ZTF18abudxnw"
    with pytest.raises(error, match=match):
        ztf.parse(_ztf(edit), topic="")


def test_ztf_candidate_without_required_fields() -> None:
    cand = {"ra": 10.0, "dec": 20.0, "jd": 2460324.7}
    for key in cand:
        partial = {k: v for k, v in cand.items() if k != key}
        with pytest.raises(MissingField, match=f"candidate.{key} is missing"):
            ztf.alert_from_candidate(partial, object_id="ZTF24aaaaaaa", candid=1)


def test_avro_truncated_block_and_bad_sync() -> None:
    raw = ZTF_FILE.read_bytes()
    with pytest.raises(MalformedMessage, match="block 1 is truncated"):
        ztf.parse(raw[: len(raw) - 100], topic="")
    with pytest.raises(MalformedMessage, match="sync marker"):
        ztf.parse(raw[:-1] + bytes([raw[-1] ^ 0xFF]), topic="")
    with pytest.raises(MalformedMessage, match="header"):
        ztf.parse(raw[:200], topic="")


def _container(schema: dict[str, Any], records: list[Any], codec: str = "null") -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, schema, records, codec=codec)
    return out.getvalue()


def test_avro_zero_width_array_is_hostile() -> None:
    # 2**62 nulls cost a 10-byte block header: refused from the schema, never looped over.
    schema = {
        "type": "record",
        "name": "ztf.alert",
        "fields": [{"name": "a", "type": {"type": "array", "items": "null"}}],
    }
    raw = _container(schema, [{"a": [None] * 3}])
    with pytest.raises(HostileMessage, match="zero-width"):
        ztf.parse(raw, topic="")


def test_avro_deflate_bomb_and_unsupported_codec() -> None:
    schema = {"type": "record", "name": "ztf.alert", "fields": [{"name": "b", "type": "bytes"}]}
    bomb = _container(schema, [{"b": bytes(4_000_000)}], codec="deflate")
    assert len(bomb) < 10_000  # 4 MB of zeros deflate to a few kB
    with pytest.raises(HostileMessage, match="inflates beyond"):
        avro.read_container(bomb, max_bytes=2**20, max_records=1, max_block_bytes=2**20)
    with pytest.raises(MalformedMessage, match="codec 'bzip2'"):
        ztf.parse(_container(schema, [{"b": b"x"}], codec="bzip2"), topic="")


def test_oversized_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ztf, "MAX_MESSAGE_BYTES", 1000)
    with pytest.raises(HostileMessage, match="above the cap"):
        ztf.parse(ZTF_FILE.read_bytes(), topic="")
    monkeypatch.setattr(lvk, "MAX_MESSAGE_BYTES", 1000)
    with pytest.raises(HostileMessage, match="above the cap"):
        lvk.parse(LVK_FILE.read_bytes(), topic="")
    monkeypatch.setattr(fink, "MAX_PAYLOAD_BYTES", 100)
    with pytest.raises(HostileMessage, match="above the cap"):
        fink.parse(_samples()["fink_payload"], topic="")


# ---------------------------------------------------------------- Fink
def _fink(edit: Callable[[dict[str, Any]], None]) -> bytes:
    doc = json.loads(_samples()["fink_payload"])
    edit(doc)
    return json.dumps(doc).encode()


FINK_CASES = [
    ("no_candidate", _drop("candidate"), MissingField, "candidate"),
    ("candid_text", _set("2570213535515010011", "candid"), MissingField, "candid"),
    ("no_object", _drop("objectId"), MissingField, "objectId"),
    ("ra_null", _set(None, "candidate", "ra"), MissingField, "candidate.ra"),
    ("ra_text", _set("12h", "candidate", "ra"), InvalidValue, "candidate.ra"),
    ("dec_95", _set(95.0, "candidate", "dec"), InvalidValue, "Dec 95"),
    ("ra_360", _set(360.0, "candidate", "ra"), InvalidValue, "RA 360"),
    ("jd_bool", _set(True, "candidate", "jd"), InvalidValue, "candidate.jd"),
]


@pytest.mark.parametrize(
    ("label", "edit", "error", "match"), FINK_CASES, ids=[c[0] for c in FINK_CASES]
)
def test_fink_bad_values(
    label: str, edit: Callable[[dict[str, Any]], None], error: type, match: str
) -> None:
    fink.parse(_fink(lambda d: None), topic="")
    with pytest.raises(error, match=match):
        fink.parse(_fink(edit), topic="")


def test_fink_nan_position_in_parquet() -> None:
    table = pq.read_table(FINK_FILE).slice(0, 1)
    cand = table["candidate"].combine_chunks()
    fields = [cand.field(i) for i in range(cand.type.num_fields)]
    index = cand.type.get_field_index("ra")
    fields[index] = pc.multiply(fields[index], float("nan"))
    table = table.set_column(
        table.schema.get_field_index("candidate"),
        "candidate",
        pa.StructArray.from_arrays(fields, fields=list(cand.type)),
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    with pytest.raises(MissingField, match=r"candidate\.ra"):  # NaN has no JSON form: null
        fink.parse(next(iter(fink.split(out.getvalue()))), topic="")
