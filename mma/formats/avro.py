"""Size-capped Avro decoding: object containers (ZTF, brokers) and schemaless records (Rubin).

fastavro trusts its input: a container's writer schema and block headers come
from the sender, a truncated block can surface as any of half a dozen builtin
exceptions, a deflate block can expand a thousandfold, and an array of a
million items becomes a million dicts. Before fastavro sees a container this
module walks the block structure itself (counts, sizes, sync markers, bounded
decompression), then each record by its schema without decoding it
(:mod:`mma.formats.avro_walk`: array lengths from their block counts), so that
broken or crafted input fails early with a :class:`~mma.errors.BadMessage`
naming the problem, and memory stays bounded by the caps below.
"""

from __future__ import annotations

import contextlib
import io
import logging
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import fastavro

from mma.errors import BadMessage, HostileMessage, MalformedMessage
from mma.formats.avro_walk import (
    MAX_ARRAY_ITEMS,
    Limits,
    Walker,
    check_no_zero_width_arrays,
    read_long,
    walker,
    write_long,
)
from mma.formats.ids import escaped, shown

__all__ = [
    "AVRO_MAGIC", "CUTOUT_FIELDS", "MAX_BLOCK_BYTES", "MAX_FILE_RECORDS", "Container",
    "container_schema", "cutouts_of", "decode_schemaless", "is_container", "read_container",
    "split_container",
]  # fmt: skip

logger = logging.getLogger(__name__)

AVRO_MAGIC = b"Obj\x01"
"""First four bytes of an Avro object container file."""

MAX_FILE_RECORDS = 100_000
"""Most records one container file may hold, counted from the block headers
before any record is read. A Kafka message holds one; the largest real files
are pipeline outputs of one Rubin visit, up to about 10,000 alerts. A million
tiny records (7 MiB) cost 189 s and 2.7 GB downstream before this cap."""

MAX_BLOCK_BYTES = 64 * 2**20
"""Largest inflated size of one deflate block [bytes] in a file; a one-record
message is held to its own size cap instead."""

_SYNC_SIZE = 16
_INFLATE_CHUNK = 2**20  # bytes inflated at a time when only the size is wanted


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


@dataclass(frozen=True)
class _Layout:
    """What the block walk learned of a container: enough to cut or decode it."""

    reader: Any  # the fastavro reader, positioned at the first block
    codec: str
    schema_json: str  # the header's avro.schema, as sent
    sync: bytes
    data_start: int
    n_records: int


def is_container(raw: bytes) -> bool:
    """True if *raw* starts with the Avro object container magic ``Obj\\x01``."""
    return raw[:4] == AVRO_MAGIC
def _inflate_chunks(data: bytes, limit: int) -> Iterator[bytes]:
    """A raw-deflate block inflated piece by piece, refusing to go past *limit* [bytes]."""
    inflater = zlib.decompressobj(-15)
    total, pending = 0, data
    try:
        while True:
            out = inflater.decompress(pending, _INFLATE_CHUNK)
            pending = inflater.unconsumed_tail
            total += len(out)
            if total > limit:
                raise HostileMessage(f"Avro deflate block inflates beyond {limit} bytes")
            yield out
            if not pending and len(out) < _INFLATE_CHUNK:
                break
        rest = inflater.flush()
    except zlib.error as exc:
        raise MalformedMessage(f"corrupt deflate block in Avro container: {exc}") from exc
    if total + len(rest) > limit:
        raise HostileMessage(f"Avro deflate block inflates beyond {limit} bytes")
    yield rest


def _check_inflation(data: bytes, limit: int) -> None:
    """Refuse a deflate block that inflates past *limit* [bytes], holding one chunk at a time."""
    for _ in _inflate_chunks(data, limit):
        pass


def _bounded_inflate(data: bytes, limit: int) -> bytearray:
    """A raw-deflate block inflated whole (at most *limit* bytes), grown in place."""
    out = bytearray()
    for chunk in _inflate_chunks(data, limit):
        out += chunk
    return out


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
            f"corrupt Avro container header: {type(exc).__name__}: {escaped(str(exc))}"
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


