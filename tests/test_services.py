"""Prove that the real-service harness starts real, working services.

Kafka (confluent-kafka and gcn-kafka clients, broker restart), PostgreSQL through SQLAlchemy,
SMTP through smtplib, and the HTTP sink through urllib.
"""

from __future__ import annotations

import http.client
import json
import os
import smtplib
import time
import urllib.error
import urllib.request
import uuid
from email.message import EmailMessage
from typing import Any

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, Message, Producer

from tests.services.http import HttpSink
from tests.services.kafka import ExternalKafka, KafkaBroker
from tests.services.postgres import ExternalPostgres, PostgresServer
from tests.services.smtp import SmtpServer

# -- helpers -----------------------------------------------------------------------------


def _produce(config: dict[str, Any], topic: str, values: list[bytes]) -> None:
    producer = Producer({**config, "acks": "all", "linger.ms": 0})
    errors: list[str] = []

    def on_delivery(err: Any, msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    for index, value in enumerate(values):
        producer.produce(topic, value=value, key=str(index).encode(), on_delivery=on_delivery)
    assert producer.flush(30) == 0, "messages still undelivered after 30 s"
    assert errors == []


def _consume(consumer: Any, topic: str, count: int, timeout: float = 30.0) -> list[bytes]:
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            values.append(msg.value())
    finally:
        consumer.close()
    return values


def _group() -> str:
    return f"mma-test-{uuid.uuid4().hex[:8]}"


# -- Kafka -------------------------------------------------------------------------------


@pytest.mark.kafka
def test_kafka_produce_and_consume(kafka_broker: KafkaBroker | ExternalKafka,
                                   kafka_topic: str) -> None:
    """A message produced with confluent-kafka comes back through a consumer group."""
    values = [b"first", b"second", json.dumps({"id": "S250101a"}).encode()]
    _produce(kafka_broker.client_config(), kafka_topic, values)
    consumer = Consumer(kafka_broker.client_config(**{
        "group.id": _group(), "auto.offset.reset": "earliest"}))
    assert _consume(consumer, kafka_topic, len(values)) == values


@pytest.mark.kafka
def test_gcn_kafka_consumer_reads_local_broker(kafka_broker: KafkaBroker | ExternalKafka,
                                               kafka_topic: str) -> None:
    """``gcn_kafka.Consumer`` with PLAINTEXT and a fixed group id reads the local broker."""
    import gcn_kafka

    _produce(kafka_broker.client_config(), kafka_topic, [b"<voe:VOEvent/>"])
    consumer = gcn_kafka.Consumer(config=kafka_broker.gcn_config(_group()))
    assert _consume(consumer, kafka_topic, 1) == [b"<voe:VOEvent/>"]


@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_restart_keeps_messages(kafka_broker: KafkaBroker | ExternalKafka,
                                      kafka_topic: str) -> None:
    """A message acknowledged before a broker restart is still there afterwards."""
    if isinstance(kafka_broker, ExternalKafka):
        pytest.fail("MMA_TEST_KAFKA is set: broker restart cannot be tested")
    _produce(kafka_broker.client_config(), kafka_topic, [b"before restart"])
    assert kafka_broker.proc is not None
    old_pid = kafka_broker.proc.pid
    old_bootstrap = kafka_broker.bootstrap_servers
    kafka_broker.restart()
    assert kafka_broker.proc is not None
    assert kafka_broker.proc.pid != old_pid
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)
    assert kafka_broker.bootstrap_servers == old_bootstrap
    _produce(kafka_broker.client_config(), kafka_topic, [b"after restart"])
    consumer = Consumer(kafka_broker.client_config(**{
        "group.id": _group(), "auto.offset.reset": "earliest"}))
    assert _consume(consumer, kafka_topic, 2) == [b"before restart", b"after restart"]


