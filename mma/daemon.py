"""``mma run``: consume notices and alerts from Kafka, correlate, deliver.

Two consumers: notices (GCN Kafka through gcn-kafka, or any broker given by
``kafka.gcn_bootstrap_servers``) with a consumer group of this instance, so
that every daemon of a deployment sees every notice (stored idempotently); and
optical alerts with the group ``kafka.group_id`` shared by every daemon, so
they split the partitions. Auto-commit is off: a message's offset is
committed only after its transaction committed (or its bytes went to the
dead letters), so a crash replays at most the uncommitted tail, which the
idempotent store absorbs. While the database is unreachable the same message
is retried with backoff and nothing is committed.

An APScheduler background scheduler drains the outbox and re-scores active
regions; a job that fails logs and runs again at its next period.
Jobs that touch the pipeline (re-scoring, expiry of closed windows, the spool
directory) are flagged by the scheduler and run by the main loop between
batches. SIGTERM/SIGINT stop after the current message (offsets committed, outbox
drained once, producers flushed); SIGHUP reloads the log level.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from mma.config import Config, load_config
from mma.db.engine import make_engine, upgrade
from mma.delivery import build_emitters, deliver_due
from mma.errors import ConfigError, TransientError, UnknownFormat
from mma.health import HealthServer, Metrics
from mma.ingest import Outcome, Parsed, Pipeline
from mma.log import configure
from mma.models import Alert
from mma.registry import Registry
from mma.replay import replay as replay_files
from mma.skymaps.cache import SkymapCache
from mma.systemd import Notifier, watchdog_interval_s

log = logging.getLogger(__name__)

ASSIGN_WAIT_S = 30.0


class _Unclaimed:
    """The "handler" of a message no handler claims: its dead letter says ``kafka``."""

    NAME = "kafka"
    KIND = "unclaimed"

    def parse(self, raw: bytes, *, topic: str) -> Alert:
        raise UnknownFormat(f"no handler for topic {topic!r}")


_KAFKA = _Unclaimed()


def topic_map(entries: Sequence[str]) -> dict[str, list[str]]:
    """``["handler:topic", ...]`` → ``{handler: [topics]}``."""
    out: dict[str, list[str]] = {}
    for entry in entries:
        name, sep, topic = entry.partition(":")
        if not sep or not name or not topic:
            raise ConfigError(f"kafka topics: {entry!r} is not 'handler:topic'")
        out.setdefault(name, []).append(topic)
    return out


class Daemon:
    """The long-running service (see the module docstring).

    Parameters
    ----------
    config
        The configuration; reloaded from its sources on SIGHUP.
    idle_exit_s
        Stop after this many seconds without a message (tests, one-shot catch-up).
    """

    def __init__(self, config: Config, *, idle_exit_s: float | None = None,
                 fetch: Callable[[str], bytes] | None = None) -> None:
        self.config = config
        self.idle_exit_s = idle_exit_s
        self.engine = make_engine(config.database_url)
        upgrade(self.engine)
        self.pipeline = Pipeline(self.engine, config, fetch=fetch)
        kafka = config.section("kafka")
        overrides = topic_map(kafka["notice_topics"]) | topic_map(kafka["alert_topics"])
        self.registry = Registry(topics=overrides)
        self.emitters = build_emitters(config)
        self.instance = kafka["instance"] or socket.gethostname()
        self._stop = False
        self._reload = False
        self._consumers: list[tuple[str, Consumer]] = []
        self.notifier = Notifier.from_environ(unset=True)
        self.metrics = Metrics()
        self.health: HealthServer | None = None
        self._due: set[str] = {"expire"}  # pipeline jobs flagged by the scheduler
        self._assignments: set[str] = set()  # consumer kinds that got their partitions
        # Set when a batch created or changed coincidences (or every deliver interval):
        # the delivery thread sends them at once instead of at its next period.
        self._wake_delivery = threading.Event()
        self._delivering = True
        self.max_message_bytes = int(config.section("limits")["max_message_bytes"])

    # -- Kafka -----------------------------------------------------------------------------
    def _topics(self, kind: str) -> list[str]:
        """The configured topics of *kind*, or every such handler's defaults if none are."""
        configured = self.config.section("kafka")[f"{kind}_topics"]
        if configured:
            return [t for topics in topic_map(configured).values() for t in topics]
        return [t for h in self.registry.handlers if kind == h.KIND
                for t in self.registry.topics(h.NAME)]

    def _consumer(self, kind: str) -> Consumer | None:
        kafka = self.config.section("kafka")
        topics = self._topics(kind)
        if not topics:
            return None
        common: dict[str, Any] = {"enable.auto.commit": False, "auto.offset.reset": "earliest"}
        if kind == "notice":
            group = f"{kafka['group_id']}-notices-{self.instance}"
            # This group is the instance's own: static membership lets a restarted daemon
            # take its partitions back at once instead of waiting out its crashed
            # predecessor's session. (In the shared alert group it kept a newcomer from
            # getting its share, so there a short session timeout does that job.)
            common["group.instance.id"] = f"{self.instance}-notices"
            if kafka["gcn_bootstrap_servers"]:
                consumer: Consumer = Consumer({
                    **common, "bootstrap.servers": kafka["gcn_bootstrap_servers"],
                    "group.id": group})
            else:
                from gcn_kafka import Consumer as GcnConsumer

                client_id = self.config.secret("gcn_client_id")
                secret = self.config.secret("gcn_client_secret")
                if not (client_id and secret):
                    raise ConfigError("GCN Kafka needs the gcn_client_id and gcn_client_secret "
                                      "secrets (or kafka.gcn_bootstrap_servers)")
                consumer = GcnConsumer({**common, "group.id": group}, client_id=client_id,
                                       client_secret=secret)
        else:
            consumer = Consumer({**common, "bootstrap.servers": kafka["alert_bootstrap_servers"],
                                 "group.id": kafka["group_id"], "session.timeout.ms": 10000})
        consumer.subscribe(topics, on_assign=lambda _c, parts: self._assigned(kind, parts))
        log.info("%s consumer subscribed to %s", kind, ", ".join(topics))
        return consumer

    def _assigned(self, kind: str, partitions: list[TopicPartition]) -> None:
        self._assignments.add(kind)
        log.info("%s consumer assigned %d partitions", kind, len(partitions))

    def _handle(self, messages: Sequence[Message]) -> None:
        """Process consumed messages; returns once each is stored or dead-lettered.

        Notices go one at a time. Consecutive alerts of one handler are parsed, then
        stored and matched in one transaction (:meth:`Pipeline.process_alerts`):
        a Rubin visit of ~10,000 alerts commits a few times, not 10,000 times.
        """
        run: list[Parsed] = []
        for msg in messages:
            topic = msg.topic() or ""
            raw = msg.value() or b""
            origin = f"{topic}:{msg.partition()}:{msg.offset()}"
            try:
                handler = self.registry.for_topic(topic)
            except UnknownFormat as exc:
                self._settle(Parsed(_KAFKA, raw, origin, error=exc), topic)
                continue
            if handler.KIND != "alert":
                self._alerts(run)
                run = []
                with self.metrics.processing_seconds.time():
                    outcome = self._retrying(partial(self.pipeline.process, handler, raw,
                                                     origin=origin, topic=topic))
                self._count(topic, outcome)
                continue
            if run and run[-1].handler is not handler:
                self._alerts(run)
                run = []
            parsed = self.pipeline.parse(handler, raw, origin=origin, topic=topic)
            if parsed.error is not None:
                self._settle(parsed, topic)
            else:
                run.append(parsed)
        self._alerts(run)

    def _alerts(self, run: list[Parsed]) -> None:
        if not run:
            return
        started = time.monotonic()
        outcomes = self._retrying(lambda: self.pipeline.process_alerts(run))
        # One observation per alert, each the batch's mean time per alert.
        per_alert = (time.monotonic() - started) / len(run)
        for parsed, outcome in zip(run, outcomes, strict=True):
            self.metrics.processing_seconds.observe(per_alert)
            self._count(parsed.origin.rsplit(":", 2)[0], outcome)
        if any(o.touched for o in outcomes):
            self._wake_delivery.set()

    def _settle(self, parsed: Parsed, topic: str) -> None:
        self._count(topic, self._retrying(lambda: self.pipeline.settle(parsed)))

    def _count(self, topic: str, outcome: Outcome) -> None:
        self.metrics.messages_in.labels(source=topic, kind=outcome.kind).inc()
        if outcome.touched:
            self.metrics.coincidences.labels(status="created_or_changed").inc(
                len(outcome.touched))
            self._wake_delivery.set()
        if outcome.kind == "dead_letter":
            self.metrics.dead_letters.labels(source=topic).inc()

    def _retrying(self, step: Callable[[], Any]) -> Any:
        """Run *step* until the database takes it (or a stop is requested)."""
        conf = self.config.section("daemon")
        delay = conf["retry_seconds"]
        while True:
            try:
                return step()
            except TransientError as exc:
                if self._stop:
                    raise
                log.warning("%s; retrying in %.0f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, conf["max_retry_seconds"])

    # -- scheduler ---------------------------------------------------------------------------
    # Jobs that touch the pipeline's in-memory index only raise a flag: the main loop
    # runs them between batches, so the index is never used by two threads at once.
    # Delivery and cache pruning share no in-memory state and run on the scheduler.
    def _deliver(self) -> None:
        if self.emitters:
            counts = deliver_due(self.engine, self.config, self.emitters)
            for outcome, n in counts.items():
                self.metrics.deliveries.labels(channel="all", outcome=outcome).inc(n)

    def _delivery_loop(self) -> None:
        """Drain the outbox when woken by new coincidences, or every deliver interval."""
        period = float(self.config.section("daemon")["deliver_interval_seconds"])
        while self._delivering:
            self._wake_delivery.wait(period)
            self._wake_delivery.clear()
            if not self._delivering:
                return
            try:
                self._deliver()
            except Exception:  # a failing drain logs and runs again when next woken
                log.exception("outbox delivery failed")

    def _prune_cache(self) -> None:
        conf = self.config.section("skymaps")
        removed = SkymapCache(self.config.cache_dir / "skymaps").prune(
            max_age_s=conf["cache_max_age_days"] * 86400.0)
        log.info("skymap cache: %d files pruned", removed)

    def _flag(self, job: str) -> Callable[[], None]:
        def raise_flag() -> None:
            self._due.add(job)
        return raise_flag

    def _run_due(self) -> None:
        """Run the pipeline jobs the scheduler flagged (main loop only)."""
        now = datetime.now(UTC)
        for job in sorted(self._due):
            self._due.discard(job)
            try:
                if job == "rescore":
                    self.pipeline.rescore(now)
                elif job == "expire":
                    self.pipeline.expire(now)
                elif job == "spool":
                    self._spool()
            except Exception:  # a failing job logs and runs again at its next period
                log.exception("scheduled job %s failed", job)

    def _spool(self) -> None:
        spool = self.config.section("daemon")["spool_dir"]
        if not spool:
            return
        folder = Path(spool)
        for path in sorted(p for p in folder.iterdir() if p.is_file()
                           and not p.name.startswith(".")):
            # Bad records are dead-lettered with the file's path by the replay path itself.
            processed = replay_files(self.pipeline, self.registry, [path],
                                     max_bytes=self.max_message_bytes, progress_min_items=10**9,
                                     rescore=False)
            done = folder / "done"
            done.mkdir(exist_ok=True)
            path.replace(done / path.name)
            log.info("spool: %s processed (%d records), moved to done/", path.name, processed)

    def _scheduler(self) -> BackgroundScheduler:
        conf = self.config.section("daemon")
        scheduler = BackgroundScheduler(timezone="UTC")
        jobs: list[tuple[Callable[[], None], str, float]] = [
            (self._prune_cache, "prune", conf["prune_interval_seconds"]),
            (self._flag("rescore"), "rescore", conf["rescore_interval_seconds"]),
            (self._flag("expire"), "expire", conf["expire_interval_seconds"]),
        ]
        if conf["spool_dir"]:
            jobs.append((self._flag("spool"), "spool", conf["spool_interval_seconds"]))
        for func, name, seconds in jobs:
            scheduler.add_job(func, "interval", seconds=seconds, id=name, max_instances=1,
                              coalesce=True)
        return scheduler

    # -- life cycle --------------------------------------------------------------------------
    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            log.info("signal %s: stopping after the current message", signal.Signals(signum).name)
            self._stop = True

    def run(self) -> int:
        """Consume until stopped; return the exit status."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._signal)
        for kind in ("notice", "alert"):
            consumer = self._consumer(kind)
            if consumer is not None:
                self._consumers.append((kind, consumer))
        if not self._consumers and not self.config.section("daemon")["spool_dir"]:
            raise ConfigError("nothing to consume: no Kafka topics and no daemon.spool_dir")
        scheduler = self._scheduler()
        scheduler.start()
        delivery = threading.Thread(target=self._delivery_loop, name="mma-delivery")
        delivery.start()
        port = int(self.config.section("daemon")["health_port"])
        if port:
            self.health = HealthServer("127.0.0.1", port, metrics=self.metrics).start()
        watchdog = watchdog_interval_s()
        self.notifier.ready(status=f"consuming with {len(self._consumers)} consumers")
        log.info("mma %s running: %d consumers", self.instance, len(self._consumers))
        kafka = self.config.section("kafka")
        started = last_message = last_watchdog = time.monotonic()
        try:
            while not self._stop:
                if self.health is not None:
                    self.health.ping()
                if watchdog is not None and time.monotonic() - last_watchdog >= watchdog:
                    self.notifier.watchdog()
                    last_watchdog = time.monotonic()
                if self._reload:
                    self._reload = False
                    self.notifier.reloading()
                    configure(str(load_config().section("logging")["level"]))
                    log.info("configuration reloaded (log level)")
                    self.notifier.ready()
                if self._due:
                    self._run_due()
                got = 0
                for _kind, consumer in self._consumers:
                    got += self._poll(consumer, int(kafka["batch"]),
                                      float(kafka["poll_timeout_seconds"]))
                # Idle time counts once every consumer is assigned (a restarted group can
                # take a while), or after ASSIGN_WAIT_S when a topic never gets partitions.
                assigned = (len(self._assignments) == len(self._consumers)
                            or time.monotonic() - started > ASSIGN_WAIT_S)
                if got or not assigned:
                    last_message = time.monotonic()
                elif (self.idle_exit_s is not None
                      and time.monotonic() - last_message > self.idle_exit_s):
                    log.info("idle for %.0f s: stopping", self.idle_exit_s)
                    break
        finally:
            self.notifier.stopping()
            scheduler.shutdown(wait=True)
            self._delivering = False
            self._wake_delivery.set()
            delivery.join()
            if self.health is not None:
                self.health.stop()
            for _kind, consumer in self._consumers:
                consumer.close()
            # Daemons sharing a database can commit a region and an alert in either order;
            # a re-score heals that (the scheduler's job), here once more before exit.
            with contextlib.suppress(TransientError):
                self.pipeline.rescore(datetime.now(UTC))
            self._deliver()  # what the last messages produced goes out before exit
            for emitter in self.emitters.values():
                emitter.close()
            self.engine.dispose()
        return 0

    def _poll(self, consumer: Consumer, batch: int, timeout: float) -> int:
        """Consume one batch, process it, commit its offsets; return the messages seen."""
        messages = consumer.consume(batch, timeout)
        valid: list[Message] = []
        for msg in messages:
            error = msg.error()
            if error is None:
                valid.append(msg)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.error("kafka error on %s: %s", msg.topic(), error)
        if self._stop:
            return len(messages)  # not processed, not committed: read again after restart
        self._handle(valid)
        done: dict[tuple[str, int], int] = {}
        for msg in valid:
            done[(msg.topic() or "", msg.partition() or 0)] = (msg.offset() or 0) + 1
        if done:
            try:
                consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in done.items()],
                                asynchronous=False)
            except KafkaException as exc:
                # E.g. a rebalance moved the partitions: whoever gets them re-reads the
                # uncommitted messages, which the idempotent store absorbs.
                log.warning("offset commit failed (%s); the batch may be read again", exc)
                return len(messages)
            for (topic, partition), offset in done.items():
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True)
                if high >= 0:
                    self.metrics.consumer_lag.labels(topic=topic, partition=str(partition)).set(
                        max(high - offset, 0))
        return len(messages)