def _blocks(raw: bytes, pos: int) -> Iterator[tuple[int, int, int]]:
    """(record count, data start, data end) of each block from *pos*, sizes checked."""
    n_blocks = 0
    while pos < len(raw):
        count, pos = read_long(raw, pos)
        size, pos = read_long(raw, pos)
        n_blocks += 1
        if count < 0 or size < 0:
            raise MalformedMessage(f"Avro block {n_blocks} has a negative count or size")
        if pos + size + _SYNC_SIZE > len(raw):
            raise MalformedMessage(
                f"Avro block {n_blocks} is truncated: it declares {size} bytes, "
                f"{max(len(raw) - pos - _SYNC_SIZE, 0)} are present"
            )
        yield count, pos, pos + size
        pos += size + _SYNC_SIZE


def _layout(raw: bytes, *, max_bytes: int, max_records: int, max_block_bytes: int) -> _Layout:
    """Open a container and walk its blocks (counts, sizes, sync, inflation) before any record."""
    stream, reader = _open(raw, max_bytes)
    codec = str(reader.codec)
    if codec not in ("null", "deflate"):
        # ZTF and every broker file seen so far use "null"; other codecs need
        # optional libraries and their own decompression-bomb guards.
        raise MalformedMessage(f"Avro codec {shown(codec)} is not supported "
                               "(only null and deflate)")
    check_no_zero_width_arrays(reader.writer_schema)
    start = stream.tell()
    sync = raw[start - _SYNC_SIZE : start]
    n_records = 0
    for n, (count, begin, end) in enumerate(_blocks(raw, start), 1):
        if codec == "deflate":
            _check_inflation(raw[begin:end], max_block_bytes)
        if raw[end : end + _SYNC_SIZE] != sync:
            raise MalformedMessage(f"Avro block {n} ends without the sync marker")
        n_records += count
        # Every real block holds a record: more blocks than the cap is the cap exceeded too.
        if n_records > max_records or n > max_records:
            raise HostileMessage(f"Avro container holds more than {max_records} records "
                                 "(the cap per file)")
    schema_json = reader.metadata.get("avro.schema", "")
    return _Layout(reader, codec, str(schema_json), sync, start, n_records)


def _block_data(raw: bytes, layout: _Layout, begin: int, end: int, walk: Walker,
                limits: Limits, max_block_bytes: int) -> tuple[bytes | bytearray, int, int]:
    """The bytes of one block and where its records lie in them (inflated if deflated).

    A deflated block's first chunk is walked before the rest is inflated: an array
    over its cap near the start (a packet of a million history entries) is refused
    without holding the whole block inflated.
    """
    if layout.codec == "null":
        return raw, begin, end
    head = next(_inflate_chunks(raw[begin:end], max_block_bytes))
    with contextlib.suppress(MalformedMessage):  # past the first chunk: judged on the whole
        walk.record_end(head, 0, limits)
    data = _bounded_inflate(raw[begin:end], max_block_bytes)
    return data, 0, len(data)


def _records(raw: bytes, layout: _Layout, *, max_items: int,
             max_block_bytes: int) -> Iterator[tuple[int, bytes | bytearray, int, int]]:
    """(index, block data, start, end) of each record, found by walking it (caps checked)."""
    walk = walker(layout.schema_json)
    limits = Limits(per_array=max_items)
    index = 0
    for count, begin, end in _blocks(raw, layout.data_start):
        try:
            data, pos, stop = _block_data(raw, layout, begin, end, walk, limits, max_block_bytes)
        except HostileMessage as exc:
            raise HostileMessage(f"record {index}: {exc}") from exc
        for _ in range(count):
            try:
                after = walk.record_end(data, pos, limits)
            except BadMessage as exc:
                raise type(exc)(f"record {index}: {exc}") from exc
            if after > stop:
                raise MalformedMessage(f"record {index}: Avro record runs past its block")
            yield index, data, pos, after
            index += 1
            pos = after
        if pos != stop:
            raise MalformedMessage(f"Avro block ending at byte {end} holds {stop - pos} bytes "
                                   "after its declared records")


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
        raise MalformedMessage(f"corrupt Avro record: {type(exc).__name__}: "
                               f"{escaped(str(exc))}") from exc
    if n != n_records:
        raise MalformedMessage(f"Avro blocks declare {n_records} records, {n} decoded")


