"""GCN's ``gcn.heartbeat``: a liveness metric in memory, /metrics and ``mma status``;
never a notice, never a dead letter, never fatal."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine

from mma.cli import main
from mma.config import load_config
from mma.service import gcn_heartbeat
from mma.service.gcn_heartbeat import HEARTBEAT_TOPIC, GcnHeartbeat, subscription
from mma.service.health import Metrics
from mma.service.heartbeat import SourceStats, beat
from mma.service.intake import Intake
from mma.service.sources import SourceBook

SAMPLE = Path(__file__).resolve().parent / "data" / "gcn_heartbeat" / "heartbeat.json"
SENT = datetime(2024, 7, 25, 15, 50, 35, 792451, tzinfo=UTC)  # the sample's alert_datetime
NOW = SENT + timedelta(seconds=0.25)


def _variant(**change: Any) -> bytes:
    doc = {**json.loads(SAMPLE.read_bytes()), **change}
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


MALFORMED = {
    "not-json": b"\x00\x01heartbeat",
    "no-alert_datetime": _variant(alert_datetime=None),
    "not-a-time": _variant(alert_datetime="yesterday"),
    "no-zone": _variant(alert_datetime="2024-07-25T15:50:35.792451"),
    "not-utc": _variant(alert_datetime="2024-07-25T15:50:35+02:00"),
    "a-number": _variant(alert_datetime=1721922635.79),
    "huge": _variant(padding="x" * 2**20),
}


def _metric(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    value = metrics.registry.get_sample_value(name, labels or {})
    return None if value is None else float(value)


def test_the_real_heartbeat_updates_the_metric() -> None:
    metrics = Metrics()
    beats = GcnHeartbeat(metrics)
    assert beats.latency_s() is None
    assert beats.health() == {"gcn_heartbeat_age_s": None, "gcn_heartbeat_latency_s": None}
    assert beats.receive(SAMPLE.read_bytes(), now=NOW)
    assert (beats.received_at, beats.sent_at, beats.received) == (NOW, SENT, 1)
    assert beats.latency_s() == pytest.approx(0.25)
    assert _metric(metrics, "mma_gcn_heartbeat_received_timestamp_seconds") == NOW.timestamp()
    assert _metric(metrics, "mma_gcn_heartbeat_latency_seconds") == pytest.approx(0.25)
    assert _metric(metrics, "mma_gcn_heartbeats_total", {"outcome": "ok"}) == 1.0
    assert b"mma_gcn_heartbeat_latency_seconds" in metrics.render()
    assert beats.health(now=NOW + timedelta(seconds=2)) == {
        "gcn_heartbeat_age_s": 2.0, "gcn_heartbeat_latency_s": pytest.approx(0.25)}
    # A second tracker on the same metrics (a rebuilt intake) shares the instruments.
    GcnHeartbeat(metrics).receive(SAMPLE.read_bytes(), now=NOW)
    assert _metric(metrics, "mma_gcn_heartbeats_total", {"outcome": "ok"}) == 2.0


def test_malformed_heartbeats_are_logged_once_and_ignored(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    beats = GcnHeartbeat(metrics)
    assert beats.receive(SAMPLE.read_bytes(), now=NOW)
    with caplog.at_level(logging.DEBUG, logger=gcn_heartbeat.__name__):
        for raw in MALFORMED.values():
            assert not beats.receive(raw, origin="gcn.heartbeat:0:7", now=NOW + timedelta(1))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "gcn.heartbeat:0:7" in warnings[0].getMessage()
    assert beats.malformed == len(MALFORMED)
    assert (beats.received_at, beats.sent_at, beats.received) == (NOW, SENT, 1)  # unchanged
    assert _metric(metrics, "mma_gcn_heartbeats_total",
                   {"outcome": "malformed"}) == len(MALFORMED)


class _Message:
    """What Intake reads of a confluent_kafka Message."""

    def __init__(self, topic: str, value: bytes, offset: int) -> None:
        self._topic, self._value, self._offset = topic, value, offset

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class _Untouchable:
    """A pipeline or registry that fails the test if a heartbeat reaches it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a heartbeat reached {name}: it must be neither parsed, "
                             "stored nor dead-lettered")


def test_intake_routes_heartbeats_to_the_metric_only() -> None:
    metrics, book = Metrics(), SourceBook()
    runtime = SimpleNamespace(pipeline=_Untouchable(), registry=_Untouchable())
    intake = Intake(runtime, retry=_Untouchable(), metrics=metrics,  # type: ignore[arg-type]
                    book=book, wake_delivery=lambda: None)
    messages: list[Any] = [_Message(HEARTBEAT_TOPIC, SAMPLE.read_bytes(), 1),
                           _Message(HEARTBEAT_TOPIC, MALFORMED["not-a-time"], 2),
                           _Message(HEARTBEAT_TOPIC, SAMPLE.read_bytes(), 3)]
    intake.handle(messages)
    assert (intake.gcn_heartbeat.received, intake.gcn_heartbeat.malformed) == (2, 1)
    stats = book.snapshot()[HEARTBEAT_TOPIC]
    assert (stats.messages, stats.dead_letters) == (2, 0)  # what `mma status` will show
    assert stats.last_message_at is not None
    assert _metric(metrics, "mma_dead_letters_total", {"source": HEARTBEAT_TOPIC}) is None


