"""The daemon's periodic jobs on an APScheduler background scheduler.

The heartbeat (``mma status``), the pruning of the skymap cache and the database's
retention (:mod:`mma.db.retention`) run on the scheduler's thread: they share no
in-memory state with the main loop. The jobs that touch the pipeline's in-memory
region index (re-scoring with freshly measured backgrounds, expiry of closed
windows, the spool directory) only raise a flag there; the main loop runs them
between batches (:meth:`Jobs.run_due`), so the index is never used by two threads
at once. A job that fails logs and runs
again at its next period.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from mma.db.retention import RetentionPolicy, prune
from mma.replay import process_spool
from mma.service import heartbeat
from mma.service.pages import PageJob
from mma.service.runtime import Runtime
from mma.service.sources import SourceBook
from mma.skymaps.cache import SkymapCache

log = logging.getLogger(__name__)


class Jobs:
    """The scheduler, and the flags of the jobs the main loop runs."""

    def __init__(self, runtime: Runtime, engine: Engine, *, instance: str,
                 started_at: datetime, book: SourceBook) -> None:
        self.runtime = runtime
        self.engine = engine
        self.instance = instance
        self.started_at = started_at
        self.book = book
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.due: set[str] = {"expire"}  # flagged for the main loop; expiry first of all
        self.pages = PageJob(engine, lambda: self.runtime.config, instance=instance)
        self.stopping = False  # asked between the retention's chunks: stop at shutdown

    def start(self) -> None:
        """Schedule the jobs and start the scheduler's thread; write a first heartbeat."""
        self.reschedule()
        self.scheduler.start()
        self.heartbeat()

    def reschedule(self) -> None:
        """(Re)place the periodic jobs with the configured periods."""
        conf = self.runtime.config.section("daemon")
        jobs: list[tuple[Callable[[], None], str, float]] = [
            (self.heartbeat, "heartbeat", conf["heartbeat_interval_seconds"]),
            (self.prune_cache, "prune", conf["prune_interval_seconds"]),
            (self._flag("rescore"), "rescore", conf["rescore_interval_seconds"]),
            (self._flag("expire"), "expire", conf["expire_interval_seconds"]),
        ]
        if conf["spool_dir"]:
            jobs.append((self._flag("spool"), "spool", conf["spool_interval_seconds"]))
        pages = self.runtime.config.section("pages")
        if pages["enabled"]:  # reads the database and writes files: the scheduler's thread
            jobs.append((self.pages.tick, "pages", pages["min_interval_seconds"]))
        retention = self.runtime.config.section("retention")
        if retention["enabled"]:  # database only: the scheduler's thread
            jobs.append((self.prune_database, "retention", retention["interval_seconds"]))
        self.scheduler.remove_all_jobs()
        for func, name, seconds in jobs:
            self.scheduler.add_job(func, "interval", seconds=seconds, id=name, max_instances=1,
                                   coalesce=True)

    def shutdown(self) -> None:
        """Stop the scheduler (waiting for a running heartbeat or prune; a running
        retention stops after its current chunk)."""
        self.stopping = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def _flag(self, job: str) -> Callable[[], None]:
        def raise_flag() -> None:
            self.due.add(job)
        return raise_flag

    def run_due(self, now: datetime) -> None:
        """Run the pipeline jobs the scheduler flagged (main loop only)."""
        pipeline, config = self.runtime.pipeline, self.runtime.config
        for job in sorted(self.due):
            self.due.discard(job)
            try:
                if job == "rescore":
                    pipeline.rescore(now)
                elif job == "expire":
                    pipeline.expire(now)
                elif job == "spool" and config.section("daemon")["spool_dir"]:
                    process_spool(pipeline, self.runtime.registry,
                                  Path(config.section("daemon")["spool_dir"]),
                                  max_bytes=int(config.section("limits")["max_message_bytes"]))
            except Exception:  # a failing job logs and runs again at its next period
                log.exception("%s: scheduled job %s failed", self.instance, job)

    def heartbeat(self) -> None:
        """Write this instance's heartbeat (``mma status``)."""
        try:
            heartbeat.beat(self.engine, instance=self.instance, started_at=self.started_at,
                           sources=self.book.snapshot())
        except SQLAlchemyError as exc:  # the database is down: the next beat tries again
            log.warning("heartbeat of %s not written: %s", self.instance, exc)

    def prune_cache(self) -> None:
        """Remove downloaded skymaps older than ``skymaps.cache_max_age_days``."""
        config = self.runtime.config
        removed = SkymapCache(config.cache_dir / "skymaps").prune(
            max_age_s=config.section("skymaps")["cache_max_age_days"] * 86400.0)
        log.info("%s: skymap cache: %d files pruned", self.instance, removed)

    def prune_database(self, now: datetime | None = None) -> None:
        """Delete what ``[retention]`` no longer keeps (:func:`mma.db.retention.prune`).

        Several daemons may run it on one PostgreSQL database: one prunes, the others
        skip their turn (an advisory try-lock); the deletes are chunked and idempotent.
        """
        try:
            result = prune(self.engine, RetentionPolicy.from_config(self.runtime.config),
                           now or datetime.now(UTC), stop=lambda: self.stopping)
        except SQLAlchemyError as exc:  # the database is down: the next period tries again
            log.warning("%s: retention not run: %s", self.instance, exc)
            return
        if not result.skipped:
            log.info("%s: retention (alerts before %s): %s deleted%s", self.instance,
                     result.horizons.alerts.isoformat(),
                     ", ".join(f"{k} {v}" for k, v in result.counts().items()),
                     "" if result.complete else "; incomplete, the next run goes on")