def read_container(
    raw: bytes,
    *,
    max_bytes: int,
    max_records: int,
    max_block_bytes: int = MAX_BLOCK_BYTES,
    max_items: int = MAX_ARRAY_ITEMS,
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
    max_items : int
        Most items one array of a record may hold; checked from the array's
        block counts by walking the record before fastavro decodes it
        (:mod:`mma.formats.avro_walk`).

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
    layout = _layout(raw, max_bytes=max_bytes, max_records=max_records,
                     max_block_bytes=max_block_bytes)
    for _ in _records(raw, layout, max_items=max_items, max_block_bytes=max_block_bytes):
        pass
    records = list(_iter_records(layout.reader, layout.n_records))
    return Container(schema=layout.reader.writer_schema, records=records, codec=layout.codec)


def _header(schema_json: str, sync: bytes) -> bytes:
    """An uncompressed container's header carrying *schema_json* and *sync*."""
    meta = [(b"avro.schema", schema_json.encode()), (b"avro.codec", b"null")]
    body = b"".join(write_long(len(k)) + k + write_long(len(v)) + v for k, v in meta)
    return AVRO_MAGIC + write_long(len(meta)) + body + write_long(0) + sync


def split_container(raw: bytes, *, max_bytes: int, max_records: int,
                    max_items: int = MAX_ARRAY_ITEMS) -> Iterator[bytes]:
    """Yield one single-record container per record of the container *raw*.

    The block structure is checked (and the record count capped) before the
    first record is yielded. Records are then cut out by walking their bytes
    (:mod:`mma.formats.avro_walk`), never decoded: each payload is the record's
    own bytes behind an uncompressed header with the same schema, so a large
    file is never held decoded in memory and ``parse`` sees what a Kafka
    message would carry. A record over *max_items* stops the split with a
    :class:`~mma.errors.HostileMessage` naming the record: its end cannot be
    found without walking what the cap refuses.
    """
    layout = _layout(raw, max_bytes=max_bytes, max_records=max_records,
                     max_block_bytes=MAX_BLOCK_BYTES)
    header = _header(layout.schema_json, layout.sync)
    for _, data, start, end in _records(raw, layout, max_items=max_items,
                                        max_block_bytes=MAX_BLOCK_BYTES):
        yield b"".join((header, write_long(1), write_long(end - start), data[start:end],
                        layout.sync))
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
        raise MalformedMessage(f"corrupt Avro record: {type(exc).__name__}: "
                               f"{escaped(str(exc))}") from exc
    if stream.tell() != len(raw):
        raise MalformedMessage(f"{len(raw) - stream.tell()} bytes left after the Avro record")
    if not isinstance(record, dict):
        raise MalformedMessage("Avro payload is not a record")
    return record


CUTOUT_FIELDS = {"cutoutScience": "science", "cutoutTemplate": "template",
                 "cutoutDifference": "difference"}
"""Alert packet field (ZTF and Rubin alike) → stamp kind, the keys of ``Alert.cutouts``."""


def cutouts_of(record: Mapping[str, Any]) -> dict[str, tuple[str, bytes]]:
    """The image stamps a decoded alert packet carries: kind → (format, bytes), unparsed.

    A ``cutout*`` field is null, the FITS bytes (Rubin) or a record
    ``{fileName, stampData}`` (ZTF); empty and ill-typed ones are left out. The
    format is ``fits.gz`` when the bytes start with the gzip magic ``1f 8b``
    (ZTF), else ``fits`` (Rubin): from the bytes, not from ``fileName``.
    """
    out: dict[str, tuple[str, bytes]] = {}
    for name, kind in CUTOUT_FIELDS.items():
        data = record.get(name)
        if isinstance(data, Mapping):
            data = data.get("stampData")
        if isinstance(data, bytes) and data:
            out[kind] = ("fits.gz" if data[:2] == b"\x1f\x8b" else "fits", data)
    return out
