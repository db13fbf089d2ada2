"""A throwaway single-node Apache Kafka (KRaft, broker + controller) on loopback.

The jars come from Maven Central through :func:`tests.services.install.ensure_kafka_jars`.
The broker runs from a ``tempfile.mkdtemp()`` directory holding its ``server.properties``,
``log4j2.properties``, data (``data/``) and logs (``logs/server.log``, ``logs/stdout.log``).

Set ``MMA_TEST_KAFKA=host:port`` to use an existing broker instead (:class:`ExternalKafka`;
it cannot be restarted).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from tests.services.install import ensure_java, ensure_kafka_jars
from tests.services.procs import (
    LOOPBACK,
    ManagedProcess,
    ProcessService,
    error_lines,
    free_port,
    start_with_port_retry,
    tail,
)

logger = logging.getLogger(__name__)

# A fixed KRaft cluster id (22 url-safe base64 chars; must not start with "-").
CLUSTER_ID = "MmaTestKafkaCluster01A"
JVM_OPTS = ["-Xmx512m", "-Xms64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true"]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class KafkaStartError(RuntimeError):
    """The broker did not come up (the message includes the tail of its logs)."""


class KafkaService(Protocol):
    """What tests may rely on, for both the harness's broker and an external one."""

    bootstrap_servers: str

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """Config for confluent-kafka clients."""
        ...

    def gcn_config(self, group_id: str, **extra: Any) -> dict[str, Any]:
        """Config for ``gcn_kafka.Consumer(config=...)``."""
        ...

    def restart(self) -> None:
        """Stop and start the broker."""
        ...

    def stop(self) -> None:
        """Stop the broker."""
        ...


def wait_until_ready(bootstrap: str, timeout: float, proc: ManagedProcess | None = None) -> None:
    """Wait until an AdminClient can list topics on ``bootstrap`` (raise ``TimeoutError``)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000,
                              "log_level": 0, "logger": logging.getLogger(f"{__name__}.admin")}
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.running():
            raise KafkaStartError(f"broker exited with code {proc.popen.returncode}")
        try:
            admin.list_topics(timeout=1.0)
            return
        except KafkaException as exc:
            last = exc
            time.sleep(0.2)
    raise TimeoutError(f"Kafka at {bootstrap} not ready after {timeout:.0f} s: {last}")


def warm_up_group_coordinator(bootstrap: str, timeout: float = 20.0) -> None:
    """Make the broker create ``__consumer_offsets`` now (≈0.2 s).

    Otherwise the first consumer-group join of a test waits ≈3 s (librdkafka backs off while
    the coordinator topic is being created).  Failure only logs a warning.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {"bootstrap.servers": bootstrap,
                              "logger": logging.getLogger(f"{__name__}.admin")}
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        futures = admin.describe_consumer_groups(["mma-test-warm-up"], request_timeout=5)
        try:
            futures["mma-test-warm-up"].result()
            return
        except KafkaException as exc:
            logger.debug("group coordinator not ready yet: %s", exc)
            time.sleep(0.1)
    logger.warning("Kafka group coordinator at %s not ready after %.0f s", bootstrap, timeout)


def _client_config(bootstrap: str, extra: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap}
    config.update(extra)
    return config


def _gcn_config(bootstrap: str, group_id: str, extra: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "PLAINTEXT",
        "group.id": group_id,
        "auto.offset.reset": "earliest",
    }
    config.update(extra)
    return config


