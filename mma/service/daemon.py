"""``mma run``: consume notices and alerts from Kafka, correlate, deliver.

The daemon composes the service's parts and runs the main loop:

* :mod:`mma.service.consume`: the Kafka consumers (offsets committed after the
  database commit);
* :mod:`mma.service.intake`: each batch into the pipeline (:mod:`mma.ingest`);
* :mod:`mma.service.jobs`: heartbeat, cache pruning, and the flags of re-scoring,
  expiry and the spool directory, which the main loop runs between batches;
* :mod:`mma.delivery`: one thread per channel draining the outbox;
* :mod:`mma.service.liveness`: the watchdog and ``/healthz`` pinged every round,
  also while a database outage is waited out.

SIGTERM/SIGINT stop after the current batch (offsets committed, each channel
drained once more within :data:`DELIVERY_STOP_S`). SIGHUP reloads the
configuration: logging, channels and their rules, scoring and vetting, windows,
topics and periods take effect at once; database, Kafka servers and groups, the
instance name and the health port need a restart (a warning says so).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from sqlalchemy.exc import SQLAlchemyError

from mma.config import Config, load_config, restart_needed
from mma.db.engine import make_engine, upgrade
from mma.delivery import DeliveryWorker, build_emitters
from mma.errors import ConfigError, TransientError
from mma.log import configure
from mma.service import heartbeat
from mma.service.consume import Consumers
from mma.service.health import HealthServer, Metrics
from mma.service.intake import Intake
from mma.service.jobs import Jobs
from mma.service.liveness import Liveness, Retrier
from mma.service.preflight import check_daemon
from mma.service.runtime import Runtime
from mma.service.sources import SourceBook
from mma.service.systemd import Notifier, watchdog_interval_s

log = logging.getLogger(__name__)

# Budget of the channels' last drain at shutdown [s]: well inside the unit's
# TimeoutStopSec (60 s) with the batch in hand and the consumers' close.
DELIVERY_STOP_S = 20.0


def _make_spool(config: Config) -> None:
    """Create the spool directory if it is configured and missing.

    Raises
    ------
    ConfigError
        It cannot be created (the service user may write only its StateDirectory).
    """
    spool = str(config.section("daemon")["spool_dir"])
    if spool:
        try:
            Path(spool).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"daemon.spool_dir {spool}: cannot create it: "
                              f"{exc.strerror or exc}") from exc


class Daemon:
    """The long-running service (see the module docstring).

    Parameters
    ----------
    config
        The configuration; reloaded from its sources on SIGHUP.
    idle_exit_s
        Stop after this many seconds without a message (tests, one-shot catch-up).
    load
        Loads the configuration again on SIGHUP.
    """

    def __init__(self, config: Config, *, idle_exit_s: float | None = None,
                 load: Callable[[], Config] = load_config) -> None:
        self.idle_exit_s = idle_exit_s
        self._load = load
        self._stop = self._reload = False
        check_daemon(config)  # every missing source, secret or bad setting at once
        _make_spool(config)
        self.engine = make_engine(config.database_url)
        upgrade(self.engine)
        self.runtime = Runtime.build(self.engine, config)
        self.instance = config.section("kafka")["instance"] or socket.gethostname()
        self.metrics = Metrics()
        self.book = SourceBook()
        self.notifier = Notifier.from_environ(unset=True)
        self.liveness = Liveness(self.notifier, watchdog_interval_s())
        self.delivery = DeliveryWorker(self.engine, config, owner=self.instance,
                                       on_counts=self._delivered)
        retry = Retrier(lambda: self.runtime.config.section("daemon"), self.liveness,
                        lambda: self._stop)
        self.intake = Intake(self.runtime, retry, self.metrics, self.book, self.delivery.wake)
        self.consumers = Consumers(self.runtime, self.instance, self.book, self.metrics,
                                   lambda: self._stop)
        self.jobs = Jobs(self.runtime, self.engine, instance=self.instance,
                         started_at=datetime.now(UTC), book=self.book)

    @property
    def config(self) -> Config:
        """The configuration in force."""
        return self.runtime.config

    def _delivered(self, counts: Counter[str]) -> None:
        for outcome, n in counts.items():
            self.metrics.deliveries.labels(channel="all", outcome=outcome).inc(n)

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            log.info("%s: signal %s: stopping after the current batch", self.instance,
                     signal.Signals(signum).name)
            self._stop = True

    def run(self) -> int:
        """Consume until stopped; return the exit status."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._signal)
        n_consumers = self.consumers.open()
        if not n_consumers and not self.config.section("daemon")["spool_dir"]:
            raise ConfigError("nothing to consume: no Kafka topics and no daemon.spool_dir")
        self.jobs.start()
        self.delivery.start()
        port = int(self.config.section("daemon")["health_port"])
        if port:
            # /healthz shows how long ago GCN's heartbeat arrived (mma.service.gcn_heartbeat).
            self.liveness.health = HealthServer(
                "127.0.0.1", port, metrics=self.metrics,
                source_lag=self.intake.gcn_heartbeat.health).start()
        self.notifier.ready(status=f"consuming with {n_consumers} consumers")
        log.info("mma %s running: %d consumers", self.instance, n_consumers)
        try:
            self._loop()
        except TransientError as exc:
            if not self._stop:
                raise
            # Asked to stop while waiting for the database: the batch in hand was not
            # committed and is read again after the restart.
            log.warning("%s: stopped while the database is unreachable: %s", self.instance, exc)
        finally:
            self._shutdown()
        return 0

    def _loop(self) -> None:
        last_message = time.monotonic()
        got = 0
        while not self._stop:
            self.liveness.ping()
            if self._reload:
                self._reload = False
                self._reload_config()
            if self.jobs.due:
                self.jobs.run_due(datetime.now(UTC))
            # Wait for messages only when the last round found none: a consumer with
            # nothing to read (notices, most of the time) must not hold up the next
            # alert batch for its poll timeout.
            wait = 0.0 if got else float(self.config.section("kafka")["poll_timeout_seconds"])
            got = self.consumers.poll(self.intake, wait)
            if not self.consumers.consumers:  # spool directory only: the scheduler flags work
                time.sleep(wait)
            # Idle time counts only while every consumer holds its partitions (a
            # restarted group or a rebalance can take a while; see Assignments).
            if got or not self.consumers.assignments.settled():
                last_message = time.monotonic()
            elif (self.idle_exit_s is not None
                  and time.monotonic() - last_message > self.idle_exit_s):
                log.info("%s: idle for %.0f s: stopping", self.instance, self.idle_exit_s)
                return

    def _shutdown(self) -> None:
        self.notifier.stopping()
        self.jobs.shutdown()
        if self.liveness.health is not None:
            self.liveness.health.stop()
        self.consumers.close()
        self.delivery.stop(DELIVERY_STOP_S)  # the last messages' output goes out
        with contextlib.suppress(SQLAlchemyError):  # a crash leaves it to go stale
            heartbeat.retire(self.engine, instance=self.instance)
        self.engine.dispose()

    def _reload_config(self) -> None:
        """SIGHUP: load the configuration again and apply what can change while running."""
        self.notifier.reloading()
        try:
            new = self._load()
            check_daemon(new)
            emitters = build_emitters(new)
            runtime = Runtime.build(self.engine, new)
        except Exception as exc:  # a bad file must not stop a running service
            log.error("%s: configuration not reloaded, the running one stays: %s",
                      self.instance, exc)
            self.notifier.ready()
            return
        for key in restart_needed(self.config, new):
            log.warning("configuration: %s changed; it takes effect after a restart", key)
        configure(str(new.section("logging")["level"]))
        self.delivery.reconfigure(new, emitters)
        self.runtime.swap(runtime)
        self.consumers.resubscribe()
        self.jobs.reschedule()
        self.jobs.due.add("rescore")  # scoring settings may have changed
        log.info("%s: configuration reloaded (%s); %d channels", self.instance,
                 ", ".join(map(str, new.sources)), len(emitters))
        self.notifier.ready()
