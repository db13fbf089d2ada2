"""Two ``mma run`` processes sharing one alert consumer group and one PostgreSQL database.

The alert topic has 4 partitions; the ~600 sample ZTF alerts are keyed by objectId so
they spread over them. Both daemons consume every notice (a group per instance) and
split the alert partitions (the shared ``kafka.group_id``). Alerts are produced only
once both daemons hold a share of the partitions, so that both really work. Checks:
both exit 0, every alert stored exactly once, no dead letter, the live coincidences
equal a one-process ``mma replay`` of the sample, no coincidence or output message
duplicated, and each process's ``/metrics`` shows it stored some of the alerts (the
two counts add up to the sample).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import fastavro
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import func, select

from mma.db.engine import make_engine
from mma.db.schema import alerts, coincidences, dead_letters, notices
from mma.registry import Registry

SAMPLE = Path(__file__).parents[1] / "mma" / "data" / "sample"
MMA = str(Path(sys.executable).with_name("mma"))
PARTITIONS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _create_topics(bootstrap: str, spec: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, n, 1) for t, n in spec.items()])
    for future in futures.values():
        future.result(timeout=30)


def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": "gzip",
                         "message.max.bytes": 10_000_000, "linger.ms": 20})
    for key, value in messages:
        producer.produce(topic, value, key=key)
    assert producer.flush(30) == 0


def _drain(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    out = []
    idle = 0
    while idle < 4:
        msg = consumer.poll(1.0)
        if msg is None or msg.error() is not None:
            idle += 1
            continue
        out.append((msg.key(), msg.value()))
    consumer.close()
    return out


def _assigned(bootstrap: str, group: str, topic: str) -> list[int]:
    """Alert partitions held by each member of *group* (empty while it rebalances)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except Exception:  # the group does not exist yet
        return []
    return [sum(1 for tp in m.assignment.topic_partitions if tp.topic == topic)
            for m in desc.members]


def _metric(text: str, kind: str, topic: str) -> int:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("mma_messages_in_total{") and f'kind="{kind}"' in line \
                and f'source="{topic}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _live(url: str) -> set[str]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(coincidences)).all()
    engine.dispose()
    return {r.coincidence_id for r in rows if r.status != "retracted" and not r.vetoed}


