"""Pipeline to channels through the outbox, against the real services of the harness.

A coincidence and its retraction reach a real Kafka topic, a real SMTP server
(with the region's PNG inline) and a Slack webhook on a loopback HTTP server;
Slack is down for two attempts and every message still arrives exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer, Message
from sqlalchemy import Engine

from mma.config import load_config
from mma.delivery import build_emitters, deliver_due
from mma.ingest import Pipeline
from tests.test_correlator import MAP_1, alert, feed, notice

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _consume(bootstrap: str, topic: str, n: int) -> list[Message]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while len(out) < n and datetime.now(UTC) < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            out.append(msg)
    extra = consumer.poll(2.0)  # nothing more may come
    consumer.close()
    assert extra is None or extra.error() is not None, "a message was delivered twice"
    return out


def test_coincidence_and_retraction_reach_every_channel_once(
        engine: Engine, tmp_path: Path, kafka_bootstrap: str, kafka_topic: str,
        smtp_server, http_sink) -> None:
    hook = http_sink.url_for("/services/T0/B0/secret")
    config = load_config(environ={
        "MMA_PATHS__STATE_DIR": str(tmp_path), "MMA_PATHS__CACHE_DIR": str(tmp_path),
        "MMA_CHANNELS__KAFKA__ENABLED": "true",
        "MMA_CHANNELS__KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "MMA_CHANNELS__KAFKA__TOPIC": kafka_topic,
        "MMA_CHANNELS__SLACK__ENABLED": "true", "MMA_SLACK_WEBHOOK_URL": hook,
        "MMA_CHANNELS__SLACK__MIN_INTERVAL_SECONDS": "0",
        "MMA_CHANNELS__SLACK__RULES__MAX_P_CHANCE": "1.0",
        # The synthetic survey's background is unmeasured: a flag the default drops.
        "MMA_CHANNELS__SLACK__RULES__EXCLUDE_FLAGS": "[]",
        "MMA_CHANNELS__EMAIL__ENABLED": "true", "MMA_CHANNELS__EMAIL__SECURITY": "none",
        "MMA_CHANNELS__EMAIL__HOST": smtp_server.host,
        "MMA_CHANNELS__EMAIL__PORT": str(smtp_server.port),
        "MMA_CHANNELS__EMAIL__RECIPIENTS": '["night-shift@example.org"]',
        "MMA_CHANNELS__EMAIL__RULES__MAX_P_CHANCE": "1.0",
        "MMA_CHANNELS__EMAIL__RULES__EXCLUDE_FLAGS": "[]",
    }, system_file=tmp_path / "none")
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, alert("a", pixel=0, hours=2))
    emitters = build_emitters(config)
    assert set(emitters) == {"kafka", "slack", "email"}
    http_sink.queue_error(500, count=2)  # Slack is down for two attempts
    now = datetime.now(UTC)
    first = deliver_due(engine, config, emitters, now)
    assert first == {"sent": 2, "retry": 1}
    assert deliver_due(engine, config, emitters, now + timedelta(seconds=31)) == {"retry": 1}
    assert deliver_due(engine, config, emitters, now + timedelta(seconds=200)) == {"sent": 1}

    feed(p, notice("RETRACTION", 4, retraction=True))
    assert deliver_due(engine, config, emitters, now + timedelta(seconds=300)) == {"sent": 3}
    for emitter in emitters.values():
        emitter.close()

    messages = _consume(kafka_bootstrap, kafka_topic, 2)
    values = [json.loads(m.value() or b"null") for m in messages]
    assert [v["status"] for v in values] == ["active", "retracted"]
    assert len({m.key() for m in messages}) == 1
    assert messages[0].key() == values[0]["coincidence_id"].encode()

    posts = [r for r in http_sink.requests if r.method == "POST"]
    assert len(posts) == 4  # two refused, then the coincidence and its retraction
    assert posts[2].json == posts[1].json == posts[0].json  # the same message retried
    assert "0.750" in json.dumps(posts[2].json) or "0.75" in json.dumps(posts[2].json)

    mails = smtp_server.wait_for(2)
    assert [m.rcpt_tos for m in mails] == [["night-shift@example.org"]] * 2
    assert "RETRACTED" in mails[1].subject.upper()
    images = [part for part in mails[0].message.walk()
              if part.get_content_type() == "image/png"]
    # The region, and the candidate's light curve (the sample's stamps come with later
    # alerts of some objects only): each inline PNG under its own Content-ID.
    assert [i["Content-ID"] for i in images][:2] == ["<region>", "<lightcurve>"]
    assert all(i.get_payload(decode=True).startswith(PNG_MAGIC) for i in images)


def test_process_exits_after_commit_and_a_new_one_delivers(tmp_path: Path, kafka_bootstrap: str,
                                                           kafka_topic: str) -> None:
    """`mma ingest` commits and exits without sending; `mma deliver`, a new process, sends
    every pending message once; a second `mma deliver` has nothing left to send."""
    mma = str(Path(sys.executable).with_name("mma"))
    db = f"sqlite:///{tmp_path / 'mma.sqlite'}"
    env = {**os.environ, "MMA_PATHS__STATE_DIR": str(tmp_path),
           "MMA_PATHS__CACHE_DIR": str(tmp_path), "MMA_CHANNELS__KAFKA__ENABLED": "true",
           "MMA_CHANNELS__KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "MMA_CHANNELS__KAFKA__TOPIC": kafka_topic, "MMA_LOGGING__LEVEL": "WARNING"}
    sample = Path(__file__).parents[1] / "mma" / "data" / "sample"
    subprocess.run([mma, "ingest", str(sample), "--db", db], env=env, check=True,
                   capture_output=True, timeout=120)
    status = subprocess.run([mma, "status", "--db", db], env=env, check=True,
                            capture_output=True, text=True, timeout=60).stdout
    # The outbox table of ``mma status``: channel, pending, sent, parked, last error.
    backlog = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("kafka ")))
    assert backlog > 0
    out = subprocess.run([mma, "deliver", "--db", db], env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    assert f"sent: {backlog}" in out
    again = subprocess.run([mma, "deliver", "--db", db], env=env, check=True,
                           capture_output=True, text=True, timeout=120).stdout
    assert "nothing due" in again
    messages = _consume(kafka_bootstrap, kafka_topic, backlog)
    pairs = [(m.key(), dict(m.headers() or [])["mma-revision"]) for m in messages]
    assert len(pairs) == len(set(pairs)) == backlog  # each (coincidence, revision) once
