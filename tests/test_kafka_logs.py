"""librdkafka's log lines go through logging, throttled and capped at WARNING, never raw."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest

from mma.errors import ConfigError
from mma.kafka_conf import KAFKA_LOGGER, check_properties, with_logger
from mma.log import ThrottledLog
from mma.service.consume import Consumers
from tests.services.kafka import KafkaService, unique_topic

# A child process: a real consumer (and producer) of mma's configuration, pointed at a
# closed loopback port, polled for a few seconds; it prints the records logging got.
CHILD = r"""
import json, logging, sys, time
from confluent_kafka import Consumer, Producer
from mma.config import load_config
from mma.kafka_conf import client_config, with_logger
from mma.service.sources import make_consumer

records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append([record.name, record.levelno, record.getMessage()])
logging.getLogger().addHandler(Keep())
logging.getLogger().setLevel(logging.DEBUG)
config = load_config(sys.argv[1])
consumer = make_consumer(config, "alert", instance="t")
consumer.subscribe(["alerts"])
producer = Producer(with_logger(client_config(config, "output")))
producer.produce("out", b"x")
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    consumer.poll(0.2)
    producer.poll(0)
consumer.close()
print(json.dumps(records))
"""


def _closed_port() -> int:
    """A loopback port nobody listens on (bound then released: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow  # a subprocess waiting out librdkafka's reconnects (~3 s)
def test_unreachable_broker_logs_a_few_warnings_nothing_raw(tmp_path: Path) -> None:
    servers = f"127.0.0.1:{_closed_port()}"
    conf = tmp_path / "mma.toml"
    conf.write_text(f'[kafka]\nalert_bootstrap_servers = "{servers}"\n'
                    f'[channels.kafka]\nbootstrap_servers = "{servers}"\ntopic = "out"\n')
    done = subprocess.run([sys.executable, "-c", CHILD, str(conf), "2.5"], capture_output=True,
                          timeout=60, check=True)
    assert done.stderr == b""  # librdkafka wrote nothing itself ("%3|...|FAIL|...")
    records = json.loads(done.stdout)
    kafka = [r for r in records if r[0] == KAFKA_LOGGER]
    # Unthrottled, librdkafka logs ~20 refused connections a second per client.
    assert kafka, records
    assert any("Connection refused" in r[2] for r in kafka), kafka
    assert all(r[1] <= logging.WARNING for r in kafka), kafka
    assert len([r for r in kafka if r[1] >= logging.WARNING]) <= 6, kafka


def test_throttle_counts_repeats_and_caps_the_level(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = ThrottledLog("mma.kafka.test", period_s=60.0, clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, "mma.kafka.test")
    for ms in range(50):  # the same line but for its number
        log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1",
                f"Connect failed: Connection refused (after {ms}ms in state CONNECT)")
        now[0] += 1.0  # 50 s: within one period
    log.log(logging.CRITICAL, "%s", "another line")
    now[0] = 61.0
    log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-2",
            "Connect failed: Connection refused (after 3ms in state CONNECT)")
    got = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert got == [
        (logging.WARNING, "FAIL [rdkafka#consumer-1] Connect failed: Connection refused "
                          "(after 0ms in state CONNECT)"),
        (logging.WARNING, "another line"),
        (logging.WARNING, "FAIL [rdkafka#consumer-2] Connect failed: Connection refused "
                          "(after 3ms in state CONNECT) (and 49 like it in the last 61 s, "
                          "not shown)"),
    ]


def test_debug_lines_stay_debug_and_are_skipped_when_disabled(
        caplog: pytest.LogCaptureFixture) -> None:
    log = ThrottledLog("mma.kafka.test2")
    caplog.set_level(logging.INFO, "mma.kafka.test2")
    log.log(logging.DEBUG, "%s", "noise")
    log.log(logging.INFO, "%s", "joined group")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "joined group")]


def test_with_logger_adds_the_shared_logger_only() -> None:
    conf = {"bootstrap.servers": "b:9092", "group.id": "g"}
    out = with_logger(conf)
    assert out.pop("logger") is with_logger({})["logger"] and out == conf
    assert "logger" not in conf


def test_logger_cannot_be_set_in_a_client_table() -> None:
    with pytest.raises(ConfigError, match=r"'kafka\.alert_client\.logger' is set by mma itself"):
        check_properties("kafka.alert_client", {"logger": "x"}, "configuration")


class _CountingConsumer:
    """A real consumer that counts, per topic, the UNKNOWN_TOPIC_OR_PART errors it hands out."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.unknown: Counter[str] = Counter()

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        from confluent_kafka import KafkaError

        messages = self.consumer.consume(num_messages, timeout)
        self.unknown.update(m.topic() for m in messages if m.error() is not None
                            and m.error().code() == KafkaError.UNKNOWN_TOPIC_OR_PART)
        return list(messages)


class _NoIntake:
    def handle(self, messages: list[Any]) -> None:
        assert messages == []


@pytest.mark.kafka
def test_missing_topic_is_one_warning_not_an_error(
        kafka_broker: KafkaService, caplog: pytest.LogCaptureFixture) -> None:
    """A subscribed topic that does not exist (GCN: a Classic topic without recent traffic):
    librdkafka reports it whenever it joins the subscription (at start, and again when a
    reload drops and restores it); the daemon says so once per topic, as a warning."""
    from confluent_kafka import Consumer

    missing, other = unique_topic("gcn.classic.voevent.IPN_POS"), unique_topic("absent")
    consumer = Consumer(kafka_broker.client_config(**{"group.id": unique_topic("g")}))
    spy = _CountingConsumer(consumer)
    consumers = Consumers(cast(Any, None), "t", cast(Any, None), cast(Any, None),
                          stopping=lambda: False)
    caplog.set_level(logging.INFO, "mma.service.consume")
    try:
        for topics in ([missing], [other], [missing]):
            consumer.subscribe(topics)
            deadline = time.monotonic() + 15.0
            seen = sum(spy.unknown.values())
            while sum(spy.unknown.values()) == seen and time.monotonic() < deadline:
                consumers._poll(cast(Any, spy), cast(Any, _NoIntake()), 10, 0.5)
    finally:
        consumer.close()
    assert spy.unknown == {missing: 2, other: 1}  # librdkafka said it twice...
    lines = [(r.levelno, r.getMessage()) for r in caplog.records
             if r.name == "mma.service.consume"]
    assert lines == [(logging.WARNING, f"topic {topic} does not exist (yet): subscribed, "
                                       "read once it appears")
                     for topic in (missing, other)]  # ...mma once per topic
