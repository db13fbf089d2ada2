"""The daemon's Kafka consumers: subscribe, take a batch, hand it on, commit its offsets.

Auto-commit is off: a message's offset is committed only after its transaction
committed (or its bytes went to the dead letters), so a crash replays at most
the uncommitted tail, which the idempotent store absorbs. While the database is
unreachable the same batch is retried (:class:`mma.service.liveness.Retrier`)
and nothing is committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from mma.service.gcn_heartbeat import subscription
from mma.service.health import Metrics
from mma.service.intake import Intake
from mma.service.runtime import Runtime
from mma.service.sources import Assignments, SourceBook, make_consumer, topics_of

log = logging.getLogger(__name__)

KINDS = ("notice", "alert")


class Consumers:
    """A consumer of notices and one of alerts (each only if it has topics).

    Parameters
    ----------
    stopping
        True once a stop was requested: a batch consumed then is neither
        processed nor committed (it is read again after the restart).
    """

    def __init__(self, runtime: Runtime, instance: str, book: SourceBook, metrics: Metrics,
                 stopping: Callable[[], bool]) -> None:
        self.runtime = runtime
        self.instance = instance
        self.book = book
        self.metrics = metrics
        self.stopping = stopping
        self.consumers: list[tuple[str, Consumer]] = []
        self.assignments = Assignments([])
        self._topics: dict[str, list[str]] = {}
        self._missing: set[str] = set()  # subscribed topics reported absent, logged once

    def open(self) -> int:
        """Create and subscribe the consumers; return how many there are."""
        for kind in KINDS:
            if topics_of(self.runtime.config, self.runtime.registry, kind):
                consumer = make_consumer(self.runtime.config, kind, instance=self.instance)
                self._subscribe(kind, consumer)
                self.consumers.append((kind, consumer))
        self.assignments = Assignments([kind for kind, _c in self.consumers])
        return len(self.consumers)

    def resubscribe(self) -> None:
        """Follow changed topics after a reload (the consumers themselves stay)."""
        for kind, consumer in self.consumers:
            if topics_of(self.runtime.config, self.runtime.registry, kind) != self._topics[kind]:
                self._subscribe(kind, consumer)

    def _subscribe(self, kind: str, consumer: Consumer) -> None:
        def assigned(_c: Consumer, partitions: list[TopicPartition]) -> None:
            self.assignments.assigned(kind)
            log.info("%s consumer of %s assigned %d partitions", kind, self.instance,
                     len(partitions))

        def revoked(_c: Consumer, partitions: list[TopicPartition]) -> None:
            self.book.forget(partitions)
            self.assignments.revoked(kind)

        topics = topics_of(self.runtime.config, self.runtime.registry, kind)
        subscribed = subscription(self.runtime.config, kind, topics)  # + gcn.heartbeat
        consumer.subscribe(subscribed, on_assign=assigned, on_revoke=revoked)
        self._topics[kind] = topics
        log.info("%s consumer of %s subscribed to %s", kind, self.instance,
                 ", ".join(subscribed))

    def poll(self, intake: Intake, wait_s: float) -> int:
        """One round over the consumers: a batch from each, processed and committed.

        Returns the messages seen. *wait_s* is shared out among the consumers.
        """
        batch = int(self.runtime.config.section("kafka")["batch"])
        share = wait_s / max(len(self.consumers), 1)
        return sum(self._poll(consumer, intake, batch, share) for _k, consumer in self.consumers)

    def _poll(self, consumer: Consumer, intake: Intake, batch: int, timeout: float) -> int:
        messages = consumer.consume(batch, timeout)
        valid: list[Message] = []
        for msg in messages:
            error = msg.error()
            if error is None:
                valid.append(msg)
            elif error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                # GCN: a Classic topic exists only after recent traffic. librdkafka says so
                # whenever the topic joins the subscription (start, reloads); the
                # subscription picks the topic up once it is created.
                topic = msg.topic() or str(error)
                if topic not in self._missing:
                    self._missing.add(topic)
                    log.warning("topic %s does not exist (yet): subscribed, read once it "
                                "appears", topic)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.error("kafka error on %s: %s", msg.topic(), error)
        if self.stopping():
            return len(messages)  # not processed, not committed: read again after restart
        intake.handle(valid)
        self._commit(consumer, valid)
        return len(messages)

    def _commit(self, consumer: Consumer, valid: list[Message]) -> None:
        done: dict[tuple[str, int], int] = {}
        for msg in valid:
            done[(msg.topic() or "", msg.partition() or 0)] = (msg.offset() or 0) + 1
        if not done:
            return
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in done.items()],
                            asynchronous=False)
        except KafkaException as exc:
            # E.g. a rebalance moved the partitions: whoever gets them re-reads the
            # uncommitted messages, which the idempotent store absorbs.
            log.warning("offset commit failed (%s); the batch may be read again", exc)
            return
        for (topic, partition), lag in self.book.lag(consumer, done).items():
            self.metrics.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)

    def close(self) -> None:
        """Leave the groups (the uncommitted tail is read again after a restart)."""
        for _kind, consumer in self.consumers:
            consumer.close()
