"""Real-size ZTF alerts in any number: the corpus packets with new identities.

Each copy is a corpus alert (cutouts, history and all, ~65 kB) whose
``objectId`` and ``candid`` are rewritten in place: the id keeps its length and
the candid its varint length, so the bytes stay a valid Avro container without
a decode and re-encode. Used where a test or benchmark needs volume, e.g. the
memory of ``mma replay`` over 100k files.
"""

from __future__ import annotations

import io
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro

from mma.formats.avro_walk import write_long as zigzag
from tests.conftest import CORPUS

ZTF_AVRO = CORPUS / "alerts/ztf/avro"


def _object_id(year: int, serial: int) -> str:
    letters = []
    for _ in range(7):
        serial, digit = divmod(serial, 26)
        letters.append(string.ascii_lowercase[digit])
    return f"ZTF{year:02d}{''.join(reversed(letters))}"


def templates() -> list[tuple[bytes, str, int]]:
    """The corpus packets with their objectId and candid."""
    out = []
    for path in sorted(ZTF_AVRO.glob("ZTF*.avro")):  # not the schema prototype
        raw = path.read_bytes()
        record: Any = next(iter(fastavro.reader(io.BytesIO(raw))))
        out.append((raw, record["objectId"], record["candid"]))
    return out


def copies(n: int, *, start: int = 0) -> Iterator[tuple[str, bytes]]:
    """*n* distinct alerts as ``(file name, bytes)``; serials from *start*."""
    base = templates()
    for i in range(start, start + n):
        raw, object_id, candid = base[i % len(base)]
        new_id = _object_id(int(object_id[3:5]), i)
        new_candid = candid + 1 + i  # same bit length, hence the same varint length
        old, new = zigzag(candid), zigzag(new_candid)
        assert len(old) == len(new) and raw.count(object_id.encode()) == 1
        data = raw.replace(object_id.encode(), new_id.encode()).replace(old, new)
        yield f"{new_id}_{new_candid}.avro", data


def write_copies(folder: Path, n: int) -> int:
    """Write *n* copies into *folder*; return the bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, data in copies(n):
        (folder / name).write_bytes(data)
        total += len(data)
    return total
