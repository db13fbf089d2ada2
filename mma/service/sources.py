"""The daemon's Kafka sources: consumers of notices and alerts, and their bookkeeping.

Two consumers (see :mod:`mma.service.consume`): notices in a consumer group of this
instance (GCN Kafka through gcn-kafka, or any broker given by
``kafka.gcn_bootstrap_servers``), so that every daemon sees every notice; alerts
in the group ``kafka.group_id`` shared by every daemon, so that they split the
partitions. Auto-commit is off: offsets are committed by the daemon after the
database commit.

:class:`SourceBook` keeps per topic what the heartbeat (:mod:`mma.service.heartbeat`,
``mma status``) and the metrics report: messages, dead letters, the last
message's time and the lag of this instance's partitions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from mma.config import Config
from mma.errors import ConfigError
from mma.kafka_conf import client_config, with_logger
from mma.registry import Registry
from mma.service.heartbeat import SourceStats

log = logging.getLogger(__name__)

EVERY_DEFAULT = "*"
"""The topic-list entry standing for every handler's default topics of that kind."""


def topic_map(entries: Sequence[str]) -> dict[str, list[str]]:
    """``["handler:topic", ...]`` → ``{handler: [topics]}`` (the entry ``"*"`` left out).

    Raises
    ------
    ConfigError
        An entry is not ``handler:topic``.
    """
    out: dict[str, list[str]] = {}
    for entry in entries:
        if entry == EVERY_DEFAULT:
            continue
        name, sep, topic = entry.partition(":")
        if not sep or not name or not topic:
            raise ConfigError(f"kafka topics: {entry!r} is not 'handler:topic'")
        out.setdefault(name, []).append(topic)
    return out


def registry_of(config: Config) -> Registry:
    """The handler registry with the topics of ``kafka.notice_topics``/``alert_topics``."""
    kafka = config.section("kafka")
    return Registry(topics=topic_map(kafka["notice_topics"]) | topic_map(kafka["alert_topics"]))


def topics_of(config: Config, registry: Registry, kind: str) -> list[str]:
    """The topics of *kind* (notice|alert) to subscribe to; empty: no consumer of *kind*.

    Sources are opt-in: ``kafka.<kind>_topics`` lists ``handler:topic`` entries, and
    the entry ``"*"`` adds every *kind* handler's topics (its defaults, or those the
    list gives it). An empty list subscribes to nothing.
    """
    configured = config.section("kafka")[f"{kind}_topics"]
    topics = [t for claimed in topic_map(configured).values() for t in claimed]
    if EVERY_DEFAULT in configured:
        topics += [t for h in registry.handlers if kind == h.KIND
                   for t in registry.topics(h.NAME)]
    return list(dict.fromkeys(topics))


# librdkafka's defaults stop prefetching at 64 MB (~800 Rubin alerts of ~80 KB, less
# than two batches) and then wait fetch.queue.backoff.ms (1 s) before fetching again:
# measured here, the daemon then waited 0.2 s on every other batch for the queue to
# refill. A Rubin visit is ~0.8 GB: keep a few batches queued and refill at once.
# Properties in [kafka.alert_client] override these.
ALERT_FETCH: dict[str, Any] = {
    "queued.max.messages.kbytes": 256 * 1024,
    "fetch.queue.backoff.ms": 10,
    "max.partition.fetch.bytes": 8 * 1024 * 1024,
}