def _config(tmp_path: Path, kafka: str) -> Any:
    path = tmp_path / "mma.toml"
    path.write_text(f"[kafka]\n{kafka}\n")
    return load_config(path, environ={})


@pytest.mark.parametrize(("kafka", "kind", "subscribed"), [
    ('notice_topics = ["*"]', "notice", True),
    ('notice_topics = ["*", "lvk:my.topic"]', "notice", True),
    ('notice_topics = ["lvk:igwn.gwalert"]', "notice", False),  # an explicit choice
    ('notice_topics = ["*"]\ngcn_bootstrap_servers = "mirror:9092"', "notice", False),
    ('notice_topics = ["*"]', "alert", False),
])
def test_subscribed_with_gcns_default_topics(tmp_path: Path, kafka: str, kind: str,
                                             subscribed: bool) -> None:
    topics = ["igwn.gwalert", "gcn.circulars"]
    got = subscription(_config(tmp_path, kafka), kind, topics)
    assert got == topics + [HEARTBEAT_TOPIC] * subscribed
    assert subscription(_config(tmp_path, kafka), kind, got) == got  # never twice


def test_status_shows_the_last_gcn_heartbeat(engine: Engine, db_url: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    received = now - timedelta(seconds=3)
    beat(engine, instance="site-1", started_at=now - timedelta(hours=1), now=now, sources={
        HEARTBEAT_TOPIC: SourceStats(messages=3600, lag=0, last_message_at=received),
        "igwn.gwalert": SourceStats(messages=2)})
    beat(engine, instance="site-2", started_at=now, now=now,
         sources={"igwn.gwalert": SourceStats(messages=1)})  # reads no heartbeat
    assert main(["status", "--db", db_url]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "gcn heartbeat" in ln]
    assert len(lines) == 1 and "site-1" in lines[0]
    assert received.isoformat() in lines[0] and "lag 0" in lines[0]
    assert main(["status", "--json", "--db", db_url]) == 0
    [row] = json.loads(capsys.readouterr().out)["gcn_heartbeat"]
    assert (row["instance"], row["heartbeats"], row["lag"]) == ("site-1", 3600, 0)
    assert row["last_received"] == received.isoformat() and 0 <= row["age_s"] < 120


def test_heartbeats_from_a_real_broker(kafka_broker: Any) -> None:
    """Real confluent-kafka messages of ``gcn.heartbeat`` (a good and a bad one) through
    the intake: the metric moves, nothing reaches the pipeline."""
    import uuid

    from confluent_kafka import Consumer, Producer

    producer = Producer(kafka_broker.client_config())
    mine: set[tuple[Any, Any]] = set()  # (partition, offset): the topic may hold older ones
    for raw in (SAMPLE.read_bytes(), MALFORMED["no-zone"]):
        producer.produce(HEARTBEAT_TOPIC, raw, on_delivery=lambda err, msg: mine.add(
            (msg.partition(), msg.offset())) if err is None else None)
    assert producer.flush(30) == 0 and len(mine) == 2
    consumer = Consumer(kafka_broker.client_config(**{
        "group.id": f"mma-test-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"}))
    consumer.subscribe([HEARTBEAT_TOPIC])
    got: list[Any] = []
    try:
        for _ in range(60):
            got += [m for m in consumer.consume(100, 1.0)
                    if m.error() is None and (m.partition(), m.offset()) in mine]
            if len(got) == 2:
                break
    finally:
        consumer.close()
    book = SourceBook()
    runtime = SimpleNamespace(pipeline=_Untouchable(), registry=_Untouchable())
    intake = Intake(runtime, retry=_Untouchable(), metrics=Metrics(),  # type: ignore[arg-type]
                    book=book, wake_delivery=lambda: None)
    intake.handle(got)
    assert (intake.gcn_heartbeat.received, intake.gcn_heartbeat.malformed) == (1, 1)
    assert intake.gcn_heartbeat.sent_at == SENT
    assert book.snapshot()[HEARTBEAT_TOPIC].messages == 1


def test_the_notice_consumer_subscribes_the_heartbeat(tmp_path: Path) -> None:
    """With GCN's default topics the notice consumer reads gcn.heartbeat (and
    gcn.circulars); the topics a reload compares against stay the handlers' own."""
    from mma.service.consume import Consumers
    from mma.service.sources import registry_of

    config = _config(tmp_path, 'notice_topics = ["*"]')
    runtime = SimpleNamespace(config=config, registry=registry_of(config))
    consumers = Consumers(runtime, "t", SourceBook(), Metrics(),  # type: ignore[arg-type]
                          stopping=lambda: False)
    seen: list[list[str]] = []

    class _Consumer:
        def subscribe(self, topics: list[str], **_callbacks: Any) -> None:
            seen.append(topics)

    consumers._subscribe("notice", _Consumer())  # type: ignore[arg-type]
    [topics] = seen
    assert topics[-1] == HEARTBEAT_TOPIC and "gcn.circulars" in topics
    assert consumers._topics["notice"] == topics[:-1]
