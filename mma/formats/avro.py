"""Size-capped Avro decoding: object containers (ZTF, brokers) and schemaless records (Rubin).

fastavro trusts its input: a container's writer schema and block headers come
from the sender, a truncated block can surface as any of half a dozen builtin
exceptions, and a deflate block can expand a thousandfold. Before fastavro sees
a container this module walks the block structure itself (counts, sizes, sync
markers, bounded decompression) so that broken or crafted input fails early
with a :class:`~mma.errors.BadMessage` naming the problem.
"""

from __future__ import annotations

import io
import logging
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import fastavro

from mma.errors import BadMessage, HostileMessage, MalformedMessage

__all__ = [
    "AVRO_MAGIC",
    "Container",
    "container_schema",
    "decode_schemaless",
    "is_container",
    "read_container",
    "split_container",
    "write_container",
]

logger = logging.getLogger(__name__)

AVRO_MAGIC = b"Obj\x01"
"""First four bytes of an Avro object container file."""

_SYNC_SIZE = 16
_MAX_VARINT_BYTES = 10
# Types whose encoding can take zero bytes. An array of them lets a 10-byte
# block header declare 2**62 items that cost no input: a CPU bomb.
_ZERO_WIDTH_PRIMITIVES = {"null"}
_NONZERO_PRIMITIVES = {"boolean", "int", "long", "float", "double", "bytes", "string"}


@dataclass(frozen=True)
class Container:
    """The decoded content of one Avro object container.

    Attributes
    ----------
    schema : dict
        The writer schema embedded in the header (fastavro's expanded form).
    records : list of dict
        The records, in file order.
    codec : str
        Block compression codec (``null`` or ``deflate``).
    """

    schema: dict[str, Any]
    records: list[dict[str, Any]]
    codec: str


def is_container(raw: bytes) -> bool:
    """True if *raw* starts with the Avro object container magic ``Obj\\x01``."""
    return raw[:4] == AVRO_MAGIC


def _read_long(raw: bytes, pos: int) -> tuple[int, int]:
    """Decode one zig-zag varint (Avro ``long``) at *pos*; return (value, new position)."""
    shift = 0
    acc = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(raw):
            raise MalformedMessage("Avro data truncated inside a block header")
        byte = raw[pos + i]
        acc |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (acc >> 1) ^ -(acc & 1), pos + i + 1
        shift += 7
    raise MalformedMessage("Avro varint longer than 10 bytes")


def _zero_width(schema: Any, named: dict[str, Any], visiting: frozenset[str]) -> bool:
    """True if a value of *schema* can be encoded in zero bytes."""
    if isinstance(schema, str):
        if schema in _ZERO_WIDTH_PRIMITIVES:
            return True
        if schema in _NONZERO_PRIMITIVES or schema in visiting or schema not in named:
            return False
        return _zero_width(named[schema], named, visiting | {schema})
    if isinstance(schema, list):  # a union always writes its branch index (>= 1 byte)
        return False
    if not isinstance(schema, Mapping):
        return False
    kind = schema.get("type")
    if kind == "fixed":
        return schema.get("size") == 0
    if kind in {"record", "error"}:
        name = str(schema.get("name", ""))
        return all(
            _zero_width(f.get("type"), named, visiting | {name}) for f in schema.get("fields", [])
        )
    if kind in ("array", "map", "enum"):
        return False
    return _zero_width(kind, named, visiting)


def _check_no_zero_width_arrays(schema: Any) -> None:
    """Raise HostileMessage if the writer schema has an array of zero-width items."""
    named: dict[str, Any] = {}
    stack = [schema]
    arrays: list[Any] = []
    while stack:  # iterative walk: the schema itself is untrusted and may nest deeply
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, Mapping):
            if node.get("type") in ("record", "error", "enum", "fixed") and "name" in node:
                named[str(node["name"])] = node
            if node.get("type") == "array":
                arrays.append(node.get("items"))
            stack.extend(f.get("type") for f in node.get("fields", []) if isinstance(f, Mapping))
            stack.extend(node[k] for k in ("items", "values") if k in node)
    for items in arrays:
        if _zero_width(items, named, frozenset()):
            raise HostileMessage("Avro writer schema has an array of zero-width items")


