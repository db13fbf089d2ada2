"""Walk Avro binary by its writer schema without decoding it: record ends and array sizes.

fastavro decodes a record whole, so an array of a million items becomes a
million dicts before anyone can count them: one ZTF packet of 217 KiB (a
deflate block of a million identical ``prv_candidates``) took 2.2 GB and a
minute. A :class:`Walker` steps over the same bytes by their writer schema,
building nothing, and reads each array's block counts as it meets them: an
array longer than :attr:`Limits.per_array`, or a record whose arrays and maps
together hold more than :attr:`Limits.per_record` items, is refused with a
:class:`~mma.errors.HostileMessage` before its items are walked, let alone
decoded. The walk also finds where each record ends, which is how
:func:`mma.formats.avro.split_container` cuts a container into one-record
containers without decoding and re-encoding every record.

The walker is built from the sender's schema as a tree of closures, never as
generated code: no sender-controlled text reaches ``exec``. A schema with an
array of zero-width items (``null``) is refused outright
(:func:`check_no_zero_width_arrays`): its items would cost no input bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import fastavro

from mma.errors import HostileMessage, MalformedMessage
from mma.formats.ids import escaped, shown

__all__ = [
    "MAX_ARRAY_ITEMS", "MAX_RECORD_ITEMS", "Limits", "Walker", "check_no_zero_width_arrays",
    "read_long", "walker", "write_long",
]

MAX_ARRAY_ITEMS = 10_000
"""Most items one array of one record may hold. The longest real arrays are
histories: 30 days of ZTF ``prv_candidates`` reach 1,500 entries (the largest
in the Fink night of 2024-01-15), a year of Rubin ``prvDiaSources`` a few
thousand in a deep-drilling field. Decoded by fastavro, 10,000 items of a
57-field ZTF record take about 50 MB."""

MAX_RECORD_ITEMS = 20_000
"""Most array and map items one record may hold in all (a ZTF packet has two
history arrays; this bounds a schema with many)."""

_FIXED_WIDTH = {"null": 0, "boolean": 1, "float": 4, "double": 8}
# Types whose encoding can take zero bytes. An array of them lets a 10-byte
# block header declare 2**62 items that cost no input: a CPU bomb.
_ZERO_WIDTH_PRIMITIVES = {"null"}
_NONZERO_PRIMITIVES = {"boolean", "int", "long", "float", "double", "bytes", "string"}


@dataclass
class Limits:
    """The item caps of one walk, and what is left of the per-record one.

    Attributes
    ----------
    per_array : int
        Most items one array (or map) may hold.
    per_record : int
        Most items all arrays and maps of one record may hold together.
    left : int
        Items still allowed in the record being walked (reset per record).
    """

    per_array: int = MAX_ARRAY_ITEMS
    per_record: int = MAX_RECORD_ITEMS
    left: int = MAX_RECORD_ITEMS


# A step: (buffer, position, limits) -> position after the value. Simple values are
# codes the record loop applies inline, without a call (most ZTF fields are
# ["null", float]): an int >= 0 is a fixed width [bytes], VARINT an int or long,
# SIZED a string or bytes, and a tuple of those a union of simple branches.
Buffer = bytes | bytearray  # a null-codec container's bytes, or an inflated block
Step = Callable[[Buffer, int, "Limits"], int]
Code = Step | int | tuple[int, ...]
VARINT, SIZED = -1, -2


def read_long(buf: Buffer, pos: int) -> tuple[int, int]:
    """Decode one zig-zag varint (Avro ``long``) at *pos*; return (value, new position)."""
    shift = acc = 0
    for i in range(10):
        if pos + i >= len(buf):
            raise MalformedMessage("Avro data truncated inside a number")
        byte = buf[pos + i]
        acc |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (acc >> 1) ^ -(acc & 1), pos + i + 1
        shift += 7
    raise MalformedMessage("Avro varint longer than 10 bytes")


def write_long(value: int) -> bytes:
    """Encode *value* as a zig-zag varint (Avro ``long``)."""
    acc = (value << 1) ^ (value >> 63)
    out = bytearray()
    while acc > 0x7F:
        out.append((acc & 0x7F) | 0x80)
        acc >>= 7
    out.append(acc)
    return bytes(out)


def _skip(code: int, buf: Buffer, pos: int) -> int:
    """Position after one simple value of *code* (fixed width, VARINT or SIZED)."""
    if code >= 0:
        return pos + code
    if code == VARINT:
        while buf[pos] & 0x80:  # IndexError past the end: the caller reports truncation
            pos += 1
        return pos + 1
    size = buf[pos]
    if size < 0x80:  # a one-byte length: nearly every string
        if size & 1:
            raise MalformedMessage("negative Avro string or bytes length")
        return pos + 1 + (size >> 1)
    size, pos = read_long(buf, pos)
    if size < 0:
        raise MalformedMessage(f"negative Avro string or bytes length {size}")
    return pos + size


def _branch(buf: Buffer, pos: int, count: int) -> int:
    index = buf[pos]
    if index & 0x81 or index >> 1 >= count:  # negative, multi-byte or out of range
        raise MalformedMessage(f"bad Avro union branch byte {index}")
    return index >> 1


def _apply(code: Code, buf: Buffer, pos: int, limits: Limits) -> int:
    """Position after one value of any *code*."""
    if type(code) is int:
        return _skip(code, buf, pos)
    if type(code) is tuple:
        return _skip(code[_branch(buf, pos, len(code))], buf, pos + 1)
    return code(buf, pos, limits)  # type: ignore[operator]


def _union(branches: list[Code]) -> Code:
    if all(type(b) is int for b in branches):
        return tuple(branches)  # type: ignore[arg-type]

    def step(buf: Buffer, pos: int, limits: Limits) -> int:
        return _apply(branches[_branch(buf, pos, len(branches))], buf, pos + 1, limits)

    return step


def _merged(fields: list[Code]) -> list[Code]:
    """*fields* with adjacent fixed widths summed: one jump instead of several."""
    merged: list[Code] = []
    for code in fields:
        last = merged[-1] if merged else None
        if type(code) is int and code >= 0 and type(last) is int and last >= 0:
            merged[-1] = last + code
        else:
            merged.append(code)
    return merged


def _record(fields: list[Code]) -> Code:
    merged = _merged(fields)
    if not merged:
        return 0
    if len(merged) == 1 and type(merged[0]) is int:
        return merged[0]

    def step(buf: Buffer, pos: int, limits: Limits) -> int:
        # _apply inlined: this loop runs once per field of every history item.
        for code in merged:
            if type(code) is tuple:
                index = buf[pos]
                if index & 0x81 or index >> 1 >= len(code):
                    raise MalformedMessage(f"bad Avro union branch byte {index}")
                code = code[index >> 1]
                pos += 1
            elif type(code) is not int:
                pos = code(buf, pos, limits)  # type: ignore[operator]
                continue
            if code >= 0:
                pos += code
            elif code == VARINT:
                while buf[pos] & 0x80:
                    pos += 1
                pos += 1
            else:
                pos = _skip(SIZED, buf, pos)
        return pos

    return step


def _repeated(item: Code, path: str, keyed: bool) -> Step:
    """An array (or, *keyed*, a map): blocks of items, each count checked before its items."""

    def step(buf: Buffer, pos: int, limits: Limits) -> int:
        total = 0
        while True:
            count, pos = read_long(buf, pos)
            if count == 0:
                return pos
            if count < 0:  # a negative count is followed by the block's size [bytes]
                count = -count
                _, pos = read_long(buf, pos)
            total += count
            limits.left -= count
            if total > limits.per_array:
                raise HostileMessage(f"Avro {'map' if keyed else 'array'} {path} holds more "
                                     f"than {limits.per_array} items (the cap per array)")
            if limits.left < 0:
                raise HostileMessage(f"Avro record holds more than {limits.per_record} "
                                     f"array and map items (the cap per record), at {path}")
            for _ in range(count):
                if keyed:
                    pos = _skip(SIZED, buf, pos)
                pos = _apply(item, buf, pos, limits)

    return step


class _Compiler:
    """Turns a fastavro-parsed schema into steps; named types are compiled once."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.done: dict[str, Code] = {}

    def node(self, schema: Any, path: str) -> Code:
        if isinstance(schema, list):
            return _union([self.node(branch, path) for branch in schema])
        if isinstance(schema, str):
            return self.primitive(schema, path)
        if not isinstance(schema, Mapping):
            raise MalformedMessage(f"Avro schema node {shown(str(schema))} is not a type")
        kind = schema.get("type")
        if kind in ("record", "error"):
            return self.record(schema, path)
        if kind == "array":
            return _repeated(self.node(schema.get("items"), f"{path}[]"), path, keyed=False)
        if kind == "map":
            return _repeated(self.node(schema.get("values"), f"{path}{{}}"), path, keyed=True)
        if kind == "enum":
            return VARINT
        if kind == "fixed":
            size = schema.get("size")
            if not isinstance(size, int) or size < 0:
                raise MalformedMessage(f"Avro fixed type with size {shown(size)}")
            return size
        return self.node(kind, path)  # a primitive with attributes (logicalType...)

    def primitive(self, name: str, path: str) -> Code:
        if name in _FIXED_WIDTH:
            return _FIXED_WIDTH[name]
        if name in ("int", "long"):
            return VARINT
        if name in ("string", "bytes"):
            return SIZED
        if name in self.done:
            return self.done[name]
        if name not in self.named:
            raise MalformedMessage(f"Avro schema refers to unknown type {shown(name)}")
        cell: list[Code] = []

        def deferred(buf: Buffer, pos: int, limits: Limits) -> int:  # a type used inside itself
            return _apply(cell[0], buf, pos, limits)

        self.done[name] = deferred
        compiled = self.node(self.named[name], path)
        cell.append(compiled)
        self.done[name] = compiled
        return compiled

    def record(self, schema: Mapping[str, Any], path: str) -> Code:
        name = schema.get("name")
        if isinstance(name, str) and name in self.named and name not in self.done:
            return self.primitive(name, path)  # compiled once, under its name
        fields = schema.get("fields") or []
        return _record([self.node(f.get("type"), f"{path}.{f.get('name')}".lstrip("."))
                        for f in fields if isinstance(f, Mapping)])


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