class KafkaBroker(ProcessService):
    """A KRaft broker + controller started by the harness on free loopback ports.

    Attributes: ``host``, ``port`` (broker listener), ``controller_port``,
    ``bootstrap_servers`` (``"127.0.0.1:<port>"``), ``workdir``, ``log_path``.
    """

    def __init__(self, workdir: Path | None = None) -> None:
        self.libs = ensure_kafka_jars()
        self.java = ensure_java()
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="mma-kafka-"))
        self.host = LOOPBACK
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.bootstrap_servers = f"{self.host}:{self.port}"
        self.data_dir = self.workdir / "data"
        self.logs_dir = self.workdir / "logs"
        self.log_path = self.logs_dir / "server.log"
        self.stdout_path = self.logs_dir / "stdout.log"
        self.properties = self.workdir / "server.properties"
        self.log4j = self.workdir / "log4j2.properties"
        self.proc: ManagedProcess | None = None
        self._write_config()

    def _write_config(self) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": (f"PLAINTEXT://{self.host}:{self.port},"
                          f"CONTROLLER://{self.host}:{self.controller_port}"),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Daemons under test use a 3 s session, so that a SIGKILLed one's partitions
            # move on sooner than the default minimum of 6 s would let them.
            "group.min.session.timeout.ms": "1000",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "log.flush.interval.messages": "1",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
        }
        self.properties.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        self.log4j.write_text(
            "status = warn\n"
            "appender.file.type = File\n"
            "appender.file.name = FILE\n"
            f"appender.file.fileName = {self.log_path}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
            "logger.kafka.name = kafka\nlogger.kafka.level = INFO\n"
            "logger.apache.name = org.apache\nlogger.apache.level = INFO\n"
        )

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            self.java, *JVM_OPTS,
            f"-Dlog4j2.configurationFile={self.log4j}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp", f"{self.libs}/*", main, *args,
        ]

    def _format(self) -> None:
        """Format the KRaft storage once (skipped on restart: ``meta.properties`` exists)."""
        if (self.data_dir / "meta.properties").exists():
            return
        argv = self._java("kafka.tools.StorageTool", "format",
                          f"--cluster-id={CLUSTER_ID}", "-c", str(self.properties))
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL, check=False)
        if result.returncode != 0:
            raise KafkaStartError(
                f"kafka storage format failed (exit {result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n--- {self.log_path} ---\n{tail(self.log_path)}"
            )

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the broker (formatting the data dir first if new) and wait until ready."""
        if self.proc is not None and self.proc.running():
            return
        started = time.monotonic()
        self._format()
        self.proc = ManagedProcess(
            "kafka", self._java("kafka.Kafka", str(self.properties)), self.stdout_path,
            marker=str(self.workdir), cwd=self.workdir, stop_signal=signal.SIGTERM,
        )
        try:
            wait_until_ready(self.bootstrap_servers, timeout, self.proc)
        except (TimeoutError, KafkaStartError) as exc:
            self.proc.stop(timeout=5)
            raise KafkaStartError(
                f"Kafka broker failed to start on {self.bootstrap_servers}: {exc}\n"
                f"--- ERROR lines of {self.log_path} ---\n{error_lines(self.log_path)}\n"
                f"--- tail of {self.log_path} ---\n{tail(self.log_path)}\n"
                f"--- tail of {self.stdout_path} ---\n{tail(self.stdout_path)}"
            ) from exc
        warm_up_group_coordinator(self.bootstrap_servers)
        logger.info("Kafka ready on %s (pid %d) in %.1f s",
                    self.bootstrap_servers, self.proc.pid, time.monotonic() - started)

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """Return a confluent-kafka config dict with ``bootstrap.servers`` plus ``extra``.

        Keys use dots in Kafka, so pass them as ``**{"group.id": "x"}``.
        """
        return _client_config(self.bootstrap_servers, extra)

    def gcn_config(self, group_id: str, **extra: Any) -> dict[str, Any]:
        """Return a ``gcn_kafka.Consumer`` config for this broker (PLAINTEXT, fixed group)."""
        return _gcn_config(self.bootstrap_servers, group_id, extra)


class ExternalKafka:
    """An existing broker named by ``MMA_TEST_KAFKA=host:port``; not started or stopped here."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        host, _, port = bootstrap_servers.split(",", maxsplit=1)[0].rpartition(":")
        self.host = host
        self.port = int(port)
        wait_until_ready(bootstrap_servers, START_TIMEOUT)

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """Return a confluent-kafka config dict with ``bootstrap.servers`` plus ``extra``."""
        return _client_config(self.bootstrap_servers, extra)

    def gcn_config(self, group_id: str, **extra: Any) -> dict[str, Any]:
        """Return a ``gcn_kafka.Consumer`` config for this broker (PLAINTEXT, fixed group)."""
        return _gcn_config(self.bootstrap_servers, group_id, extra)

    def restart(self) -> None:
        """Not possible for a broker the harness did not start."""
        raise RuntimeError("MMA_TEST_KAFKA is set: the external broker cannot be restarted")

    def stop(self) -> None:
        """Nothing to stop."""

    def cleanup(self) -> None:
        """Nothing to clean up."""


def kafka_from_env() -> KafkaBroker | ExternalKafka:
    """Return an :class:`ExternalKafka` if ``MMA_TEST_KAFKA`` is set, else a started broker."""
    external = os.environ.get("MMA_TEST_KAFKA")
    if external:
        return ExternalKafka(external)
    return start_with_port_retry(KafkaBroker, port_taken="Address already in use",
                                 what="Kafka")


def unique_topic(prefix: str = "mma-test") -> str:
    """Return a fresh topic name (``<prefix>-<uuid hex>``)."""
    return f"{prefix}-{uuid.uuid4().hex}"
