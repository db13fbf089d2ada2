"""``mma run``: consume notices and alerts from Kafka, correlate, deliver.

Consumers of notices and alerts (:mod:`mma.sources`) with auto-commit off: a
message's offset is committed only after its transaction committed (or its
bytes went to the dead letters), so a crash replays at most the uncommitted
tail, which the idempotent store absorbs. While the database is unreachable the
same batch is retried with backoff and nothing is committed.

Alerts are stored and matched a Kafka batch at a time, in one transaction
(:meth:`mma.ingest.Pipeline.process_alerts`); notices one at a time.
A delivery thread (:class:`mma.delivery.DeliveryWorker`) drains the outbox as
soon as a batch created or changed coincidences. An APScheduler
background scheduler writes the heartbeat (``mma status``), prunes the skymap
cache, and flags the jobs that touch the pipeline (re-scoring with freshly
measured backgrounds, expiry of closed windows, the spool directory), which the
main loop runs between batches; a job that fails logs and runs again at its
next period. SIGTERM/SIGINT stop after the current batch (offsets committed,
outbox drained once, producers flushed). SIGHUP reloads the configuration:
logging, channels and their rules, scoring and vetting, windows, topics and
periods take effect at once; database, Kafka servers and groups, the instance
name and the health port need a restart (a warning says so).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from sqlalchemy.exc import SQLAlchemyError

from mma import heartbeat
from mma.config import Config, load_config, restart_needed
from mma.db.engine import make_engine, upgrade
from mma.delivery import DeliveryWorker, build_emitters
from mma.errors import ConfigError, TransientError, UnknownFormat
from mma.health import HealthServer, Metrics
from mma.ingest import Outcome, Parsed, Pipeline
from mma.log import configure
from mma.registry import UNCLAIMED
from mma.replay import process_spool
from mma.skymaps.cache import SkymapCache
from mma.skymaps.fetch import fetcher_from_config
from mma.sources import Assignments, SourceBook, make_consumer, registry_of, topics_of
from mma.systemd import Notifier, watchdog_interval_s

log = logging.getLogger(__name__)

KINDS = ("notice", "alert")


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
                 load: Callable[[], Config] = load_config) -> None:
        self.config = config
        self.idle_exit_s = idle_exit_s
        self._load = load
        self.engine = make_engine(config.database_url)
        upgrade(self.engine)
        self.pipeline = self._pipeline(config)
        self.registry = registry_of(config)
        self.metrics = Metrics()
        self.instance = config.section("kafka")["instance"] or socket.gethostname()
        self.delivery = DeliveryWorker(self.engine, config, owner=self.instance,
                                       on_counts=self._delivered)
        self.started_at = datetime.now(UTC)
        self.book = SourceBook()
        self._stop = False
        self._reload = False
        self._consumers: list[tuple[str, Consumer]] = []
        self.notifier = Notifier.from_environ(unset=True)
        self.health: HealthServer | None = None
        self.scheduler: BackgroundScheduler | None = None
        self._due: set[str] = {"expire"}  # pipeline jobs flagged by the scheduler
        self._assignments = Assignments([])

    def _pipeline(self, config: Config) -> Pipeline:
        fetch = fetcher_from_config(config) if config.section("skymaps")["fetch"] else None
        return Pipeline(self.engine, config, fetch=fetch)

    # -- Kafka -----------------------------------------------------------------------------
    def _subscribe(self, kind: str, consumer: Consumer) -> None:
        def assigned(_c: Consumer, partitions: list[TopicPartition]) -> None:
            self._assignments.assigned(kind)
            log.info("%s consumer assigned %d partitions", kind, len(partitions))

        def revoked(_c: Consumer, partitions: list[TopicPartition]) -> None:
            self.book.forget(partitions)
            self._assignments.revoked(kind)

        consumer.subscribe(topics_of(self.config, self.registry, kind), on_assign=assigned,
                           on_revoke=revoked)
        log.info("%s consumer subscribed to %s", kind,
                 ", ".join(topics_of(self.config, self.registry, kind)))

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
                self._settle(Parsed(UNCLAIMED, raw, origin, error=exc), topic)
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
            self.delivery.wake()

    def _settle(self, parsed: Parsed, topic: str) -> None:
        self._count(topic, self._retrying(lambda: self.pipeline.settle(parsed)))

    def _count(self, topic: str, outcome: Outcome) -> None:
        self.book.count(topic, dead_letter=outcome.kind == "dead_letter")
        self.metrics.messages_in.labels(source=topic, kind=outcome.kind).inc()
        if outcome.touched:
            self.metrics.coincidences.labels(status="created_or_changed").inc(
                len(outcome.touched))
            self.delivery.wake()
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
    def _delivered(self, counts: Counter[str]) -> None:
        for outcome, n in counts.items():
            self.metrics.deliveries.labels(channel="all", outcome=outcome).inc(n)

    def _heartbeat(self) -> None:
        try:
            heartbeat.beat(self.engine, instance=self.instance, started_at=self.started_at,
                           sources=self.book.snapshot())
        except SQLAlchemyError as exc:  # the database is down: the next beat tries again
            log.warning("heartbeat of %s not written: %s", self.instance, exc)

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
                    spool = self.config.section("daemon")["spool_dir"]
                    if spool:
                        process_spool(self.pipeline, self.registry, Path(spool), max_bytes=int(
                            self.config.section("limits")["max_message_bytes"]))
            except Exception:  # a failing job logs and runs again at its next period
                log.exception("scheduled job %s failed", job)

    def _schedule(self, scheduler: BackgroundScheduler) -> None:
        """(Re)place the periodic jobs with the configured periods."""
        conf = self.config.section("daemon")
        jobs: list[tuple[Callable[[], None], str, float]] = [
            (self._heartbeat, "heartbeat", conf["heartbeat_interval_seconds"]),
            (self._prune_cache, "prune", conf["prune_interval_seconds"]),
            (self._flag("rescore"), "rescore", conf["rescore_interval_seconds"]),
            (self._flag("expire"), "expire", conf["expire_interval_seconds"]),
        ]
        if conf["spool_dir"]:
            jobs.append((self._flag("spool"), "spool", conf["spool_interval_seconds"]))
        scheduler.remove_all_jobs()
        for func, name, seconds in jobs:
            scheduler.add_job(func, "interval", seconds=seconds, id=name, max_instances=1,
                              coalesce=True)

    # -- reload ------------------------------------------------------------------------------
    def _reload_config(self) -> None:
        """SIGHUP: load the configuration again and apply what can change while running."""
        self.notifier.reloading()
        try:
            new = self._load()
            emitters = build_emitters(new)
            registry = registry_of(new)
            pipeline = self._pipeline(new)
        except Exception as exc:  # a bad file must not stop a running service
            log.error("configuration not reloaded, the running one stays: %s", exc)
            self.notifier.ready()
            return
        for key in restart_needed(self.config, new):
            log.warning("configuration: %s changed; it takes effect after a restart", key)
        configure(str(new.section("logging")["level"]))
        self.delivery.reconfigure(new, emitters)
        topics = {kind: topics_of(self.config, self.registry, kind) for kind in KINDS}
        self.config, self.registry, self.pipeline = new, registry, pipeline
        for kind, consumer in self._consumers:
            if topics_of(new, registry, kind) != topics[kind]:
                self._subscribe(kind, consumer)
        if self.scheduler is not None:
            self._schedule(self.scheduler)
        self._due.add("rescore")  # scoring settings may have changed
        log.info("configuration reloaded (%s); %d channels", ", ".join(map(str, new.sources)),
                 len(emitters))
        self.notifier.ready()

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
        for kind in KINDS:
            if topics_of(self.config, self.registry, kind):
                consumer = make_consumer(self.config, kind, instance=self.instance)
                self._subscribe(kind, consumer)
                self._consumers.append((kind, consumer))
        if not self._consumers and not self.config.section("daemon")["spool_dir"]:
            raise ConfigError("nothing to consume: no Kafka topics and no daemon.spool_dir")
        self._assignments = Assignments([kind for kind, _c in self._consumers])
        self.scheduler = scheduler = BackgroundScheduler(timezone="UTC")
        self._schedule(scheduler)
        scheduler.start()
        self._heartbeat()
        self.delivery.start()
        port = int(self.config.section("daemon")["health_port"])
        if port:
            self.health = HealthServer("127.0.0.1", port, metrics=self.metrics).start()
        watchdog = watchdog_interval_s()
        self.notifier.ready(status=f"consuming with {len(self._consumers)} consumers")
        log.info("mma %s running: %d consumers", self.instance, len(self._consumers))
        last_message = last_watchdog = time.monotonic()
        got = 0
        try:
            while not self._stop:
                if self.health is not None:
                    self.health.ping()
                if watchdog is not None and time.monotonic() - last_watchdog >= watchdog:
                    self.notifier.watchdog()
                    last_watchdog = time.monotonic()
                if self._reload:
                    self._reload = False
                    self._reload_config()
                if self._due:
                    self._run_due()
                kafka = self.config.section("kafka")
                # Wait for messages only when the last round found none: a consumer with
                # nothing to read (notices, most of the time) must not hold up the next
                # alert batch for its poll timeout. Idle, the timeout is shared out.
                wait = 0.0 if got else float(kafka["poll_timeout_seconds"]) / len(
                    self._consumers or [None])
                got = 0
                for _kind, consumer in self._consumers:
                    got += self._poll(consumer, int(kafka["batch"]), wait)
                if not self._consumers:  # spool directory only: the scheduler flags work
                    time.sleep(wait)
                # Idle time counts only while every consumer holds its partitions (a
                # restarted group or a rebalance can take a while; see Assignments).
                assigned = self._assignments.settled()
                if got or not assigned:
                    last_message = time.monotonic()
                elif (self.idle_exit_s is not None
                      and time.monotonic() - last_message > self.idle_exit_s):
                    log.info("idle for %.0f s: stopping", self.idle_exit_s)
                    break
        finally:
            self.notifier.stopping()
            scheduler.shutdown(wait=True)
            if self.health is not None:
                self.health.stop()
            for _kind, consumer in self._consumers:
                consumer.close()
            # Daemons sharing a database can commit a region and an alert in either order;
            # a re-score heals that (the scheduler's job), here once more before exit.
            with contextlib.suppress(TransientError):
                self.pipeline.rescore(datetime.now(UTC))
            self.delivery.stop(20.0)  # drains once more: the last messages' output goes out
            with contextlib.suppress(SQLAlchemyError):  # a crash leaves it to go stale
                heartbeat.retire(self.engine, instance=self.instance)
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
            for (topic, partition), lag in self.book.lag(consumer, done).items():
                self.metrics.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)
        return len(messages)
