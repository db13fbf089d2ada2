"""Hostile alert-side files: sizes that once cost gigabytes, forged ids, foreign encodings.

Each case is built here, in memory, from the corpus or from nothing:

* volume: a Fink parquet of a million identical rows, a row carrying 1,048,512
  ``prv_candidates``, an Avro container of a million tiny records (7 MiB), a ZTF
  packet whose 1,048,512 ``prv_candidates`` are one deflate block of 217 KiB
  (63 MiB inflated) and one that inflates beyond the block cap, a Rubin frame
  whose ``prvDiaSources`` pass the cap;
* ids: an ANTARES locus id and a Pitt-Google object id that carry a newline and
  a forged ``CRITICAL`` log line, a ZTF ``objectId`` with ESC ``[2J``, a colour
  code, U+202E and BEL;
* reasons: an unbundled Rubin schema id, a wrong Confluent magic byte, UTF-16
  and UTF-32 text, a parquet file with a corrupt footer or none, an Avro
  container with a corrupt header or a schema nobody reads;

and one valid control (a corpus ZTF packet) that must be stored. The reason of
each is the fragment its dead letter must contain.
"""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mma.formats.avro_walk import write_long as zigzag
from tests.conftest import CORPUS
from tests.hostile import Case

ZTF_PACKET = CORPUS / "alerts/ztf/avro/ZTF18abudxnw_2695378462115010012.avro"
# Un-versioned 2018 schema: 51 fields per prv_candidate, 63 bytes when all nullable
# ones are null, so 1,048,512 of them inflate to just under 64 MiB.
ZTF_2018_PACKET = CORPUS / "alerts/ztf/avro/ZTF18aaypnsi_541385122515015008.avro"
RUBIN_V9 = CORPUS / "alerts/rubin/avro/lsst_v9_0_7912941781254298.confluent.avro"
RUBIN_V11 = CORPUS / "alerts/rubin/schema/v11_0/fakeAlert.avro"
ANTARES = CORPUS / "alerts/brokers/antares_lsst_locus_ANT2019b5sdo.json"
PITTGOOGLE = CORPUS / "alerts/brokers/pittgoogle_rows_ZTF19acfixfe.json"

FORGED = "\n2026-12-05T00:00:00Z CRITICAL mma: forged"
TERMINAL = "\x1b[2J\x1b[31m\u202e\x07"  # clear screen, red, right-to-left override, bell
MILLION = 1_000_000
ZTF_HISTORY_BOMB = 1_048_512  # the prv_candidates count of the reported packet


# ---------------------------------------------------------------- Fink parquet
def _fink_table(rows: int) -> pa.Table:
    """*rows* identical rows with the columns a Fink table needs (dictionary-encoded)."""
    def same(value: Any, kind: pa.DataType) -> pa.Array:
        return pa.DictionaryArray.from_arrays(np.zeros(rows, np.int32),
                                              pa.array([value], kind)).cast(kind)

    candidate = pa.StructArray.from_arrays(
        [same(2460324.71, pa.float64()), same(193.1, pa.float64()), same(-29.5, pa.float64()),
         same(2, pa.int32()), same(18.5, pa.float32()), same(0.1, pa.float32()),
         same("t", pa.string())],
        names=["jd", "ra", "dec", "fid", "magpsf", "sigmapsf", "isdiffpos"])
    return pa.table({"objectId": same("ZTF24aaaaaaa", pa.string()),
                     "candid": same(2570213535515010011, pa.int64()),
                     "candidate": candidate, "cdsxmatch": same("Unknown", pa.string())})


def _parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=len(table) or 1)
    return out.getvalue()


def fink_rows(rows: int) -> bytes:
    """A Fink parquet file of *rows* identical rows (a million: 1.7 MB)."""
    return _parquet(_fink_table(rows))


def fink_history(entries: int) -> bytes:
    """A one-row Fink parquet file whose ``prv_candidates`` holds *entries* detections."""
    table = _fink_table(1)
    items = pa.StructArray.from_arrays(
        [pa.array(np.full(entries, 2460320.5)), pa.array(np.full(entries, 1, np.int64)),
         pa.DictionaryArray.from_arrays(np.zeros(entries, np.int32), ["t"]).cast(pa.string()),
         pa.array(np.full(entries, 0.1, np.float32))],
        names=["jd", "candid", "isdiffpos", "sigmapsf"])
    history = pa.ListArray.from_arrays(pa.array([0, entries], pa.int32()), items)
    return _parquet(table.append_column("prv_candidates", history))


def corrupt_footer(raw: bytes) -> bytes:
    """*raw* (a parquet file) with its footer's metadata overwritten by junk."""
    length = int.from_bytes(raw[-8:-4], "little")
    start = len(raw) - 8 - length
    return raw[:start] + bytes([0xFF]) * length + raw[-8:]


