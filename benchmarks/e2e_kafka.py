"""End to end: Rubin alerts through a real Kafka broker into ``mma run`` on PostgreSQL.

Starts its own broker and PostgreSQL (``tests.services``), stopped at the end.

* Alerts: the real LSSTCam v9.0 frame of the corpus (cutouts kept, ~139 KB: larger than
  the ~80 KB of DMTN-102), re-encoded with positions uniform on the sky and unique
  ``diaSourceId``; N of them (``python benchmarks/e2e_kafka.py [N]``, default 3,000) on a
  4-partition topic, keyed by id.
* 10 active LVK-like regions: LVK notices built like ``scripts/make_samples.py``
  (``gw_notice`` + ``skymap_fits``, one or two Fisher lobes of 4-15 deg), t0 half a day
  before the alerts.

Measures (a) a plain confluent_kafka consumer reading the topic (transport ceiling), then
``mma run`` with (b) 1 process and (c) 2 processes sharing one consumer group and one
PostgreSQL database (a fresh database per case): sustained alerts/s and MB/s over the
backlog (first to last ``alerts.received_at``), then, once caught up, a burst of 200
alerts produced at once at the regions' lobe centres; latency = output message
timestamp - alert message timestamp, p50/p99 over the burst's coincidences. The outbox is
drained every 0.5 s (``daemon.deliver_interval_seconds``), which bounds the latency from
below. Targets: >= 50 % of (a) and >= 5,000 alerts/s per process.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from make_samples import gw_notice, skymap_fits  # noqa: E402

from mma.db.engine import make_engine  # noqa: E402
from mma.db.schema import alerts, coincidences  # noqa: E402
from mma.formats import rubin as schemas  # noqa: E402
from mma.handlers import rubin  # noqa: E402
from tests.services.kafka import kafka_from_env  # noqa: E402
from tests.services.postgres import postgres_from_env  # noqa: E402

FRAME = ROOT.parent / "shared/corpus/alerts/rubin/avro/lsst_v9_0_7912941781254298.confluent.avro"
MMA = str(Path(sys.executable).with_name("mma"))
PARTITIONS = 4
N_REGIONS = 10
BURST = 200
TARGET_RATE = 5_000


class Frames:
    """Re-encodes the corpus frame at given positions with unique ids."""

    def __init__(self) -> None:
        raw = FRAME.read_bytes()
        self.schema_id = struct.unpack(">bi", raw[:5])[1]
        self.schema = schemas.load(self.schema_id).parsed
        self.record = rubin.decode_full(raw)
        self.t_unix = (self.record["diaSource"]["midpointMjdTai"] - 40587.0) * 86400.0 - 37

    def make(self, source_id: int, ra: float, dec: float) -> bytes:
        rec = self.record
        rec["diaSource"]["ra"], rec["diaSource"]["dec"] = ra, dec
        rec["diaSource"]["diaSourceId"] = rec["diaSourceId"] = source_id
        buf = io.BytesIO()
        buf.write(struct.pack(">bi", 0, self.schema_id))
        fastavro.schemaless_writer(buf, self.schema, rec)
        return buf.getvalue()


def notices(rng: np.random.Generator, t_alerts: float) -> tuple[list[bytes], list[tuple]]:
    """N_REGIONS LVK notices (t0 half a day before the alerts); returns them and the lobes."""
    t0 = datetime.fromtimestamp(t_alerts, UTC) - timedelta(hours=12)
    out, centres = [], []
    for k in range(N_REGIONS):
        lobes = [(float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1)))),
                  float(rng.uniform(4, 15)), float(rng.uniform(0.3, 1.0)))
                 for _ in range(int(rng.integers(1, 3)))]
        centres += [(ra, dec) for ra, dec, _s, _w in lobes]
        sid = f"S251011{chr(97 + k)}{chr(97 + k)}"
        fits = skymap_fits(lobes, 120.0, 30.0, sid)
        out.append(json.dumps(gw_notice(sid, "PRELIMINARY", t0, t0 + timedelta(minutes=5),
                                        fits)).encode())
    return out, centres


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]],
            compression: str = "none") -> dict[bytes, int]:
    """Produce; returns key -> message timestamp [ms] (set here, CreateTime)."""
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": compression,
                         "message.max.bytes": 10_000_000, "linger.ms": 5,
                         "queue.buffering.max.kbytes": 1_000_000})
    stamps = {}
    for key, value in messages:
        ms = int(time.time() * 1000)
        while True:
            try:
                producer.produce(topic, value, key=key, timestamp=ms)
                break
            except BufferError:
                producer.poll(0.1)
        if key is not None:
            stamps[key] = ms
    assert producer.flush(60) == 0
    return stamps


def plain_consumer(bootstrap: str, topic: str, n: int) -> tuple[float, float]:
    """(seconds from first to last message, bytes) of a plain consumer reading *n*."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got, size, first = 0, 0, 0.0
    while got < n:
        for msg in consumer.consume(500, 1.0):
            if msg.error() is None:
                if not got:
                    first = time.perf_counter()
                got += 1
                size += len(msg.value() or b"")
    span = time.perf_counter() - first
    consumer.close()
    return span, size


