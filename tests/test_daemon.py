"""``mma run`` against a real Kafka broker: consume, correlate, deliver, restart safely."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import select

from mma.db.engine import make_engine
from mma.db.schema import alerts, coincidences, dead_letters, notices
from mma.registry import Registry

pytestmark = pytest.mark.daemon  # runs mma as a subprocess

SAMPLE = Path(__file__).parents[1] / "mma" / "data" / "sample"
MMA = str(Path(sys.executable).with_name("mma"))


def _produce(bootstrap: str, topic: str, payloads: list[bytes]) -> None:
    # LVK notices carry ~1 MB of base64 FITS: compressed, as real producers send them.
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": "gzip",
                         "message.max.bytes": 10_000_000})
    for payload in payloads:
        producer.produce(topic, payload)
    assert producer.flush(30) == 0


def _drain_topic(bootstrap: str, topic: str) -> list:
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
        out.append(msg)
    consumer.close()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(db: str, tmp_path: Path, bootstrap: str, stem: str, t_notices: str, t_alerts: str,
         **extra: str) -> dict[str, str]:
    """Environment of an ``mma run`` on *db* reading LVK notices and ZTF alerts."""
    return {**os.environ, "MMA_DATABASE__URL": db, "MMA_PATHS__STATE_DIR": str(tmp_path),
            "MMA_PATHS__CACHE_DIR": str(tmp_path), "MMA_LOGGING__LEVEL": "WARNING",
            "MMA_KAFKA__GCN_BOOTSTRAP_SERVERS": bootstrap,
            "MMA_KAFKA__ALERT_BOOTSTRAP_SERVERS": bootstrap, "MMA_KAFKA__GROUP_ID": f"g-{stem}",
            "MMA_KAFKA__SESSION_TIMEOUT_SECONDS": "3",
            "MMA_KAFKA__NOTICE_TOPICS": json.dumps([f"lvk:{t_notices}"]),
            "MMA_KAFKA__ALERT_TOPICS": json.dumps([f"ztf:{t_alerts}"]),
            "MMA_SKYMAPS__FETCH": "false", **extra}


def _state(url: str) -> dict:
    engine = make_engine(url)
    with engine.connect() as conn:
        state = {
            "live": {r.coincidence_id for r in conn.execute(select(coincidences)).all()
                     if r.status != "retracted" and not r.vetoed},
            "n_coincidences": len(conn.execute(select(coincidences.c.coincidence_id)).all()),
            "notices": len(conn.execute(select(notices.c.id)).all()),
            "letters": [r.origin for r in conn.execute(select(dead_letters))],
        }
    engine.dispose()
    return state


def test_run_consumes_correlates_delivers_and_restarts_cleanly(tmp_path: Path,
                                                               kafka_bootstrap: str) -> None:
    stem = uuid.uuid4().hex[:8]
    t_notices, t_alerts, t_out = f"n-{stem}", f"a-{stem}", f"out-{stem}"
    notice_files = sorted(SAMPLE.glob("*.json"), key=lambda p: json.loads(
        p.read_text())["time_created"])
    _produce(kafka_bootstrap, t_notices, [p.read_bytes() for p in notice_files])
    avro = (SAMPLE / "ztf-sample-alerts.avro").read_bytes()
    packets = [payload for _h, payload in Registry().iter_file(avro, "sample")]
    _produce(kafka_bootstrap, t_alerts, [*packets[:300], b"\x00 not an Avro packet",
                                         *packets[300:]])
    db = f"sqlite:///{tmp_path / 'run.sqlite'}"
    env = _env(db, tmp_path, kafka_bootstrap, stem, t_notices, t_alerts,
               MMA_KAFKA__POLL_TIMEOUT_SECONDS="0.5", MMA_CHANNELS__KAFKA__ENABLED="true",
               MMA_CHANNELS__KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
               MMA_CHANNELS__KAFKA__TOPIC=t_out)
    # systemd's side: a real notify socket, and the health endpoint polled while it runs.
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    health_port = _free_port()
    run_env = {**env, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
               "MMA_DAEMON__HEALTH_PORT": str(health_port)}
    with subprocess.Popen([MMA, "run", "--idle-exit", "6"], env=run_env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        health = metrics = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = urllib.request.urlopen(
                    f"http://127.0.0.1:{health_port}/healthz", timeout=2).read().decode()
                metrics = urllib.request.urlopen(
                    f"http://127.0.0.1:{health_port}/metrics", timeout=2).read().decode()
                if "mma_messages_in_total{" in metrics:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    assert '"status": "ok"' in health or '"status":"ok"' in health
    assert "mma_messages_in_total{" in metrics
    told = []
    while True:
        try:
            told.append(notify.recv(4096).decode())
        except BlockingIOError:
            break
    notify.close()
    assert any("READY=1" in m for m in told) and any("STOPPING=1" in m for m in told)
    first = _state(db)
    assert first["notices"] == 4
    assert first["letters"] == [f"{t_alerts}:0:300"]  # the poison message, by its offset

    # The same sample replayed from files gives the same live coincidences.
    replay_db = f"sqlite:///{tmp_path / 'replay.sqlite'}"
    subprocess.run([MMA, "replay", str(SAMPLE), "--db", replay_db, "--output",
                    str(tmp_path / "r.jsonl")], env=env, check=True, capture_output=True,
                   timeout=120)
    assert first["live"] == _state(replay_db)["live"] and first["live"]

    out = _drain_topic(kafka_bootstrap, t_out)
    keys = {m.key().decode() for m in out if m.key()}
    assert first["live"] <= keys  # every live coincidence was published

    # A restart finds every offset committed: nothing is processed or published again.
    again = subprocess.run([MMA, "run", "--idle-exit", "4"], check=False, env=env,
                           capture_output=True,
                           text=True, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _state(db) == first
    assert len(_drain_topic(kafka_bootstrap, t_out)) == len(out)


def test_spool_directory_files_are_processed_once_and_moved(tmp_path: Path,
                                                            kafka_bootstrap: str) -> None:
    stem = uuid.uuid4().hex[:8]
    spool = tmp_path / "spool"
    spool.mkdir()
    for path in SAMPLE.iterdir():
        (spool / path.name).write_bytes(path.read_bytes())
    (spool / "garbage.bin").write_bytes(b"\x00\x01 not a notice")
    # The Kafka topics exist (empty), as in a deployment that also consumes Kafka.
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(f"n-{stem}", 1, 1),
                                       NewTopic(f"a-{stem}", 1, 1)]).values():
        future.result(30)
    db = f"sqlite:///{tmp_path / 'spool.sqlite'}"
    env = {**os.environ, "MMA_DATABASE__URL": db, "MMA_PATHS__STATE_DIR": str(tmp_path),
           "MMA_PATHS__CACHE_DIR": str(tmp_path), "MMA_LOGGING__LEVEL": "WARNING",
           "MMA_KAFKA__GCN_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "MMA_KAFKA__ALERT_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "MMA_KAFKA__GROUP_ID": f"g-{stem}", "MMA_KAFKA__POLL_TIMEOUT_SECONDS": "0.5",
           "MMA_KAFKA__NOTICE_TOPICS": json.dumps([f"lvk:n-{stem}"]),
           "MMA_KAFKA__ALERT_TOPICS": json.dumps([f"ztf:a-{stem}"]),
           "MMA_DAEMON__SPOOL_DIR": str(spool), "MMA_DAEMON__SPOOL_INTERVAL_SECONDS": "0.5",
           "MMA_SKYMAPS__FETCH": "false"}
    run = subprocess.run([MMA, "run", "--idle-exit", "10"], check=False, env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(p.name for p in spool.iterdir() if p.is_file()) == []
    assert sorted(p.name for p in (spool / "done").iterdir()) == sorted(
        [p.name for p in SAMPLE.iterdir()] + ["garbage.bin"])
    state = _state(db)
    assert state["notices"] == 4 and len(state["letters"]) == 1
    assert "garbage.bin" in state["letters"][0]
    replay_db = f"sqlite:///{tmp_path / 'replay.sqlite'}"
    subprocess.run([MMA, "replay", str(SAMPLE), "--db", replay_db, "--output",
                    str(tmp_path / "r.jsonl")], env=env, check=True, capture_output=True,
                   timeout=120)
    assert state["live"] == _state(replay_db)["live"] and state["live"]


def test_an_idle_notice_topic_does_not_hold_up_alert_batches(tmp_path: Path,
                                                             kafka_bootstrap: str) -> None:
    """Alert batches follow each other without waiting out the notice poll timeout.

    A backlog of 614 alerts in batches of 50 (13 batches) with a 3 s poll timeout:
    a loop that waits on the empty notice topic between batches needs >= 36 s from
    the first batch stored to the last; one that waits only when idle, well under 3 s.
    """
    stem = uuid.uuid4().hex[:8]
    t_notices, t_alerts = f"n-{stem}", f"a-{stem}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(t_notices, 1, 1)])[t_notices].result(timeout=30)
    avro = (SAMPLE / "ztf-sample-alerts.avro").read_bytes()
    packets = [payload for _h, payload in Registry().iter_file(avro, "sample")]
    _produce(kafka_bootstrap, t_alerts, packets)
    db = f"sqlite:///{tmp_path / 'run.sqlite'}"
    env = _env(db, tmp_path, kafka_bootstrap, stem, t_notices, t_alerts,
               MMA_KAFKA__POLL_TIMEOUT_SECONDS="3", MMA_KAFKA__BATCH="50")
    run = subprocess.run([MMA, "run", "--idle-exit", "4"], env=env, capture_output=True,
                         text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    engine = make_engine(db)
    with engine.connect() as conn:
        stored = sorted(conn.execute(select(alerts.c.received_at)).scalars())
    engine.dispose()
    assert len(stored) == len(packets)
    batches = sorted(set(stored))
    assert len(batches) >= len(packets) // 50  # one transaction per consumed batch
    assert (stored[-1] - stored[0]).total_seconds() < 3.0
