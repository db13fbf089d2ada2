"""``mma run`` under faults: SIGKILL mid-stream, a broker restart, a PostgreSQL outage.

Real Kafka broker and real PostgreSQL (the harness's services); the daemon runs as a
subprocess configured by environment variables, as in ``tests/test_daemon.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections import defaultdict
from pathlib import Path

from sqlalchemy import Engine, func, select

from mma.db.engine import make_engine
from mma.db.schema import alerts
from mma.registry import Registry
from tests.services.kafka import ExternalKafka, KafkaBroker
from tests.services.postgres import ExternalPostgres, PostgresServer
from tests.test_daemon import MMA, SAMPLE, _drain_topic, _produce, _state

HEADER_REVISION = "mma-revision"


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
            "MMA_KAFKA__NOTICE_TOPICS": json.dumps([f"lvk:n-{stem}"]),
            "MMA_KAFKA__ALERT_TOPICS": json.dumps([f"ztf:a-{stem}"]),
            "MMA_CHANNELS__KAFKA__ENABLED": "true",
            "MMA_CHANNELS__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "MMA_CHANNELS__KAFKA__TOPIC": f"out-{stem}", "MMA_SKYMAPS__FETCH": "false",
            "MMA_DAEMON__DELIVER_INTERVAL_SECONDS": "0.5", **extra}


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


def test_sigkill_mid_stream_then_restart_stores_everything_once(
        tmp_path: Path, kafka_bootstrap: str, postgres_url: str) -> None:
    """SIGKILL while alerts are being stored, restart, compare with a clean replay.

    Offsets are committed after the transaction, so the restart replays the uncommitted
    tail, which the idempotent store absorbs: every alert and notice is stored exactly once
    and the live coincidences are a clean replay's. The outbox is delivered at least once:
    a kill between the producer's send and the row being marked sent re-sends the message
    after the restart. So on the output topic every live coincidence appears, and any
    duplicate of a (key, ``mma-revision``) pair is byte-identical (same value, same headers);
    a duplicate that differs would be two different messages with the same revision.
    """
    stem = uuid.uuid4().hex[:8]
    # Deliveries the killed daemon had claimed wait out their lease before the restart
    # re-sends them: a short lease, so that this happens before it idles out.
    env = _env(tmp_path, postgres_url, kafka_bootstrap, stem, MMA_OUTBOX__LEASE_SECONDS="2")
    _produce(kafka_bootstrap, f"n-{stem}", _notice_payloads())
    packets = _alert_payloads()
    # A second copy of the stream keeps the daemon busy (duplicates are absorbed).
    _produce(kafka_bootstrap, f"a-{stem}", packets + packets)
    reference, n_alerts = _reference(tmp_path, env)
    assert n_alerts > 100 and reference["live"]

    log = tmp_path / "run.log"
    engine = make_engine(postgres_url)
    try:
        proc = _popen([MMA, "run"], env, log)
        try:
            stored = _wait_for_alerts(engine, proc, 50, timeout=60)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        assert stored < n_alerts, "the daemon finished before it could be killed"
        before = _count_alerts(engine)
        assert before < n_alerts
    finally:
        engine.dispose()

    again = _popen([MMA, "run", "--idle-exit", "5"], env, log)
    _finish(again, log)
    after = _count_alerts_url(postgres_url)
    assert after == n_alerts == _distinct_alerts(postgres_url), (
        f"{before} alerts at the kill, {after} after the restart (of {n_alerts}): "
        + log.read_text()[-2000:])
    state = _state(postgres_url)
    assert state["notices"] == reference["notices"] == 4
    assert state["letters"] == []
    assert state["live"] == reference["live"]

    out = _drain_topic(kafka_bootstrap, f"out-{stem}")
    seen: dict[tuple[str, str], set[tuple[bytes, tuple]]] = defaultdict(set)
    for msg in out:
        key = (msg.key() or b"").decode()
        headers = tuple(sorted((k, v) for k, v in (msg.headers() or [])))
        revision = dict(headers).get(HEADER_REVISION, b"").decode()
        seen[(key, revision)].add((msg.value() or b"", headers))
    assert reference["live"] <= {key for key, _rev in seen}
    differing = {pair: len(versions) for pair, versions in seen.items() if len(versions) > 1}
    assert differing == {}, f"same (key, revision) with different content: {differing}"


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
    engine = make_engine(postgres_url)
    try:
        proc = _popen([MMA, "run", "--idle-exit", "5"], env, log)
        try:
            stored = _wait_for_alerts(engine, proc, 30, timeout=60)
            engine.dispose()
            postgres_server.stop()
            try:
                time.sleep(3)
                assert proc.poll() is None, log.read_text()[-3000:]
            finally:
                postgres_server.start()
        except BaseException:
            proc.kill()
            proc.wait(10)
            raise
        _finish(proc, log)
    finally:
        engine.dispose()
    assert stored < n_alerts, "the daemon finished before the outage"
    text = log.read_text()
    assert "retrying in" in text, "the outage was not noticed: " + text[-2000:]
    state = _state(postgres_url)
    assert state["letters"] == [], text[-3000:]
    assert _count_alerts_url(postgres_url) == n_alerts == _distinct_alerts(postgres_url)
    assert state["notices"] == 4
    assert state["live"] == reference["live"]
