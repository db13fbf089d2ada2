"""Alert decoding throughput on one core: full fastavro decode vs leading-fields decode.

Prints alerts/s and ratios against the full decode measured in the same run:

* ZTF: ``fastavro.reader`` on the one-record container (full) vs the same with a
  reader schema keeping only ``objectId``, ``candid`` and ``candidate``.
* Rubin (Confluent frame, real LSSTCam v9.0 alert and v11.0 sample with history):
  ``fastavro.schemaless_reader`` (full) vs the compiled prefix decoder (fields up
  to ``diaSource``; :mod:`mma.formats.rubin`) vs ``rubin.parse`` (prefix + tail
  walk + Alert), what ingest actually runs.

Run: ``python benchmarks/alert_decode.py [seconds per case]``.
"""

from __future__ import annotations

import io
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

import fastavro

from mma.formats import rubin as schemas
from mma.handlers import rubin

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "alerts"


def rate(func: Callable[[], object], seconds: float) -> float:
    """Calls per second of *func* over about *seconds*."""
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            func()
        n += 50
    return n / elapsed


def rubin_frame(path: Path, schema_id: int) -> bytes:
    if path.suffix == ".avro" and path.read_bytes()[:4] != b"Obj\x01":
        return path.read_bytes()
    with path.open("rb") as f:
        record = next(iter(fastavro.reader(f)))
    out = io.BytesIO(struct.pack(">bi", 0, schema_id))
    out.seek(5)
    fastavro.schemaless_writer(out, schemas.load(schema_id).parsed, record)
    return out.getvalue()


def main(seconds: float) -> None:
    ztf = (CORPUS / "ztf/avro/ZTF18abudxnw_2695378462115010012.avro").read_bytes()
    keep = {"objectId", "candid", "candidate"}
    writer = fastavro.reader(io.BytesIO(ztf)).writer_schema
    reader = {**writer, "fields": [f for f in writer["fields"] if f["name"] in keep]}
    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [(
        "ZTF 4.02 container (72 kB)",
        lambda: list(fastavro.reader(io.BytesIO(ztf))),
        lambda: list(fastavro.reader(io.BytesIO(ztf), reader)),
    )]
    for label, path, sid in (
        ("Rubin v9.0 LSSTCam (139 kB, no history)",
         CORPUS / "rubin/avro/lsst_v9_0_7912941781254298.confluent.avro", 900),
        ("Rubin v11.0 sample (41 kB, 2 prvDiaSources)",
         CORPUS / "rubin/schema/v11_0/fakeAlert.avro", 1100),
    ):
        raw = rubin_frame(path, sid)
        schema = schemas.load(sid)
        cases.append((label, lambda raw=raw, s=schema: s.decode_full(raw, 5, max_bytes=2**24),
                      lambda raw=raw, s=schema: s.prefix.decode(raw, 5)))
        cases.append((label + " parse()",
                      lambda raw=raw, s=schema: s.decode_full(raw, 5, max_bytes=2**24),
                      lambda raw=raw: rubin.parse(raw, topic="")))
    print(f"{'case':55s} {'full/s':>10s} {'fast/s':>10s} {'ratio':>7s}")
    for label, full, fast in cases:
        r_full, r_fast = rate(full, seconds), rate(fast, seconds)
        print(f"{label:55s} {r_full:10.0f} {r_fast:10.0f} {r_fast / r_full:7.1f}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