# -- PostgreSQL --------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_roundtrip(postgres_url: str) -> None:
    """A fresh database accepts DDL and round-trips a row through SQLAlchemy + psycopg 3."""
    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    engine = sa.create_engine(postgres_url)
    metadata = sa.MetaData()
    table = sa.Table(
        "events", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("payload", sa.JSON),
    )
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"name": "S250101a", "payload": {"far": 1e-9}}])
        with engine.connect() as conn:
            row = conn.execute(sa.select(table.c.name, table.c.payload)).one()
            database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
            version = conn.execute(sa.text("SHOW server_version_num")).scalar_one()
        assert row.name == "S250101a"
        assert row.payload == {"far": 1e-9}
        assert database == postgres_url.rsplit("/", 1)[1]
        assert database.startswith("mma_")
        assert int(version) >= 140000
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_restart_keeps_data(postgres_server: PostgresServer | ExternalPostgres,
                                     postgres_url: str) -> None:
    """Committed rows survive a server restart on the same port."""
    if isinstance(postgres_server, ExternalPostgres):
        pytest.fail("MMA_TEST_POSTGRES is set: server restart cannot be tested")
    engine = sa.create_engine(postgres_url, pool_pre_ping=True)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (v int)"))
            conn.execute(sa.text("INSERT INTO t VALUES (42)"))
        postgres_server.restart()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT v FROM t")).scalar_one() == 42
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_server_stops_by_pid() -> None:
    """A harness server's postmaster (and its backends) are gone after cleanup()."""
    server = PostgresServer()
    try:
        server.start()
        assert server.proc is not None
        pid = server.proc.pid
        os.kill(pid, 0)
    finally:
        server.cleanup()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not server.workdir.exists()


# -- SMTP --------------------------------------------------------------------------------


def _mail(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "mma@example.org"
    message["To"] = "astronomer@example.org, other@example.org"
    message["Subject"] = subject
    message.set_content("Coincidence found: S250101a × ZTF25aaaaaaa\n")
    return message


def test_smtp_records_mail(smtp_server: SmtpServer) -> None:
    """A mail sent with smtplib is recorded with its envelope and parsed message."""
    assert smtp_server.messages == []
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        client.send_message(_mail("MMA alert"))
    [mail] = smtp_server.wait_for(1)
    assert mail.mail_from == "mma@example.org"
    assert sorted(mail.rcpt_tos) == ["astronomer@example.org", "other@example.org"]
    assert mail.subject == "MMA alert"
    assert "S250101a × ZTF25aaaaaaa" in mail.text()
    assert mail.login is None


def test_smtp_auth_login(smtp_server: SmtpServer) -> None:
    """AUTH with the server's credentials works; wrong credentials are refused."""
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client, \
            pytest.raises(smtplib.SMTPAuthenticationError):
        client.login(smtp_server.username, "wrong")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        client.login(smtp_server.username, smtp_server.password)
        client.send_message(_mail("authenticated"))
    [mail] = smtp_server.wait_for(1)
    assert mail.login == smtp_server.username


# -- HTTP sink ---------------------------------------------------------------------------


def _post_json(url: str, payload: Any) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_http_sink_records_json(http_sink: HttpSink) -> None:
    """A Slack-style JSON POST is answered ``200 ok`` and recorded."""
    payload = {"text": "S250101a: 1 candidate", "blocks": [{"type": "section"}]}
    status, _, body = _post_json(http_sink.url_for("/services/T000/B000/XXX"), payload)
    assert (status, body) == (200, b"ok")
    [request] = http_sink.requests
    assert request.method == "POST"
    assert request.path == "/services/T000/B000/XXX"
    assert request.header("content-type") == "application/json"
    assert request.json == payload
    assert json.loads(request.body) == payload


def test_http_sink_queued_rate_limit(http_sink: HttpSink) -> None:
    """Queued 429 (``Retry-After: 1``) and 500 answers come first, then ``200 ok``."""
    http_sink.queue_rate_limit(count=2, retry_after=1)
    http_sink.queue_error(500)
    answers = [_post_json(http_sink.url, {"n": n}) for n in range(4)]
    assert [status for status, _, _ in answers] == [429, 429, 500, 200]
    assert answers[0][1]["Retry-After"] == "1"
    assert [r.json for r in http_sink.posts()] == [{"n": n} for n in range(4)]
    assert http_sink.queued == 0


def test_http_sink_serves_files(http_sink: HttpSink) -> None:
    """Static files are served whole, slowly, or cut off; unknown paths are 404."""
    data = os.urandom(200_000)
    url = http_sink.add_file("/skymap.fits.gz", data, "application/gzip")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/gzip"
        assert response.read() == data

    slow = http_sink.add_file("/slow.fits", data[:1000], chunk_size=250, chunk_delay=0.1)
    started = time.monotonic()
    with urllib.request.urlopen(slow, timeout=10) as response:
        assert response.read() == data[:1000]
    assert time.monotonic() - started >= 0.25  # 3 pauses between 4 chunks

    cut = http_sink.add_file("/cut.fits", data, truncate_at=1000)
    with pytest.raises(http.client.IncompleteRead), \
            urllib.request.urlopen(cut, timeout=10) as response:
        response.read()

    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(http_sink.url_for("/missing"), timeout=10)
    assert excinfo.value.code == 404
    assert [r.path for r in http_sink.requests] == [
        "/skymap.fits.gz", "/slow.fits", "/cut.fits", "/missing"]
