"""GCN's Kafka heartbeat (topic ``gcn.heartbeat``): a liveness metric, not a notice.

GCN publishes on ``gcn.heartbeat`` a small JSON message about once a second::

    {"$schema": "https://gcn.nasa.gov/schema/main/gcn/notices/core/Alert.schema.json",
     "alert_datetime": "2024-07-25T15:50:35.792451Z"}

so that a client can tell its connection to GCN works even when no notice comes for
days. Such a message is neither stored nor dead-lettered: :class:`mma.service.intake.Intake`
hands every message of the topic to :meth:`GcnHeartbeat.receive` before any handler
is looked up, and its offset is committed with the batch's.

What is kept, by whom:

* in memory (:class:`GcnHeartbeat`): when the last heartbeat was received, the
  ``alert_datetime`` it carried (GCN's send time) and the difference, the latency;
* in ``/metrics`` (the daemon's :class:`~mma.service.health.Metrics` registry):
  ``mma_gcn_heartbeat_received_timestamp_seconds``,
  ``mma_gcn_heartbeat_latency_seconds`` and ``mma_gcn_heartbeats_total{outcome}``
  (``ok`` | ``malformed``);
* in the shared database, through the daemon's per-topic books
  (:class:`~mma.service.sources.SourceBook`, written by the daemon heartbeat of
  :mod:`mma.service.heartbeat`): the row of source ``gcn.heartbeat`` counts the
  well-formed heartbeats, its ``last_message_at`` is the last one's arrival and its
  ``lag`` the consumer lag. ``mma status`` prints it with :func:`status_lines`.

A malformed heartbeat is logged once per process (then only counted): a broken
stream of one message a second must not flood the journal, nor stop the daemon.

The topic is subscribed (:func:`subscription`) by the notice consumer when it reads
GCN itself with the default topics (``kafka.notice_topics`` holding ``"*"``): a
mirror named by ``kafka.gcn_bootstrap_servers`` need not carry it.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from mma.config import Config
from mma.errors import BadMessage, InvalidValue, MissingField
from mma.formats.gcn_json import load_json
from mma.printable import printable
from mma.service.health import Metrics
from mma.service.heartbeat import InstanceStatus
from mma.service.sources import EVERY_DEFAULT

__all__ = ["HEARTBEAT_TOPIC", "GcnHeartbeat", "status_json", "status_lines", "subscription"]

log = logging.getLogger(__name__)

HEARTBEAT_TOPIC = "gcn.heartbeat"
MAX_HEARTBEAT_BYTES = 64 * 1024  # the real ones are ~120 bytes

_Instruments = tuple[Gauge, Gauge, Counter]
# One set of instruments per metrics registry: a second GcnHeartbeat on the same
# Metrics (tests, a rebuilt intake) must not register the names twice.
_INSTRUMENTS: weakref.WeakKeyDictionary[CollectorRegistry, _Instruments] = (
    weakref.WeakKeyDictionary())


def _instruments(metrics: Metrics) -> _Instruments:
    reg = metrics.registry
    if reg not in _INSTRUMENTS:
        _INSTRUMENTS[reg] = (
            Gauge("gcn_heartbeat_received_timestamp_seconds",
                  "When the last GCN heartbeat was received [s since 1970, UTC].",
                  namespace="mma", registry=reg),
            Gauge("gcn_heartbeat_latency_seconds",
                  "Arrival of the last GCN heartbeat minus its alert_datetime [s].",
                  namespace="mma", registry=reg),
            Counter("gcn_heartbeats", "GCN heartbeats received, by outcome.", ["outcome"],
                    namespace="mma", registry=reg))
    return _INSTRUMENTS[reg]


def _sent_at(raw: bytes) -> datetime:
    """The heartbeat's ``alert_datetime`` (timezone-aware UTC).

    Raises
    ------
    BadMessage
        Not a small strict JSON object, or no ``alert_datetime`` in UTC.
    """
    msg = load_json(raw, max_bytes=MAX_HEARTBEAT_BYTES)
    text = msg.get("alert_datetime")
    if text is None:
        raise MissingField("alert_datetime is missing")
    if not isinstance(text, str) or len(text) > 40:
        raise InvalidValue("alert_datetime is not an ISO 8601 time")
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidValue(f"alert_datetime {text!r} is not an ISO 8601 time") from exc
    offset = when.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise InvalidValue(f"alert_datetime {text!r} is not UTC")
    return when.astimezone(UTC)


class GcnHeartbeat:
    """The last GCN heartbeat this process received; thread-safe (read by ``/metrics``).

    Parameters
    ----------
    metrics
        The daemon's metrics, where the gauges and the counter are registered;
        None: memory only.

    Attributes
    ----------
    received_at, sent_at : datetime or None
        Arrival of the last well-formed heartbeat and its ``alert_datetime`` (UTC).
    received, malformed : int
        Well-formed and malformed heartbeats since start.
    """

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._lock = threading.Lock()
        self._instruments = None if metrics is None else _instruments(metrics)
        self.received_at: datetime | None = None
        self.sent_at: datetime | None = None
        self.received = 0
        self.malformed = 0

    def receive(self, raw: bytes, *, origin: str = HEARTBEAT_TOPIC,
                now: datetime | None = None) -> bool:
        """Record one message of ``gcn.heartbeat``; True if it was a well-formed heartbeat.

        Never raises for the message's content: a malformed one is logged (the first
        at WARNING, later ones at DEBUG), counted and otherwise ignored.
        """
        try:
            sent = _sent_at(raw)
        except BadMessage as exc:
            with self._lock:
                self.malformed += 1
                first = self.malformed == 1
            log.log(logging.WARNING if first else logging.DEBUG,
                    "%s: malformed GCN heartbeat ignored (%s)%s", printable(origin),
                    printable(exc), "; further ones are only counted" if first else "")
            if self._instruments is not None:
                self._instruments[2].labels(outcome="malformed").inc()
            return False
        now = now or datetime.now(UTC)
        with self._lock:
            self.received_at, self.sent_at = now, sent
            self.received += 1
        if self._instruments is not None:
            received, latency, count = self._instruments
            received.set(now.timestamp())
            latency.set((now - sent).total_seconds())
            count.labels(outcome="ok").inc()
        return True

    def health(self, now: datetime | None = None) -> dict[str, float | None]:
        """For ``/healthz``'s ``sources``: seconds since the last heartbeat arrived and
        its latency [s] (None before the first), e.g. as a HealthServer *source_lag*."""
        now = now or datetime.now(UTC)
        with self._lock:
            received = self.received_at
        return {"gcn_heartbeat_age_s": None if received is None
                else (now - received).total_seconds(),
                "gcn_heartbeat_latency_s": self.latency_s()}

    def latency_s(self) -> float | None:
        """Arrival minus ``alert_datetime`` of the last heartbeat [s]; None before one."""
        with self._lock:
            if self.received_at is None or self.sent_at is None:
                return None
            return (self.received_at - self.sent_at).total_seconds()


def subscription(config: Config, kind: str, topics: Sequence[str]) -> list[str]:
    """The topics a consumer of *kind* subscribes to: *topics*, and ``gcn.heartbeat``
    for the notice consumer reading GCN itself with the default topics."""
    kafka = config.section("kafka")
    if (kind == "notice" and EVERY_DEFAULT in kafka["notice_topics"]
            and not kafka["gcn_bootstrap_servers"] and HEARTBEAT_TOPIC not in topics):
        return [*topics, HEARTBEAT_TOPIC]
    return list(topics)


def status_json(daemons: Sequence[InstanceStatus], now: datetime) -> list[dict[str, Any]]:
    """Per daemon reading ``gcn.heartbeat``: heartbeats, the last one's arrival, its age
    [s] at *now* and the consumer lag, from the daemon heartbeat rows."""
    out = []
    for daemon in daemons:
        for src in daemon.sources:
            if src.source == HEARTBEAT_TOPIC:
                last = src.last_message_at
                out.append({"instance": daemon.instance, "heartbeats": src.messages,
                            "last_received": None if last is None
                            else last.isoformat(timespec="seconds"),
                            "age_s": None if last is None else (now - last).total_seconds(),
                            "lag": src.lag, "stale_daemon": daemon.stale})
    return out


def status_lines(daemons: Sequence[InstanceStatus], now: datetime) -> list[str]:
    """Lines for ``mma status``: when each daemon last heard GCN's heartbeat; none when
    no daemon reads ``gcn.heartbeat``."""
    lines = []
    for row in status_json(daemons, now):
        last = ("never" if row["last_received"] is None
                else f"{row['last_received']} ({row['age_s']:.0f} s ago)")
        lines.append(f"gcn heartbeat: {printable(row['instance'])} last received {last}"
                     f", lag {'?' if row['lag'] is None else row['lag']}")
    return lines
