"""The daemon's event pages: rewritten when an event or its candidates change.

A scheduler job (:class:`mma.service.jobs.Jobs`) runs :meth:`PageJob.tick` every
``[pages] min_interval_seconds``: it asks the database which events changed
since its last run (their row, or any of their candidates: new, re-scored,
retracted) and rewrites the page of each, then the index of active events (the
index also changes when a window ends by the clock). So an event's page is
rewritten at most once per period, whatever the rate of alerts, and a page
follows every batch that changed the event within one period.

The job only reads the database and writes files, so it runs on the scheduler's
thread, beside the main loop. Writing pages must never disturb consumption: a
page that fails is logged with its event id and tried again at the next change;
a database that is down is logged and the job runs again at its next period.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from mma.config import Config
from mma.db.pages import changed_events
from mma.page import pages_dir, write_event_page, write_index
from mma.page.cache import ImageCache
from mma.page.write import CACHE_DIR, active_event_ids

__all__ = ("PageJob",)

log = logging.getLogger(__name__)

# Changes are looked for from this long before the last run's start: a transaction
# that committed just after that start may carry an earlier updated_at (it is set
# when the row is written, not at commit), and another instance's clock may lag.
OVERLAP = timedelta(seconds=30)


class PageJob:
    """Rewrites the pages of changed events and the index.

    Parameters
    ----------
    engine
        The daemon's database.
    config
        Returns the configuration in force (it changes on SIGHUP).
    instance
        The daemon's name, for log lines.
    overlap
        How long before its last run a run looks for changes (:data:`OVERLAP`).
    """

    def __init__(self, engine: Engine, config: Callable[[], Config], *, instance: str,
                 overlap: timedelta = OVERLAP) -> None:
        self.engine = engine
        self.overlap = overlap
        self.config = config
        self.instance = instance
        self.last_run: datetime | None = None  # None: every active event's page is due
        self.failed: set[str] = set()  # pages that failed: due again at the next run

    def due(self, now: datetime) -> list[str]:
        """Ids of the events whose page is due at *now* (first run: every active event)."""
        if self.last_run is None:
            events = active_event_ids(self.engine, now)
        else:
            with self.engine.connect() as conn:
                events = changed_events(conn, self.last_run - self.overlap)
        return sorted(set(events) | self.failed)

    def tick(self) -> None:
        """The scheduler's entry: :meth:`run` now."""
        self.run()

    def run(self, now: datetime | None = None) -> list[str]:
        """Rewrite the due pages and the index; return the ids of the pages written."""
        conf = self.config().section("pages")
        if not conf["enabled"]:
            return []
        now = now or datetime.now(UTC)
        out = pages_dir(self.config())
        try:
            events = self.due(now)
        except SQLAlchemyError as exc:  # the database is down: the next period tries again
            log.warning("%s: event pages not written: %s", self.instance, exc)
            return []
        written = []
        for event_id in events:
            try:
                write_event_page(self.engine, event_id, out,
                                 max_candidates=int(conf["max_candidates"]), now=now)
                written.append(event_id)
            except Exception:  # one page must not stop the others, nor the daemon
                log.exception("%s: event %s: page not written", self.instance, event_id)
        removed = ImageCache(out / CACHE_DIR).prune()
        if removed:
            log.info("%s: %d unused page pictures pruned", self.instance, removed)
        try:
            write_index(self.engine, out, now=now)
        except Exception:
            log.exception("%s: index of event pages not written", self.instance)
        self.last_run = now
        self.failed = set(events) - set(written)
        return written