# ---------------------------------------------------------------- Avro
def _container_header(schema: dict[str, Any], codec: str) -> tuple[bytes, bytes]:
    """The header of an empty container of *schema* and its sync marker."""
    out = io.BytesIO()
    fastavro.writer(out, schema, [], codec=codec)
    header = out.getvalue()
    return header, header[-16:]


def container(schema: dict[str, Any], count: int, data: bytes, codec: str = "null") -> bytes:
    """An Avro container of one block: *count* records whose encoding is *data*."""
    header, sync = _container_header(schema, codec)
    if codec == "deflate":
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = packer.compress(data) + packer.flush()
    return header + zigzag(count) + zigzag(len(data)) + data + sync


def tiny_records(count: int) -> bytes:
    """A ``ztf.alert`` container of *count* records of one 7-byte long (a million: 7 MiB)."""
    schema = {"type": "record", "name": "ztf.alert", "fields": [{"name": "candid", "type": "long"}]}
    return container(schema, count, zigzag(2**40) * count)


def array_parts(path: Path, field: str, item: dict[str, Any]) -> tuple[
        dict[str, Any], bytes, bytes, bytes]:
    """The first record of the container *path*, in parts around its array *field*.

    Returns (writer schema, the record's bytes up to the array's first block count
    (union branch included), the encoding of *item*, the bytes after the array's
    closing 0). An array of any size or blocking is then a matter of joining bytes:
    a million items are one repeated byte string, never a million dicts.
    """
    with path.open("rb") as fh:
        reader: Any = fastavro.reader(fh)
        schema, record = reader.writer_schema, next(iter(reader))
    named: dict[str, Any] = {}
    parsed: Any = fastavro.parse_schema(schema, named_schemas=named)
    fields: list[dict[str, Any]] = parsed["fields"]
    at = [f["name"] for f in fields].index(field)

    def encode(kind: Any, value: Any) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, fastavro.parse_schema(kind, named_schemas=dict(named)),
                                   value)
        return out.getvalue()

    def part(chosen: list[dict[str, Any]]) -> bytes:
        kind = {"type": "record", "name": "part", "fields": chosen}
        return encode(kind, {f["name"]: record[f["name"]] for f in chosen})

    branches = fields[at]["type"]  # ["null", array] or [array, "null"]
    branch = next(i for i, b in enumerate(branches) if b != "null")
    item_type = branches[branch]["items"]
    item_type = named.get(item_type, item_type) if isinstance(item_type, str) else item_type
    return (schema, part(fields[:at]) + zigzag(branch), encode(item_type, item),
            part(fields[at + 1 :]))


def _with_array(path: Path, field: str, item: dict[str, Any], count: int) -> tuple[
        dict[str, Any], bytes]:
    """(writer schema, record encoding) of *path*'s record with *count* copies of *item*."""
    schema, head, one, tail = array_parts(path, field, item)
    return schema, head + zigzag(count) + one * count + b"\x00" + tail


def upper_limit(template: Path) -> dict[str, Any]:
    """The smallest ``prv_candidates`` entry of *template*'s schema: nullable fields null."""
    with template.open("rb") as fh:
        reader: Any = fastavro.reader(fh)
        entry = next(iter(reader))["prv_candidates"][0]
        named: dict[str, Any] = {}
        fastavro.parse_schema(reader.writer_schema, named_schemas=named)
    kinds = {f["name"]: f["type"] for f in named["ztf.alert.prv_candidate"]["fields"]}
    return {k: None if isinstance(kinds[k], list) else v for k, v in entry.items()} | {
        "rbversion": ""}


def ztf_history(entries: int, template: Path = ZTF_2018_PACKET, codec: str = "deflate") -> bytes:
    """A corpus ZTF packet whose ``prv_candidates`` holds *entries* upper limits.

    With the default 2018 template and 1,048,512 entries: the reported packet, one
    deflate block of 217 KiB that inflates to 63 MiB (under the 64 MiB block cap).
    """
    schema, data = _with_array(template, "prv_candidates", upper_limit(template), entries)
    return container(schema, 1, data, codec)


def ztf_with_id(object_id: str) -> bytes:
    """The corpus ZTF packet with its objectId replaced in place (same UTF-8 length)."""
    raw = ZTF_PACKET.read_bytes()
    old, new = b"ZTF18abudxnw", object_id.encode()
    assert len(new) == len(old) and raw.count(old) == 1  # Avro strings carry their length
    return raw.replace(old, new)


def ztf_dated(jd: float) -> bytes:
    """The corpus ZTF packet with its detection at Julian date *jd* (re-encoded)."""
    reader = fastavro.reader(io.BytesIO(ZTF_PACKET.read_bytes()))
    schema: Any = reader.writer_schema
    record: Any = next(iter(reader))
    record["candidate"]["jd"] = jd
    out = io.BytesIO()
    fastavro.writer(out, schema, [record])
    return out.getvalue()


def avro_of(name: str) -> bytes:
    """A valid container of one record whose schema is named *name*."""
    out = io.BytesIO()
    schema = {"type": "record", "name": name, "fields": [{"name": "x", "type": "long"}]}
    fastavro.writer(out, schema, [{"x": 1}])
    return out.getvalue()