def test_two_daemons_split_alerts_and_agree_with_one(tmp_path: Path, kafka_bootstrap: str,
                                                     postgres_url: str) -> None:
    stem = uuid.uuid4().hex[:8]
    t_notices, t_alerts, t_out = f"n-{stem}", f"a-{stem}", f"out-{stem}"
    group = f"g-{stem}"
    _create_topics(kafka_bootstrap, {t_notices: 1, t_alerts: PARTITIONS, t_out: 1})
    notice_files = sorted(SAMPLE.glob("*.json"),
                          key=lambda p: json.loads(p.read_text())["time_created"])
    _produce(kafka_bootstrap, t_notices, [(None, p.read_bytes()) for p in notice_files])
    avro = (SAMPLE / "ztf-sample-alerts.avro").read_bytes()
    packets = [payload for _h, payload in Registry().iter_file(avro, "sample")]
    with (SAMPLE / "ztf-sample-alerts.avro").open("rb") as f:
        object_ids = [str(r["objectId"]).encode()  # type: ignore[index, call-overload]
                      for r in fastavro.reader(f)]
    assert len(object_ids) == len(packets) > 500

    env = {**os.environ, "MMA_DATABASE__URL": postgres_url, "MMA_LOGGING__LEVEL": "WARNING",
           "MMA_KAFKA__GCN_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "MMA_KAFKA__ALERT_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "MMA_KAFKA__GROUP_ID": group, "MMA_KAFKA__POLL_TIMEOUT_SECONDS": "0.5",
           "MMA_KAFKA__NOTICE_TOPICS": json.dumps([f"lvk:{t_notices}"]),
           "MMA_KAFKA__ALERT_TOPICS": json.dumps([f"ztf:{t_alerts}"]),
           "MMA_DAEMON__DELIVER_INTERVAL_SECONDS": "1",
           "MMA_CHANNELS__KAFKA__ENABLED": "true",
           "MMA_CHANNELS__KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "MMA_CHANNELS__KAFKA__TOPIC": t_out, "MMA_SKYMAPS__FETCH": "false"}
    ports = [_free_port(), _free_port()]
    procs = []
    for i, port in enumerate(ports):
        (tmp_path / f"i{i}").mkdir()
        procs.append(subprocess.Popen(
            [MMA, "run", "--idle-exit", "8"], text=True, stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"i{i}" / "stderr.log").open("w"),
            env={**env, "MMA_KAFKA__INSTANCE": f"inst{i}-{stem}",
                 "MMA_PATHS__STATE_DIR": str(tmp_path / f"i{i}"),
                 "MMA_PATHS__CACHE_DIR": str(tmp_path / f"i{i}"),
                 "MMA_DAEMON__HEALTH_PORT": str(port)}))
    try:
        # Both daemons in the alert group, each with its share, before any alert exists.
        deadline = time.monotonic() + 40
        shares: list[int] = []
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            shares = _assigned(kafka_bootstrap, group, t_alerts)
            if len(shares) == 2 and sum(shares) == PARTITIONS and min(shares) > 0:
                break
            time.sleep(0.3)
        assert sorted(shares) == [2, 2], f"alert partitions per daemon: {shares}"
        _produce(kafka_bootstrap, t_alerts, list(zip(object_ids, packets, strict=True)))

        # The last /metrics of each daemon (counters only grow; it idles before exiting).
        metrics = ["", ""]
        deadline = time.monotonic() + 70
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            for i, port in enumerate(ports):
                if procs[i].poll() is None:
                    with contextlib.suppress(OSError):
                        metrics[i] = urllib.request.urlopen(
                            f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            time.sleep(0.3)
        codes = [p.wait(timeout=30) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    logs = [(tmp_path / f"i{i}" / "stderr.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)

    engine = make_engine(postgres_url)
    with engine.connect() as conn:
        letters = conn.execute(select(dead_letters.c.origin, dead_letters.c.error)).all()
        n_alerts = conn.execute(select(func.count()).select_from(alerts)).scalar_one()
        n_unique = conn.execute(select(func.count()).select_from(
            select(alerts.c.survey, alerts.c.alert_id).distinct().subquery())).scalar_one()
        n_notices = conn.execute(select(func.count()).select_from(notices)).scalar_one()
        pairs = Counter(conn.execute(select(coincidences.c.event_pk,
                                            coincidences.c.alert_pk)).all())
    engine.dispose()
    assert letters == []
    assert n_notices == len(notice_files)
    assert n_alerts == n_unique == len(set(packets)) == len(packets)
    assert not [p for p, n in pairs.items() if n > 1], "an (event, alert) pair stored twice"

    # The same sample, one process, from files: the same live coincidences.
    replay_db = f"sqlite:///{tmp_path / 'replay.sqlite'}"
    subprocess.run([MMA, "replay", str(SAMPLE), "--db", replay_db, "--output",
                    str(tmp_path / "r.jsonl")], env={**env, "MMA_PATHS__STATE_DIR": str(
                        tmp_path), "MMA_PATHS__CACHE_DIR": str(tmp_path)},
                   check=True, capture_output=True, timeout=120)
    live = _live(postgres_url)
    assert live == _live(replay_db) and live

    # Each daemon stored a share of the alerts, and the shares add up.
    stored = [_metric(m, "alert", t_alerts) for m in metrics]
    assert min(stored) > 0 and sum(stored) == len(packets), stored
    assert all(_metric(m, "duplicate", t_alerts) == 0 for m in metrics)

    # Delivery from two schedulers over one outbox: every live coincidence out, none twice.
    out = _drain(kafka_bootstrap, t_out)
    assert live <= {k.decode() for k, _v in out if k}
    repeated = [k for k, n in Counter(out).items() if n > 1]
    assert not repeated, f"{len(repeated)} output messages published twice"
    assert not [line for log in logs for line in log.splitlines()
                if re.search(r"\b(ERROR|Traceback)\b", line)]