def make_consumer(config: Config, kind: str, *, instance: str) -> Consumer:
    """A consumer of *kind* (notice|alert), not yet subscribed.

    Raises
    ------
    ConfigError
        Notices from GCN Kafka (at ``kafka.gcn_domain``) without the client id/secret
        secrets, alerts without ``kafka.alert_bootstrap_servers``, or a bad client
        table (:func:`mma.kafka_conf.client_config`).
    """
    kafka = config.section("kafka")
    common: dict[str, Any] = {"enable.auto.commit": False, "auto.offset.reset": "earliest"}
    if kind == "alert":
        if not kafka["alert_bootstrap_servers"]:
            raise ConfigError("kafka.alert_topics needs kafka.alert_bootstrap_servers (the "
                              "broker of your optical alert stream)")
        return Consumer(with_logger({**common, **ALERT_FETCH, **client_config(config, "alerts"),
                                     "group.id": kafka["group_id"],
                                     **_session(kafka["session_timeout_seconds"])}))
    group = f"{kafka['group_id']}-notices-{instance}"
    # This group is the instance's own: static membership lets a restarted daemon take
    # its partitions back at once instead of waiting out its crashed predecessor's
    # session. (In the shared alert group it kept a newcomer from getting its share, so
    # there a short session timeout does that job.)
    common["group.instance.id"] = f"{instance}-notices"
    if kafka["gcn_bootstrap_servers"]:
        return Consumer(with_logger({**common, **client_config(config, "notices"),
                                     "group.id": group}))
    from gcn_kafka import Consumer as GcnConsumer

    client_id = config.secret("gcn_client_id")
    secret = config.secret("gcn_client_secret")
    if not (client_id and secret):
        raise ConfigError("GCN Kafka needs the gcn_client_id and gcn_client_secret "
                          "secrets (or kafka.gcn_bootstrap_servers)")
    # gcn-kafka sets servers and OIDC itself; the table adds e.g. client.id.
    extra = dict(config.section("kafka.notice_client"))
    return GcnConsumer(with_logger({**common, **extra, "group.id": group}), client_id=client_id,
                       client_secret=secret, domain=kafka["gcn_domain"])


class SourceBook:
    """Per-topic counters and lag of this instance, shared with the heartbeat thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[str, SourceStats] = {}
        self._lag: dict[tuple[str, int], int] = {}

    def count(self, topic: str, *, dead_letter: bool = False) -> None:
        """One message of *topic* was processed (stored, ignored or dead-lettered)."""
        with self._lock:
            stats = self._stats.setdefault(topic, SourceStats())
            stats.messages += 1
            stats.dead_letters += dead_letter
            stats.last_message_at = datetime.now(UTC)

    def lag(self, consumer: Consumer, committed: dict[tuple[str, int], int]) -> dict[
            tuple[str, int], int]:
        """Record the lag after a commit: high watermark − committed offset, per partition.

        Returns the lags of the partitions given (the metrics export them).
        """
        out: dict[tuple[str, int], int] = {}
        for (topic, partition), offset in committed.items():
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), cached=True)
            if high >= 0:
                out[(topic, partition)] = max(high - offset, 0)
        with self._lock:
            self._lag.update(out)
        return out

    def forget(self, partitions: Sequence[TopicPartition]) -> None:
        """Partitions moved to another daemon: their lag is no longer this one's."""
        with self._lock:
            for tp in partitions:
                self._lag.pop((tp.topic, tp.partition), None)

    def snapshot(self) -> dict[str, SourceStats]:
        """A copy of the counters by topic, with the lag summed over this instance's partitions."""
        with self._lock:
            out = {topic: replace(stats) for topic, stats in self._stats.items()}
            for (topic, _partition), lag in self._lag.items():
                stats = out.setdefault(topic, SourceStats())
                stats.lag = (stats.lag or 0) + lag
        return out


def _session(timeout_s: float) -> dict[str, int]:
    """Session timeout of the shared alert group, and a heartbeat well inside it.

    A SIGKILLed daemon's partitions wait this long before the group hands them on.
    """
    ms = round(timeout_s * 1000)
    return {"session.timeout.ms": ms, "heartbeat.interval.ms": max(100, ms // 3)}


# librdkafka calls on_assign after every rebalance, with an empty list when the group
# gives a consumer nothing, so this is only a backstop: long enough that a rebalance
# slowed down by a loaded machine (a crashed member's session to wait out, members
# rejoining between long batches) is never taken for idleness by --idle-exit.
ASSIGN_WAIT_S = 120.0


class Assignments:
    """Whether every consumer holds its partitions now: the idle clock runs only then.

    A rebalance (another daemon joining or leaving the group) revokes partitions and
    can take seconds while the members rejoin; no message arrives meanwhile, and
    that is not idleness. A consumer that never gets an assignment (a topic with
    no partitions for it) stops holding the clock after *wait_s*.
    """

    def __init__(self, kinds: Sequence[str], wait_s: float = ASSIGN_WAIT_S) -> None:
        self.held = dict.fromkeys(kinds, False)
        self.wait_s = wait_s
        self.since = time.monotonic()  # when the last consumer lost its partitions

    def assigned(self, kind: str) -> None:
        self.held[kind] = True

    def revoked(self, kind: str) -> None:
        self.held[kind] = False
        self.since = time.monotonic()

    def settled(self) -> bool:
        """Every consumer holds its partitions, or has waited longer than *wait_s*."""
        return all(self.held.values()) or time.monotonic() - self.since > self.wait_s
