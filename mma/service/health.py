"""Health and metrics endpoint: a small loopback HTTP server in a daemon thread.

``GET /healthz`` answers JSON::

    {"status": "ok", "last_loop_age_s": 0.8, "max_loop_age_s": 60.0,
     "started_at": "2025-01-01T00:00:00+00:00", "uptime_s": 12.5,
     "sources": {"gcn.notices.icecube.lvk_nu_track_search": 0.0}}

with HTTP 200 while the main loop has called :meth:`HealthServer.ping` within
``max_loop_age_s``, else 503 and ``"status": "degraded"`` (also before the
first ping). ``sources`` is whatever the optional *source_lag* callback
returns (e.g. consumer lag or seconds since the last message per source).
``GET /metrics`` is the Prometheus text exposition of one :class:`Metrics`.

All metrics live in :class:`Metrics`, each instance with its own
:class:`prometheus_client.CollectorRegistry`, so there is no global state and
tests may build as many as they like. The daemon records with the ordinary
prometheus_client calls::

    metrics.messages_in.labels(source="ztf", kind="alert").inc()
    metrics.dead_letters.labels(source="ztf").inc()
    metrics.coincidences.labels(status="active").inc()
    metrics.deliveries.labels(channel="slack", outcome="sent").inc()
    metrics.consumer_lag.labels(topic="ztf_public", partition="0").set(42)
    with metrics.processing_seconds.time(): ...
    metrics.outbox_backlog.set(3)
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger(__name__)

__all__ = ["HealthServer", "Metrics"]

#: Buckets for the per-message processing time [s]: parse + DB + correlate.
PROCESSING_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The daemon's Prometheus metrics, registered in a private registry.

    Parameters
    ----------
    namespace : str
        Prefix of every metric name (``mma_messages_in_total`` …).

    Attributes
    ----------
    registry : prometheus_client.CollectorRegistry
        The registry holding only these metrics.
    messages_in : Counter
        Messages consumed, labels ``source`` (handler or topic) and ``kind``
        (notice | alert).
    dead_letters : Counter
        Messages stored as dead letters, label ``source``.
    coincidences : Counter
        Coincidences written, label ``status`` (active | updated | retracted).
    deliveries : Counter
        Outbox delivery attempts, labels ``channel`` and ``outcome``
        (sent | retry | failed).
    consumer_lag : Gauge
        Kafka consumer lag [messages], labels ``topic`` and ``partition``.
    processing_seconds : Histogram
        Time to process one message end to end [s].
    outbox_backlog : Gauge
        Deliveries pending in the outbox.
    """

    def __init__(self, namespace: str = "mma") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.messages_in = Counter(
            "messages_in",
            "Messages consumed.",
            ["source", "kind"],
            namespace=namespace,
            registry=reg,
        )
        self.dead_letters = Counter(
            "dead_letters",
            "Messages stored as dead letters.",
            ["source"],
            namespace=namespace,
            registry=reg,
        )
        self.coincidences = Counter(
            "coincidences",
            "Coincidences written, by status.",
            ["status"],
            namespace=namespace,
            registry=reg,
        )
        self.deliveries = Counter(
            "deliveries",
            "Outbox delivery attempts, by channel and outcome.",
            ["channel", "outcome"],
            namespace=namespace,
            registry=reg,
        )
        self.consumer_lag = Gauge(
            "consumer_lag",
            "Kafka consumer lag [messages].",
            ["topic", "partition"],
            namespace=namespace,
            registry=reg,
        )
        self.processing_seconds = Histogram(
            "processing_seconds",
            "Time to process one message [s].",
            namespace=namespace,
            registry=reg,
            buckets=PROCESSING_BUCKETS_S,
        )
        self.outbox_backlog = Gauge(
            "outbox_backlog",
            "Deliveries pending in the outbox.",
            namespace=namespace,
            registry=reg,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of :attr:`registry`.

        Returns
        -------
        bytes
            Body for ``GET /metrics`` (content type :data:`CONTENT_TYPE_LATEST`).
        """
        return generate_latest(self.registry)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    health: HealthServer


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "mma-health"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        health = self.server.health
        if path == "/healthz":
            code, doc = health.check()
            self._send(code, "application/json", json.dumps(doc).encode("utf-8"))
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, health.metrics.render())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class HealthServer:
    """``/healthz`` and ``/metrics`` on a loopback port, served from a daemon thread.

    Parameters
    ----------
    host : str
        Address to bind; keep the loopback default unless a firewall or a
        reverse proxy guards the port (there is no authentication).
    port : int
        TCP port; 0 picks a free one (read :attr:`port` after :meth:`start`).
    metrics : Metrics, optional
        The metrics to expose; a fresh :class:`Metrics` by default.
    max_loop_age_s : float
        Longest time [s] since the last :meth:`ping` for which ``/healthz``
        still answers 200.
    source_lag : callable, optional
        Returns a mapping ``source -> lag`` included as ``"sources"``; called
        from the HTTP thread, so it must be thread-safe and fast.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        metrics: Metrics | None = None,
        max_loop_age_s: float = 60.0,
        source_lag: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.metrics = metrics if metrics is not None else Metrics()
        self.max_loop_age_s = float(max_loop_age_s)
        self.source_lag = source_lag
        self.started_at = datetime.now(UTC)
        self._started_mono = time.monotonic()
        self._last_ping: float | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (the requested one before :meth:`start`)."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._requested_port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8125``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> HealthServer:
        """Bind and serve in a daemon thread.

        Returns
        -------
        HealthServer
            self, for chaining.

        Raises
        ------
        OSError
            If the address cannot be bound.
        """
        if self._server is not None:
            return self
        cls = _Server6 if ":" in self.host else _Server
        server = cls((self.host, self._requested_port), _Handler)
        server.health = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="mma-health",
            daemon=True,
        )
        self._thread.start()
        log.info("health endpoint on %s/healthz, metrics on %s/metrics", self.url, self.url)
        return self

    def ping(self) -> None:
        """Record a heartbeat of the main loop (cheap; call once per iteration)."""
        self._last_ping = time.monotonic()

    def check(self) -> tuple[int, dict[str, Any]]:
        """Evaluate health as ``/healthz`` reports it.

        Returns
        -------
        tuple of (int, dict)
            HTTP status (200 or 503) and the JSON document.
        """
        now = time.monotonic()
        age = None if self._last_ping is None else now - self._last_ping
        healthy = age is not None and age <= self.max_loop_age_s
        doc: dict[str, Any] = {
            "status": "ok" if healthy else "degraded",
            "last_loop_age_s": None if age is None else round(age, 3),
            "max_loop_age_s": self.max_loop_age_s,
            "started_at": self.started_at.isoformat(),
            "uptime_s": round(now - self._started_mono, 3),
        }
        if self.source_lag is not None:
            try:
                doc["sources"] = dict(self.source_lag())
            except Exception as exc:
                log.warning("source_lag callback failed: %s", exc)
                doc["sources_error"] = f"{type(exc).__name__}: {exc}"
        return (200 if healthy else 503), doc

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and release the port.

        Parameters
        ----------
        timeout : float
            Longest wait [s] for the serving thread to end.
        """
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout)

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