def _bounded_inflate(data: bytes, limit: int) -> int:
    """Size [bytes] of a raw-deflate block, refusing to inflate past *limit*."""
    inflater = zlib.decompressobj(-15)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise MalformedMessage(f"corrupt deflate block in Avro container: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise HostileMessage(f"Avro deflate block inflates beyond {limit} bytes")
    return len(out)


def _open(raw: bytes, max_bytes: int) -> tuple[io.BytesIO, Any]:
    if len(raw) > max_bytes:
        raise HostileMessage(f"Avro data is {len(raw)} bytes, above the cap of {max_bytes}")
    if not is_container(raw):
        raise MalformedMessage("not an Avro object container (magic 'Obj\\x01' missing)")
    stream = io.BytesIO(raw)
    try:
        reader = fastavro.reader(stream)
    except Exception as exc:  # fastavro's failure modes on bad headers are not a fixed set
        raise MalformedMessage(
            f"corrupt Avro container header: {type(exc).__name__}: {exc}"
        ) from exc
    return stream, reader


def container_schema(raw: bytes, *, max_bytes: int) -> dict[str, Any]:
    """Writer schema of an Avro container, reading only its header.

    Raises
    ------
    HostileMessage
        *raw* is larger than ``max_bytes``.
    MalformedMessage
        Not a container, or its header is corrupt.
    """
    _, reader = _open(raw, max_bytes)
    schema: dict[str, Any] = reader.writer_schema
    return schema


def _checked_reader(
    raw: bytes, *, max_bytes: int, max_records: int, max_block_bytes: int
) -> tuple[Any, str, int]:
    """Open a container and walk its blocks; return (fastavro reader, codec, record count)."""
    stream, reader = _open(raw, max_bytes)
    codec = str(reader.codec)
    if codec not in ("null", "deflate"):
        # ZTF and every broker file seen so far use "null"; other codecs need
        # optional libraries and their own decompression-bomb guards.
        raise MalformedMessage(f"Avro codec {codec!r} is not supported (only null and deflate)")
    _check_no_zero_width_arrays(reader.writer_schema)
    sync = raw[stream.tell() - _SYNC_SIZE : stream.tell()]
    pos, n_blocks, n_records = stream.tell(), 0, 0
    while pos < len(raw):
        count, pos = _read_long(raw, pos)
        size, pos = _read_long(raw, pos)
        n_blocks += 1
        if count < 0 or size < 0:
            raise MalformedMessage(f"Avro block {n_blocks} has a negative count or size")
        if pos + size + _SYNC_SIZE > len(raw):
            raise MalformedMessage(
                f"Avro block {n_blocks} is truncated: it declares {size} bytes, "
                f"{max(len(raw) - pos - _SYNC_SIZE, 0)} are present"
            )
        if codec == "deflate":
            _bounded_inflate(raw[pos : pos + size], max_block_bytes)
        pos += size
        if raw[pos : pos + _SYNC_SIZE] != sync:
            raise MalformedMessage(f"Avro block {n_blocks} ends without the sync marker")
        pos += _SYNC_SIZE
        n_records += count
        if n_records > max_records:
            raise HostileMessage(f"Avro container holds more than {max_records} records")
    return reader, codec, n_records


def _iter_records(reader: Any, n_records: int) -> Iterator[dict[str, Any]]:
    n = 0
    try:
        for record in reader:
            if not isinstance(record, dict):
                raise MalformedMessage("Avro container records are not Avro records")
            n += 1
            yield record
    except BadMessage:
        raise
    except Exception as exc:  # corrupt block content surfaces as assorted builtins
        raise MalformedMessage(f"corrupt Avro record: {type(exc).__name__}: {exc}") from exc
    if n != n_records:
        raise MalformedMessage(f"Avro blocks declare {n_records} records, {n} decoded")


def read_container(
    raw: bytes,
    *,
    max_bytes: int,
    max_records: int,
    max_block_bytes: int = 64 * 2**20,
) -> Container:
    """Decode every record of an Avro object container, within caps.

    Parameters
    ----------
    raw : bytes
        The whole container (header and blocks).
    max_bytes : int
        Largest accepted container [bytes].
    max_records : int
        Largest accepted number of records; checked from the block headers
        before any record is decoded.
    max_block_bytes : int
        Largest accepted inflated size of one deflate block [bytes].

    Returns
    -------
    Container

    Raises
    ------
    HostileMessage
        Over a cap, or a writer schema built to make decoding loop.
    MalformedMessage
        Bad magic, corrupt header, truncated or corrupt block, unsupported codec.
    """
    reader, codec, n_records = _checked_reader(
        raw, max_bytes=max_bytes, max_records=max_records, max_block_bytes=max_block_bytes
    )
    records = list(_iter_records(reader, n_records))
    return Container(schema=reader.writer_schema, records=records, codec=codec)


def write_container(schema: Mapping[str, Any], records: list[dict[str, Any]]) -> bytes:
    """Encode *records* as an uncompressed Avro object container with *schema* embedded.

    Used to cut a many-record file into the one-record payloads a Kafka
    message would carry, so that ``parse`` sees the same bytes either way.
    """
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(dict(schema)), records, codec="null")
    return out.getvalue()


