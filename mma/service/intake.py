"""Consumed Kafka messages into the pipeline: each stored or dead-lettered, then counted.

Notices go one at a time. Consecutive alerts of one handler are parsed, then
stored and matched in one transaction (:meth:`mma.ingest.Pipeline.process_alerts`):
a Rubin visit of ~10,000 alerts commits a few times, not 10,000 times. Every
database step goes through the :class:`mma.service.liveness.Retrier`, so a method
here returns only once its messages are recorded; the caller then commits their
offsets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial

from confluent_kafka import Message

from mma.errors import UnknownFormat
from mma.ingest import Outcome, Parsed
from mma.registry import UNCLAIMED
from mma.service.gcn_heartbeat import HEARTBEAT_TOPIC, GcnHeartbeat
from mma.service.health import Metrics
from mma.service.liveness import Retrier
from mma.service.runtime import Runtime
from mma.service.sources import SourceBook

log = logging.getLogger(__name__)


class Intake:
    """Hands consumed messages to the pipeline and keeps the books.

    Parameters
    ----------
    wake_delivery
        Called when a message created or changed coincidences.
    """

    def __init__(self, runtime: Runtime, retry: Retrier, metrics: Metrics, book: SourceBook,
                 wake_delivery: Callable[[], None]) -> None:
        self.runtime = runtime
        self.retry = retry
        self.metrics = metrics
        self.book = book
        self.wake_delivery = wake_delivery
        self.gcn_heartbeat = GcnHeartbeat(metrics)

    def handle(self, messages: Sequence[Message]) -> None:
        """Process *messages* in order; returns once each is stored or dead-lettered."""
        pipeline, registry = self.runtime.pipeline, self.runtime.registry
        run: list[Parsed] = []
        for msg in messages:
            topic = msg.topic() or ""
            raw = msg.value() or b""
            origin = f"{topic}:{msg.partition()}:{msg.offset()}"
            if topic == HEARTBEAT_TOPIC:  # a liveness metric, never a notice or a dead letter
                if self.gcn_heartbeat.receive(raw, origin=origin):
                    self.book.count(topic)
                continue
            try:
                handler = registry.for_topic(topic)
            except UnknownFormat as exc:
                self._settle(Parsed(UNCLAIMED, raw, origin, error=exc), topic)
                continue
            if handler.KIND != "alert":
                self._alerts(run)
                run = []
                with self.metrics.processing_seconds.time():
                    outcome = self.retry(partial(pipeline.process, handler, raw, origin=origin,
                                                 topic=topic))
                self._count(topic, outcome)
                continue
            if run and run[-1].handler is not handler:
                self._alerts(run)
                run = []
            parsed = pipeline.parse(handler, raw, origin=origin, topic=topic)
            if parsed.error is not None:
                self._settle(parsed, topic)
            else:
                run.append(parsed)
        self._alerts(run)

    def _alerts(self, run: list[Parsed]) -> None:
        if not run:
            return
        pipeline = self.runtime.pipeline
        started = time.monotonic()
        outcomes = self.retry(lambda: pipeline.process_alerts(run))
        # One observation per alert, each the batch's mean time per alert.
        per_alert = (time.monotonic() - started) / len(run)
        for parsed, outcome in zip(run, outcomes, strict=True):
            self.metrics.processing_seconds.observe(per_alert)
            self._count(parsed.origin.rsplit(":", 2)[0], outcome)

    def _settle(self, parsed: Parsed, topic: str) -> None:
        pipeline = self.runtime.pipeline
        self._count(topic, self.retry(lambda: pipeline.settle(parsed)))

    def _count(self, topic: str, outcome: Outcome) -> None:
        self.book.count(topic, dead_letter=outcome.kind == "dead_letter")
        self.metrics.messages_in.labels(source=topic, kind=outcome.kind).inc()
        if outcome.touched:
            self.metrics.coincidences.labels(status="created_or_changed").inc(
                len(outcome.touched))
            self.wake_delivery()
        if outcome.kind == "dead_letter":
            self.metrics.dead_letters.labels(source=topic).inc()
