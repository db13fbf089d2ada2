"""``mma run`` under faults: a broker restart, a PostgreSQL outage, the watchdog through it.

SIGKILLs and scale-out are tested at volume in ``tests/test_volume_faults.py``.

Real Kafka broker and real PostgreSQL (the harness's services); the daemon runs as a
subprocess configured by environment variables, as in ``tests/test_daemon.py``.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from mma.db.engine import make_engine
from mma.db.schema import alerts
from mma.registry import Registry
from tests.services.kafka import ExternalKafka, KafkaBroker
from tests.services.postgres import ExternalPostgres, PostgresServer
from tests.test_daemon import MMA, SAMPLE, _drain_topic, _produce, _state

pytestmark = pytest.mark.daemon  # runs mma as a subprocess



def _notice_payloads() -> list[bytes]:
    files = sorted(SAMPLE.glob("*.json"), key=lambda p: json.loads(p.read_text())["time_created"])
    return [p.read_bytes() for p in files]


def _alert_payloads() -> list[bytes]:
    avro = (SAMPLE / "ztf-sample-alerts.avro").read_bytes()
    return [payload for _h, payload in Registry().iter_file(avro, "sample")]


def _env(tmp_path: Path, db: str, bootstrap: str, stem: str, **extra: str) -> dict[str, str]:
    """The daemon's configuration (fresh topics and group of *stem*), output on Kafka."""
    return {**os.environ, "MMA_DATABASE__URL": db, "MMA_PATHS__STATE_DIR": str(tmp_path),
            "MMA_PATHS__CACHE_DIR": str(tmp_path), "MMA_LOGGING__LEVEL": "WARNING",
            "MMA_KAFKA__GCN_BOOTSTRAP_SERVERS": bootstrap,
            "MMA_KAFKA__ALERT_BOOTSTRAP_SERVERS": bootstrap,
            "MMA_KAFKA__GROUP_ID": f"g-{stem}", "MMA_KAFKA__POLL_TIMEOUT_SECONDS": "0.5",
            # A killed daemon's partitions move on after 3 s, not 10 (the broker allows it).
            "MMA_KAFKA__SESSION_TIMEOUT_SECONDS": "3",
            "MMA_KAFKA__NOTICE_TOPICS": json.dumps([f"lvk:n-{stem}"]),
            "MMA_KAFKA__ALERT_TOPICS": json.dumps([f"ztf:a-{stem}"]),
            "MMA_CHANNELS__KAFKA__ENABLED": "true",
            "MMA_CHANNELS__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "MMA_CHANNELS__KAFKA__TOPIC": f"out-{stem}", "MMA_SKYMAPS__FETCH": "false",
            "MMA_DAEMON__DELIVER_INTERVAL_SECONDS": "0.5",
            # Event pages are tested on their own; here they would only load the machine.
            "MMA_PAGES__ENABLED": "false", **extra}


def _reference(tmp_path: Path, env: dict[str, str]) -> tuple[dict, int]:
    """A clean ``mma replay`` of the sample: its state and its number of stored alerts."""
    db = f"sqlite:///{tmp_path / 'replay.sqlite'}"
    subprocess.run([MMA, "replay", str(SAMPLE), "--db", db, "--output",
                    str(tmp_path / "r.jsonl")], env=env, check=True, capture_output=True,
                   timeout=120)
    return _state(db), _count_alerts_url(db)


def _count_alerts(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(alerts)).scalar_one())


def _count_alerts_url(url: str) -> int:
    engine = make_engine(url)
    try:
        return _count_alerts(engine)
    finally:
        engine.dispose()


