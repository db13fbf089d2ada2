"""pytest plugin with the real-service fixtures (load with ``pytest_plugins``).

Session-scoped, started lazily on first use and stopped by PID at session end (also when
tests fail; SIGTERM to pytest is turned into KeyboardInterrupt so teardown still runs, and an
``atexit`` hook is the last backstop):

* ``kafka_broker`` – :class:`~tests.services.kafka.KafkaBroker` (or ``ExternalKafka`` when
  ``MMA_TEST_KAFKA=host:port``); ``kafka_bootstrap`` – its ``"127.0.0.1:<port>"``.
* ``postgres_server`` – :class:`~tests.services.postgres.PostgresServer` (or
  ``ExternalPostgres`` when ``MMA_TEST_POSTGRES=<url>``).
* ``smtp_service`` – :class:`~tests.services.smtp.SmtpServer`.
* ``http_service`` – :class:`~tests.services.http.HttpSink`.

Function-scoped:

* ``kafka_topic`` – a fresh, already created topic name (1 partition).
* ``postgres_url`` – SQLAlchemy URL string of a fresh database, dropped afterwards.
* ``smtp_server`` – the session SMTP server with its messages cleared.
* ``http_sink`` – the session HTTP sink with requests, queued answers and files reset.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from tests.services.http import HttpSink
from tests.services.kafka import ExternalKafka, KafkaBroker, kafka_from_env, unique_topic
from tests.services.postgres import ExternalPostgres, PostgresServer, postgres_from_env
from tests.services.procs import reap_orphans, stop_all
from tests.services.smtp import SmtpServer

logger = logging.getLogger(__name__)

_state = {"sigterm_installed": False}


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into KeyboardInterrupt so pytest runs fixture teardown (stopping services)."""
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """Kill services orphaned by an earlier, SIGKILLed session; make SIGTERM tear down."""
    reap_orphans()
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
        _state["sigterm_installed"] = True


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop anything still running and restore the SIGTERM handler."""
    stop_all()
    if _state["sigterm_installed"] and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _state["sigterm_installed"] = False


# -- Kafka -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker | ExternalKafka]:
    """A KRaft broker on 127.0.0.1 (jars fetched once into the cache), stopped at session end.

    ``.bootstrap_servers``, ``.client_config(**extra)``, ``.gcn_config(group_id, **extra)``,
    ``.restart()``, ``.stop()``/``.start()``/``.kill()`` (harness broker only).
    """
    broker = kafka_from_env()
    try:
        yield broker
    finally:
        broker.cleanup()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker | ExternalKafka) -> str:
    """The broker's ``bootstrap.servers`` string."""
    return kafka_broker.bootstrap_servers


@pytest.fixture
def kafka_topic(kafka_broker: KafkaBroker | ExternalKafka) -> str:
    """A fresh topic (``mma-test-<uuid>``, 1 partition), created before the test."""
    from confluent_kafka.admin import AdminClient, NewTopic

    if isinstance(kafka_broker, KafkaBroker) and not kafka_broker.running():
        kafka_broker.start()  # an earlier test stopped it
    topic = unique_topic()
    admin = AdminClient(kafka_broker.client_config())
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    futures[topic].result(timeout=30)
    return topic


# -- PostgreSQL --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | ExternalPostgres]:
    """A throwaway PostgreSQL cluster on 127.0.0.1, stopped at session end.

    ``.host``, ``.port``, ``.admin_url`` (SQLAlchemy URL of db ``postgres``),
    ``.create_database(name=None) -> url``, ``.drop_database(name)``, ``.restart()``,
    ``.stop()``/``.start()``/``.kill()`` (harness server only).
    """
    server = postgres_from_env()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer | ExternalPostgres) -> Iterator[str]:
    """``postgresql+psycopg://postgres@127.0.0.1:<port>/mma_<random>``: a fresh database,
    dropped (``WITH (FORCE)``) after the test."""
    if isinstance(postgres_server, PostgresServer) and not postgres_server.running():
        postgres_server.start()
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        if isinstance(postgres_server, PostgresServer) and not postgres_server.running():
            postgres_server.start()  # the test stopped or killed it
        postgres_server.drop_database(url.rsplit("/", 1)[1])


# -- SMTP and HTTP -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def smtp_service() -> Iterator[SmtpServer]:
    """The session's recording SMTP server (see ``smtp_server`` for a cleared one)."""
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_server(smtp_service: SmtpServer) -> Iterator[SmtpServer]:
    """The recording SMTP server with no messages: ``.host``, ``.port``, ``.messages``,
    ``.wait_for(count, timeout)``, ``.username``/``.password`` (optional AUTH)."""
    smtp_service.clear()
    yield smtp_service
    smtp_service.clear()


@pytest.fixture(scope="session")
def http_service() -> Iterator[HttpSink]:
    """The session's HTTP sink (see ``http_sink`` for a reset one)."""
    sink = HttpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def http_sink(http_service: HttpSink) -> Iterator[HttpSink]:
    """The HTTP sink, reset: ``.url``, ``.url_for(path)``, ``.requests``, ``.posts(path)``,
    ``.wait_for(count)``, ``.queue_response(...)``, ``.queue_rate_limit(count, retry_after)``,
    ``.queue_error(status, count)``, ``.add_file(path, data, ...)``."""
    http_service.reset()
    yield http_service
    http_service.reset()