def check_no_zero_width_arrays(schema: Any) -> None:
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


@dataclass(frozen=True)
class Walker:
    """Steps over records of one writer schema (:func:`walker` builds and caches them)."""

    step: Code

    def record_end(self, buf: Buffer, pos: int, limits: Limits) -> int:
        """Where the record starting at *pos* ends, checking the caps of *limits*.

        Raises
        ------
        HostileMessage
            An array over a cap, or nesting too deep for the stack.
        MalformedMessage
            The bytes end inside the record, or hold an impossible value.
        """
        limits.left = limits.per_record
        try:
            end = _apply(self.step, buf, pos, limits)
        except IndexError:
            raise MalformedMessage("Avro record truncated") from None
        except RecursionError:
            raise HostileMessage("Avro record nests too deeply to walk") from None
        if end > len(buf):
            raise MalformedMessage("Avro record truncated: a value runs past the end")
        return end


@lru_cache(maxsize=32)
def walker(schema_json: str) -> Walker:
    """The walker of a writer schema given as its JSON text (a container's ``avro.schema``).

    Cached by the text: every message of a stream carries the same schema.

    Raises
    ------
    MalformedMessage
        The schema is not valid JSON or not a valid Avro schema.
    """
    named: dict[str, Any] = {}
    try:
        parsed = fastavro.parse_schema(json.loads(schema_json), named_schemas=named)
    except Exception as exc:  # fastavro's schema errors are not a fixed set
        raise MalformedMessage(f"invalid Avro writer schema: {type(exc).__name__}: "
                               f"{escaped(str(exc))}") from exc
    try:
        return Walker(_Compiler(named).node(parsed, ""))
    except RecursionError:
        raise HostileMessage("Avro writer schema nests too deeply") from None