def _distinct_alerts(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            pairs = conn.execute(select(alerts.c.survey, alerts.c.alert_id)).all()
        return len(set(pairs))
    finally:
        engine.dispose()


def _wait_for_alerts(engine: Engine, proc: subprocess.Popen, low: int, timeout: float) -> int:
    """Poll the database until at least *low* alerts are stored; return the count."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"mma run exited early ({proc.returncode})"
        try:
            n = _count_alerts(engine)
        except Exception:  # the schema may not exist yet
            n = 0
        if n >= low:
            return n
        time.sleep(0.05)
    raise AssertionError(f"only {n} alerts stored after {timeout} s (wanted {low})")


def _popen(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"mma run did not finish: {log.read_text()[-3000:]}") from None
    assert proc.returncode == 0, log.read_text()[-3000:]


def test_broker_restart_during_stream_loses_nothing(
        tmp_path: Path, kafka_broker: KafkaBroker | ExternalKafka, kafka_bootstrap: str,
        postgres_url: str) -> None:
    """The broker restarts while ``mma run`` consumes; the rest is produced afterwards.

    librdkafka reconnects on its own; the daemon neither crashes nor skips messages: every
    alert is stored once, the process ends with status 0 at ``--idle-exit``.
    """
    assert isinstance(kafka_broker, KafkaBroker), "needs the harness broker (restartable)"
    stem = uuid.uuid4().hex[:8]
    env = _env(tmp_path, postgres_url, kafka_bootstrap, stem)
    _produce(kafka_bootstrap, f"n-{stem}", _notice_payloads())
    packets = _alert_payloads()
    half = len(packets) // 2
    _produce(kafka_bootstrap, f"a-{stem}", packets[:half])
    reference, n_alerts = _reference(tmp_path, env)

    log = tmp_path / "run.log"
    engine = make_engine(postgres_url)
    try:
        proc = _popen([MMA, "run", "--idle-exit", "15"], env, log)
        try:
            _wait_for_alerts(engine, proc, 20, timeout=60)
            kafka_broker.restart()
            assert proc.poll() is None, log.read_text()[-3000:]
            _produce(kafka_bootstrap, f"a-{stem}", packets[half:])
        except BaseException:
            proc.kill()
            proc.wait(10)
            raise
        _finish(proc, log)
    finally:
        engine.dispose()
    state = _state(postgres_url)
    assert _count_alerts_url(postgres_url) == n_alerts == _distinct_alerts(postgres_url)
    assert state["notices"] == 4
    assert state["letters"] == []
    assert state["live"] == reference["live"]
    keys = {(m.key() or b"").decode() for m in _drain_topic(kafka_bootstrap, f"out-{stem}")}
    assert reference["live"] <= keys


def _run_through_outage(env: dict[str, str], log: Path, server: PostgresServer,
                        url: str, seconds: float) -> int:
    """``mma run --idle-exit 5``, PostgreSQL stopped for *seconds* once 30 alerts are
    stored, then to the end; returns the alerts stored before the outage."""
    engine = make_engine(url)
    try:
        proc = _popen([MMA, "run", "--idle-exit", "5"], env, log)
        try:
            stored = _wait_for_alerts(engine, proc, 30, timeout=60)
            engine.dispose()
            server.stop()
            try:
                time.sleep(seconds)
                assert proc.poll() is None, log.read_text()[-3000:]
            finally:
                server.start()
        except BaseException:
            proc.kill()
            proc.wait(10)
            raise
        _finish(proc, log)
    finally:
        engine.dispose()
    return stored


def test_postgres_outage_during_stream_is_retried_not_dead_lettered(
        tmp_path: Path, kafka_bootstrap: str,
        postgres_server: PostgresServer | ExternalPostgres, postgres_url: str) -> None:
    """PostgreSQL stops for ~3 s while ``mma run`` stores alerts, then comes back.

    The daemon retries the same message with backoff (TransientError) and commits nothing
    meanwhile: it finishes with status 0, every alert stored once, no dead letters (the
    sample has no bad message, so any dead letter is a good message lost to the outage).
    """
    assert isinstance(postgres_server, PostgresServer), "needs the harness server (stoppable)"
    stem = uuid.uuid4().hex[:8]
    # Batches of 20: the 614 alerts take ~30 transactions, so the outage lands mid-stream
    # (with the default 500 the whole sample can commit between two polls of the count).
    env = _env(tmp_path, postgres_url, kafka_bootstrap, stem,
               MMA_DAEMON__RETRY_SECONDS="0.5", MMA_DAEMON__MAX_RETRY_SECONDS="2",
               MMA_KAFKA__BATCH="20")
    _produce(kafka_bootstrap, f"n-{stem}", _notice_payloads())
    packets = _alert_payloads()
    _produce(kafka_bootstrap, f"a-{stem}", packets)
    reference, n_alerts = _reference(tmp_path, env)

    log = tmp_path / "run.log"
    stored = _run_through_outage(env, log, postgres_server, postgres_url, seconds=3)
    assert stored < n_alerts, "the daemon finished before the outage"
    text = log.read_text()
    assert "retrying in" in text, "the outage was not noticed: " + text[-2000:]
    state = _state(postgres_url)
    assert state["letters"] == [], text[-3000:]
    assert _count_alerts_url(postgres_url) == n_alerts == _distinct_alerts(postgres_url)
    assert state["notices"] == 4
    assert state["live"] == reference["live"]


class NotifyListener(threading.Thread):
    """systemd's end of ``NOTIFY_SOCKET``: every datagram with the time it came."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="notify", daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.told: list[tuple[float, str]] = []
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                self.told.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                continue

    def stop(self) -> None:
        self.running = False
        self.join(5)
        self.sock.close()

    def watchdog_gaps(self) -> list[float]:
        """Seconds between READY, the WATCHDOG=1 pings and STOPPING, in order."""
        marks = [t for t, text in self.told
                 if any(f in text.split("\n") for f in ("READY=1", "WATCHDOG=1", "STOPPING=1"))]
        return [b - a for a, b in itertools.pairwise(marks)]


def test_watchdog_is_pinged_through_a_database_outage_longer_than_watchdog_sec(
        tmp_path: Path, kafka_bootstrap: str,
        postgres_server: PostgresServer | ExternalPostgres, postgres_url: str) -> None:
    """WatchdogSec=3 s and a PostgreSQL outage of 10 s while alerts are being stored.

    The daemon backs off 1, 2, 4, 8 s between retries; systemd would kill it if a
    sleep went by without a ping. Every gap between the READY, WATCHDOG and STOPPING
    notifications must stay under WatchdogSec, and the daemon finishes the stream.
    """
    assert isinstance(postgres_server, PostgresServer), "needs the harness server (stoppable)"
    stem = uuid.uuid4().hex[:8]
    listener = NotifyListener(tmp_path / "notify.sock")
    listener.start()
    env = _env(tmp_path, postgres_url, kafka_bootstrap, stem, MMA_KAFKA__BATCH="20",
               MMA_DAEMON__RETRY_SECONDS="1", MMA_DAEMON__MAX_RETRY_SECONDS="8",
               NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="3000000")
    _produce(kafka_bootstrap, f"n-{stem}", _notice_payloads())
    packets = _alert_payloads()
    _produce(kafka_bootstrap, f"a-{stem}", packets)
    log = tmp_path / "run.log"
    try:
        _run_through_outage(env, log, postgres_server, postgres_url, seconds=10)
    finally:
        listener.stop()
    text = log.read_text()
    assert "retrying in 8 s" in text, "the outage did not reach the longest back-off: " + text
    gaps = listener.watchdog_gaps()
    assert len(gaps) > 10 and max(gaps) < 3.0, (max(gaps, default=None), listener.told[:5])
    assert _count_alerts_url(postgres_url) == len(packets)


def test_sigterm_while_the_database_is_down_stops_cleanly(
        tmp_path: Path, kafka_bootstrap: str,
        postgres_server: PostgresServer | ExternalPostgres, postgres_url: str) -> None:
    """systemctl stop during a database outage: the daemon stops waiting, commits nothing,
    exits 0 well inside TimeoutStopSec; the restart stores everything."""
    assert isinstance(postgres_server, PostgresServer), "needs the harness server (stoppable)"
    stem = uuid.uuid4().hex[:8]
    env = _env(tmp_path, postgres_url, kafka_bootstrap, stem, MMA_KAFKA__BATCH="20",
               MMA_DAEMON__RETRY_SECONDS="4", MMA_DAEMON__MAX_RETRY_SECONDS="30")
    _produce(kafka_bootstrap, f"n-{stem}", _notice_payloads())
    packets = _alert_payloads()
    _produce(kafka_bootstrap, f"a-{stem}", packets)
    log = tmp_path / "run.log"
    engine = make_engine(postgres_url)
    proc = _popen([MMA, "run"], env, log)
    try:
        _wait_for_alerts(engine, proc, 30, timeout=60)
        engine.dispose()
        postgres_server.stop()
        try:
            deadline = time.monotonic() + 30
            while "retrying in" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            asked = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()[-3000:]
            assert time.monotonic() - asked < 15
        finally:
            postgres_server.start()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        engine.dispose()
    assert "stopped while the database is unreachable" in log.read_text()
    _finish(_popen([MMA, "run", "--idle-exit", "5"], env, log), log)
    assert _count_alerts_url(postgres_url) == len(packets) == _distinct_alerts(postgres_url)