def split_container(raw: bytes, *, max_bytes: int, max_records: int) -> Iterator[bytes]:
    """Yield one single-record container per record of the container *raw*.

    The block structure is checked before the first record is yielded; records
    are then decoded one at a time, so a large file is never held decoded in
    memory. Raises the errors of :func:`read_container`.
    """
    reader, _, n_records = _checked_reader(
        raw, max_bytes=max_bytes, max_records=max_records, max_block_bytes=64 * 2**20
    )
    parsed = fastavro.parse_schema(reader.writer_schema)  # parse once, not once per record
    for record in _iter_records(reader, n_records):
        out = io.BytesIO()
        fastavro.writer(out, parsed, [record], codec="null")
        yield out.getvalue()


def decode_schemaless(
    raw: bytes, schema: dict[str, Any], *, max_bytes: int, offset: int = 0
) -> dict[str, Any]:
    """Decode one schemaless Avro record (e.g. after a 5-byte Confluent header).

    Parameters
    ----------
    raw : bytes
        The message.
    schema : mapping
        The writer schema, raw or already passed through ``fastavro.parse_schema``
        (parse it once and reuse it: parsing costs far more than decoding).
    max_bytes : int
        Largest accepted message [bytes].
    offset : int
        Where the record starts in *raw* [bytes].

    Raises
    ------
    HostileMessage
        *raw* is larger than ``max_bytes``.
    MalformedMessage
        Truncated or corrupt record, or bytes left over after it.
    """
    if len(raw) > max_bytes:
        raise HostileMessage(f"Avro message is {len(raw)} bytes, above the cap of {max_bytes}")
    if len(raw) <= offset:
        raise MalformedMessage("empty Avro record")
    stream = io.BytesIO(raw)
    stream.seek(offset)
    try:
        record = fastavro.schemaless_reader(stream, schema, None)
    except Exception as exc:  # see read_container
        raise MalformedMessage(f"corrupt Avro record: {type(exc).__name__}: {exc}") from exc
    if stream.tell() != len(raw):
        raise MalformedMessage(f"{len(raw) - stream.tell()} bytes left after the Avro record")
    if not isinstance(record, dict):
        raise MalformedMessage("Avro payload is not a record")
    return record