def run_daemons(n_proc: int, env: dict[str, str], url: str, bootstrap: str, t_alerts: str,
                t_out: str, n: int, frames: Frames, centres: list[tuple], tmp: Path
                ) -> dict[str, Any]:
    group = f"g-{uuid.uuid4().hex[:8]}"
    procs = [subprocess.Popen(
        [MMA, "run", "--idle-exit", "4"], stdout=subprocess.DEVNULL,
        stderr=(tmp / f"{group}-{i}.log").open("w"),
        env={**env, "MMA_DATABASE__URL": url, "MMA_KAFKA__GROUP_ID": group,
             "MMA_KAFKA__INSTANCE": f"{group}-{i}", "MMA_CHANNELS__KAFKA__TOPIC": t_out})
        for i in range(n_proc)]
    engine = make_engine(url)

    def count() -> int:
        try:
            with engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(alerts)).scalar_one())
        except Exception:  # the schema is not created yet
            return 0

    started = time.monotonic()
    while count() < n and all(p.poll() is None for p in procs) \
            and time.monotonic() - started < 150:
        time.sleep(0.2)
    with engine.connect() as conn:
        lo, hi = conn.execute(select(func.min(alerts.c.received_at),
                                     func.max(alerts.c.received_at))).one()
    span = (hi - lo).total_seconds()
    backlog = count()  # n, plus the bursts of earlier cases (same topic)
    # Caught up: a burst at the lobe centres, all produced at once.
    base = 2 * 10**15 + (10**6 if n_proc == 2 else 0)
    burst = [(str(base + i).encode(), frames.make(base + i, *centres[i % len(centres)]))
             for i in range(BURST)]
    stamps = produce(bootstrap, t_alerts, burst)
    codes = [p.wait(timeout=120) for p in procs]
    with engine.connect() as conn:
        rows = conn.execute(select(coincidences.c.coincidence_id, alerts.c.alert_id)
                            .join(alerts, alerts.c.id == coincidences.c.alert_pk)).all()
        stored = conn.execute(select(func.count()).select_from(alerts)).scalar_one()
    engine.dispose()
    alert_of = {cid: re.sub(r"\D", "", aid) for cid, aid in rows}
    latencies = []
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([t_out])
    idle = 0
    while idle < 3:
        msg = consumer.poll(1.0)
        if msg is None or msg.error() is not None:
            idle += 1
            continue
        key = alert_of.get((msg.key() or b"").decode(), "").encode()
        if key in stamps:
            latencies.append(msg.timestamp()[1] - stamps[key])
    consumer.close()
    return {"codes": codes, "span": span, "backlog": backlog, "stored": stored,
            "latencies": latencies,
            "logs": [(tmp / f"{group}-{i}.log").read_text() for i in range(n_proc)]}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3_000
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"e2e-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    rng = np.random.default_rng(11)
    t = time.perf_counter()
    frames = Frames()
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    data = [(str(10**15 + i).encode(), frames.make(10**15 + i, float(ra[i]), float(dec[i])))
            for i in range(n)]
    size = sum(len(v) for _k, v in data)
    notice_bytes, centres = notices(rng, frames.t_unix)
    print(f"{n} Rubin frames ({size / 2**20:.0f} MB, {size / n / 1000:.0f} KB each), "
          f"{N_REGIONS} LVK notices made in {time.perf_counter() - t:.1f} s")
    kafka = postgres = None
    try:
        kafka = kafka_from_env()
        postgres = postgres_from_env()
        bootstrap = kafka.bootstrap_servers
        stem = uuid.uuid4().hex[:8]
        t_notices, t_alerts = f"gcn-lvk-{stem}", f"lsst-alerts-{stem}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = {t_notices: 1, t_alerts: PARTITIONS, f"out1-{stem}": 1, f"out2-{stem}": 1}
        for future in admin.create_topics([NewTopic(k, v, 1)
                                           for k, v in topics.items()]).values():
            future.result(timeout=30)
        produce(bootstrap, t_notices, [(None, b) for b in notice_bytes], "gzip")
        t = time.perf_counter()
        produce(bootstrap, t_alerts, data)
        print(f"produced in {time.perf_counter() - t:.1f} s")

        span, got = plain_consumer(bootstrap, t_alerts, n)
        rate_a, mbs_a = n / span, got / span / 2**20
        print(f"(a) plain consumer: {rate_a:10,.0f} alerts/s {mbs_a:8.1f} MB/s")

        env = {**os.environ, "MMA_LOGGING__LEVEL": "WARNING",
               "MMA_PATHS__STATE_DIR": str(tmp), "MMA_PATHS__CACHE_DIR": str(tmp),
               "MMA_KAFKA__GCN_BOOTSTRAP_SERVERS": bootstrap,
               "MMA_KAFKA__ALERT_BOOTSTRAP_SERVERS": bootstrap,
               "MMA_KAFKA__POLL_TIMEOUT_SECONDS": "0.2",
               "MMA_KAFKA__NOTICE_TOPICS": json.dumps([f"lvk:{t_notices}"]),
               "MMA_KAFKA__ALERT_TOPICS": json.dumps([f"rubin:{t_alerts}"]),
               "MMA_DAEMON__DELIVER_INTERVAL_SECONDS": "0.5",
               "MMA_CHANNELS__KAFKA__ENABLED": "true",
               "MMA_CHANNELS__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
               "MMA_SKYMAPS__FETCH": "false"}
        unmet = []
        for case, n_proc in (("b", 1), ("c", 2)):
            result = run_daemons(n_proc, env, postgres.create_database(), bootstrap, t_alerts,
                                 f"out{n_proc}-{stem}", n, frames, centres, tmp)
            rate = result["backlog"] / result["span"] if result["span"] > 0 else float("nan")
            lat = np.array(result["latencies"], dtype=float)
            p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if len(lat) else (
                float("nan"), float("nan"))
            print(f"({case}) mma run x{n_proc}: {rate:10,.0f} alerts/s "
                  f"{rate * size / n / 2**20:8.1f} MB/s  = {rate / rate_a:6.1%} of (a); "
                  f"{rate / n_proc:,.0f} alerts/s per process; exit {result['codes']}, "
                  f"{result['stored']} alerts stored (expected {n + BURST * n_proc}); "
                  "burst latency "
                  f"p50 {p50 / 1000:.2f} s p99 {p99 / 1000:.2f} s over {len(lat)} "
                  "coincidences")
            for log in result["logs"]:
                errors = [x for x in log.splitlines() if "ERROR" in x or "Traceback" in x]
                if errors:
                    print(f"    daemon log: {len(errors)} error lines, e.g. {errors[0][:300]}")
            if rate < 0.5 * rate_a:
                unmet.append(f"({case}) {rate / rate_a:.1%} of the plain consumer (< 50 %)")
            if rate / n_proc < TARGET_RATE:
                unmet.append(f"({case}) {rate / n_proc:,.0f} alerts/s per process (< 5,000)")
        for line in unmet:
            print(f"TARGET NOT MET: {line}")
        if not unmet:
            print("targets met")
    finally:
        if postgres is not None:
            postgres.cleanup()
        if kafka is not None:
            kafka.cleanup()


if __name__ == "__main__":
    main()
