"""A stream at volume for the crash and scale-out tests: real O4 notices, ~5,000 ZTF packets.

* Notices: the 17 real LVK PRELIMINARY notices of January 2024 in the corpus
  (``gcn-json/igwn-gwalert/O4-2024-01``; S240114aj and S240115f each get a second map
  that supersedes the first), and a retraction of S240114b made from the corpus's real
  RETRACTION notice with that superevent's id and a creation time six hours after its
  preliminary.
* Alerts: ZTF-like packets (the bundled sample's schema, ``scripts/make_samples.py``) of
  1,200 objects uniform over the sky north of -30 deg, first seen between one day
  before the first event and three days after the last, then seen again 1-6 times at
  intervals of 0.3-1.5 days (~5,400 packets), a tenth already active 20-60 days before
  (pre_existing), one in eight failing vetting. The events' maps are large
  (2,000-16,500 deg2 at 90 %), so most packets land in several regions at once.

The O4 windows closed long ago by the wall clock that ``mma run``'s expiry job reads:
:data:`WINDOW_ENV` widens the GW windows so that the regions stay active while the test
runs, for the daemons and for the reference replay alike.
"""

from __future__ import annotations

import importlib.util
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import fastavro
import numpy as np

from tests.conftest import CORPUS

O4 = CORPUS / "gcn-json" / "igwn-gwalert" / "O4-2024-01"
RETRACTION = CORPUS / "gcn-json" / "igwn-gwalert" / "MS230425k-retraction.json"
RETRACTED = "S240114b"
ROOT = Path(__file__).resolve().parents[1]
WINDOW_ENV = {"MMA_WINDOWS__GW_CBC": "[-1, 1500]", "MMA_WINDOWS__GW_BURST": "[-1, 1500]"}


def _samples() -> ModuleType:
    """The repository's sample maker (its ZTF schema and packet builder)."""
    spec = importlib.util.spec_from_file_location("make_samples",
                                                  ROOT / "scripts" / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notices() -> list[bytes]:
    """The notices in the order GCN sent them (``time_created``)."""
    docs = [json.loads(p.read_bytes()) for p in sorted(O4.glob("*.json"))]
    raw = [p.read_bytes() for p in sorted(O4.glob("*.json"))]
    prelim = next(d for d in docs if d["superevent_id"] == RETRACTED)
    retraction = json.loads(RETRACTION.read_bytes())
    created = datetime.fromisoformat(prelim["time_created"].replace("Z", "+00:00"))
    retraction.update(superevent_id=RETRACTED,
                      time_created=(created + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                      urls={"gracedb": f"https://gracedb.ligo.org/superevents/{RETRACTED}/view/"})
    raw.append(json.dumps(retraction).encode())
    docs.append(retraction)
    order = sorted(range(len(docs)), key=lambda i: (docs[i]["time_created"], i))
    return [raw[i] for i in order]


def alert_packets(n_objects: int = 700, seed: int = 13) -> list[tuple[bytes, bytes]]:
    """(objectId, one-record Avro container) per packet, in detection-time order."""
    samples = _samples()
    rng = np.random.default_rng(seed)
    maker = samples.AlertMaker()
    start = datetime(2024, 1, 11, tzinfo=UTC)
    for _ in range(n_objects):
        ra = float(rng.uniform(0, 360))
        dec = float(np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-30)), 1))))
        first = start + timedelta(days=float(rng.uniform(0, 8)))
        seen = first - timedelta(days=float(rng.uniform(20, 60))) if rng.random() < 0.1 \
            else first
        bogus = rng.random() < 0.125
        rb = float(rng.uniform(0.05, 0.3)) if bogus else 0.9
        # No stamps: they would make the packets ten times larger and the stream
        # tests slower, and cutouts have tests of their own.
        obj = maker.add(ra, dec, first, first=seen, rb=rb, stamps=False)
        when = first
        for _ in range(int(rng.integers(4, 11))):
            when += timedelta(days=float(rng.uniform(0.3, 1.5)))
            maker.add(ra + float(rng.normal(0, 2e-4)), dec + float(rng.normal(0, 2e-4)),
                      when, first=seen, rb=rb, obj=obj, stamps=False)
    maker.packets.sort(key=lambda p: p["candidate"]["jd"])
    schema = fastavro.parse_schema(samples.ZTF_SCHEMA)
    out = []
    for packet in maker.packets:
        buf = io.BytesIO()
        fastavro.writer(buf, schema, [packet])
        out.append((packet["objectId"].encode(), buf.getvalue()))
    return out


def write_replay_dir(folder: Path, notice_list: list[bytes],
                     packets: list[tuple[bytes, bytes]]) -> Path:
    """The same stream as files for ``mma replay``: notices as JSON, alerts as one Avro file."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(notice_list):
        (folder / f"notice-{i:02d}.json").write_bytes(raw)
    records = [next(iter(fastavro.reader(io.BytesIO(p)))) for _k, p in packets]
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(_samples().ZTF_SCHEMA), records,
                    codec="deflate")
    (folder / "alerts.avro").write_bytes(buf.getvalue())
    return folder
