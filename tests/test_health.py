"""The health endpoint over real loopback HTTP."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from mma.service.health import HealthServer, Metrics


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers["Content-Type"], err.read()


@pytest.fixture
def server() -> Iterator[HealthServer]:
    srv = HealthServer(
        metrics=Metrics(), max_loop_age_s=1.0, source_lag=lambda: {"ztf": 4.0, "gcn": 0.0}
    ).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_healthz_follows_the_main_loop(server: HealthServer) -> None:
    assert server.port > 0
    code, ctype, body = _get(f"http://127.0.0.1:{server.port}/healthz")
    assert code == 503  # no heartbeat yet
    assert json.loads(body)["status"] == "degraded"

    server.ping()
    code, ctype, body = _get(f"{server.url}/healthz")
    doc: dict[str, Any] = json.loads(body)
    assert (code, ctype) == (200, "application/json")
    assert doc["status"] == "ok"
    assert 0 <= doc["last_loop_age_s"] < 1.0
    assert doc["sources"] == {"ztf": 4.0, "gcn": 0.0}
    assert doc["started_at"].endswith("+00:00")

    time.sleep(1.2)
    code, _, body = _get(f"{server.url}/healthz")
    doc = json.loads(body)
    assert code == 503
    assert doc["status"] == "degraded"
    assert doc["last_loop_age_s"] > 1.0

    server.ping()
    assert _get(f"{server.url}/healthz")[0] == 200


def test_metrics_exposition(server: HealthServer) -> None:
    m = server.metrics
    m.messages_in.labels(source="ztf", kind="alert").inc(3)
    m.dead_letters.labels(source="ztf").inc()
    m.coincidences.labels(status="active").inc(2)
    m.deliveries.labels(channel="slack", outcome="sent").inc()
    m.consumer_lag.labels(topic="ztf_public", partition="0").set(17)
    m.outbox_backlog.set(5)
    m.processing_seconds.observe(0.02)

    code, ctype, body = _get(f"{server.url}/metrics")
    text = body.decode()
    assert code == 200
    assert ctype.startswith("text/plain")
    assert 'mma_messages_in_total{kind="alert",source="ztf"} 3.0' in text
    assert 'mma_dead_letters_total{source="ztf"} 1.0' in text
    assert 'mma_coincidences_total{status="active"} 2.0' in text
    assert 'mma_deliveries_total{channel="slack",outcome="sent"} 1.0' in text
    assert 'mma_consumer_lag{partition="0",topic="ztf_public"} 17.0' in text
    assert "mma_outbox_backlog 5.0" in text
    assert "mma_processing_seconds_count 1.0" in text
    assert 'mma_processing_seconds_bucket{le="0.025"} 1.0' in text
    assert _get(f"{server.url}/nope")[0] == 404


def test_registries_are_private() -> None:
    a, b = Metrics(), Metrics()
    a.outbox_backlog.set(7)
    assert b"mma_outbox_backlog 7.0" in a.render()
    assert b"mma_outbox_backlog 0.0" in b.render()


def test_failing_lag_callback_degrades_gracefully() -> None:
    def boom() -> dict[str, float]:
        raise RuntimeError("consumer closed")

    with HealthServer(max_loop_age_s=60, source_lag=boom) as srv:
        srv.ping()
        code, _, body = _get(f"{srv.url}/healthz")
    assert code == 200
    assert "consumer closed" in json.loads(body)["sources_error"]


def test_stop_frees_the_port() -> None:
    srv = HealthServer().start()
    port = srv.port
    assert _get(f"{srv.url}/metrics")[0] == 200
    srv.stop()
    srv.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    # the same port can be bound again straight away
    again = HealthServer(port=port).start()
    try:
        assert again.port == port
        again.ping()
        assert _get(f"{again.url}/healthz")[0] == 200
    finally:
        again.stop()