# ---------------------------------------------------------------- Rubin frames
def rubin_history(items: int) -> bytes:
    """A v11 Confluent frame whose ``prvDiaSources`` holds *items* copies of a real item."""
    with RUBIN_V11.open("rb") as fh:
        record: Any = next(iter(fastavro.reader(fh)))
    item = record["prvDiaSources"][0]
    _, data = _with_array(RUBIN_V11, "prvDiaSources", item, items)
    return b"\x00" + (1100).to_bytes(4, "big") + data


def rubin_frame(magic: int = 0, schema_id: int | None = None) -> bytes:
    """The real v9.0 LSSTCam frame with its magic byte or schema id replaced."""
    raw = RUBIN_V9.read_bytes()
    sid = raw[1:5] if schema_id is None else schema_id.to_bytes(4, "big")
    return bytes([magic]) + sid + raw[5:]


# ---------------------------------------------------------------- JSON brokers
def antares_locus(locus_id: str) -> bytes:
    doc = json.loads(ANTARES.read_bytes())
    doc["locus_id"] = locus_id
    return json.dumps(doc).encode()


def pittgoogle(object_id: str) -> bytes:
    doc = json.loads(PITTGOOGLE.read_bytes())
    doc["objectId"] = object_id
    return json.dumps(doc).encode()


def cases() -> list[Case]:
    """Every hostile alert-side case, plus the valid control ``alert_valid_ztf``."""
    footer = corrupt_footer(fink_rows(3))
    return [
        Case("alert_fink_million_rows", "fink_million.parquet", fink_rows(MILLION),
             reason="above the cap of 200000 rows per file"),
        Case("alert_fink_history_bomb", "fink_history.parquet", fink_history(ZTF_HISTORY_BOMB),
             reason="above the cap of 10000 entries per row"),
        Case("alert_avro_million_records", "million.avro", tiny_records(MILLION),
             reason="more than 100000 records"),
        Case("alert_ztf_history_bomb", "ztf_history.avro", ztf_history(ZTF_HISTORY_BOMB),
             reason="prv_candidates holds more than 10000 items"),
        Case("alert_ztf_inflation_bomb", "ztf_inflation.avro",
             ztf_history(ZTF_HISTORY_BOMB, template=ZTF_PACKET), reason="inflates beyond"),
        Case("alert_rubin_history_over_cap", "rubin_history.avro", rubin_history(10_001),
             reason="prvDiaSources holds more than 10000 items"),
        Case("alert_antares_forged_locus", "antares.json", antares_locus(f"ANT2019{FORGED}"),
             reason="locus_id"),
        Case("alert_pittgoogle_forged_id", "pittgoogle.json",
             pittgoogle(f"ZTF19acfixfe{FORGED}"), reason="objectId"),
        Case("alert_ztf_terminal_id", "ztf_id.avro", ztf_with_id("ZTF\x1b[2J\u202e\x07\n"),
             reason="objectId"),
        Case("alert_rubin_unknown_schema", "rubin_v12.avro", rubin_frame(schema_id=1200),
             reason="schema id 1200 (v12.0) is not bundled"),
        Case("alert_rubin_wrong_magic", "rubin_magic.avro", rubin_frame(magic=1),
             reason="magic byte is 0x01"),
        Case("alert_utf16_locus", "antares_utf16.json",
             ANTARES.read_text().encode("utf-16"), reason="only UTF-8 is accepted"),
        Case("alert_utf16be_no_bom", "pittgoogle_utf16.json",
             PITTGOOGLE.read_text().encode("utf-16-be"), reason="only UTF-8 is accepted"),
        Case("alert_utf32_locus", "antares_utf32.json",
             ANTARES.read_text().encode("utf-32"), reason="only UTF-8 is accepted"),
        Case("alert_parquet_corrupt_footer", "fink_footer.parquet", footer,
             reason="corrupt parquet footer"),
        Case("alert_parquet_truncated", "fink_cut.parquet", fink_rows(3)[:-100],
             reason="PAR1 magic missing at the end"),
        Case("alert_avro_corrupt_header", "junk.avro", b"Obj\x01" + b"\xff" * 200,
             reason="corrupt Avro container header"),
        Case("alert_avro_unknown_schema", "acme.avro", avro_of("acme.alert"),
             reason="which no handler reads"),
        # Inside the handler's 1970-2100 sanity range: once a clock mover in a replay.
        Case("alert_ztf_dated_2099", "ztf_2099.avro", ztf_dated(2488069.5 - 300),
             reason="is in the future"),
        Case("alert_ztf_before_first_light", "ztf_2016.avro", ztf_dated(2457400.5),
             reason="when this source began"),
        Case("alert_valid_ztf", ZTF_PACKET.name, ZTF_PACKET.read_bytes(), outcome="stored"),
    ]
