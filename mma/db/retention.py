"""Retention: what the database forgets, and when (``[retention]``, docs/retention.md).

Rubin alone stores up to ten million alerts a night. :func:`prune` deletes alerts older
than the *alert horizon* (the longest look-back of the windows in force, plus a margin,
and never within the window of an active region) with their cutouts, except every
alert of an object that is or was a candidate; the objects left without alerts; older
cutouts, delivered outbox rows and dead letters by age; and the background counters
no re-measurement reads again. :class:`Horizons` says where each table's line falls.

Every delete runs in chunks of at most :attr:`RetentionPolicy.chunk` rows, each its own
short transaction, so a prune of millions of rows never holds locks for long while
daemons write. Alert chunks hold the regions lock shared (:mod:`mma.db.locks`) and
re-read the active regions, so that a region stored meanwhile keeps its window's
alerts. On PostgreSQL one prune runs at a time: :data:`mma.db.locks.PRUNE_KEY` is
taken with a try-lock and a second daemon skips its turn. A dry run counts with the
same predicates.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, Select, and_, delete, exists, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from mma.config import Config
from mma.db import locks
from mma.db.background import background_surveys
from mma.db.schema import (
    alerts,
    background_cells,
    coincidences,
    cutouts,
    dead_letters,
    objects,
    outbox,
    regions,
)
from mma.match.background import night_of
from mma.models import EVENT_CLASSES

log = logging.getLogger(__name__)

CHUNK = 10_000  # rows per delete statement (one short transaction each)


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of row is kept [days], from the configuration in force."""

    lookback_days: float  # longest look-back of a window in force: -min(start), >= 0
    margin_days: float  # added to the alert and background horizons (late notices)
    cutout_days: float  # by alert time
    outbox_days: float  # by send time (superseded rows: by creation)
    dead_letter_days: float  # by receipt
    background_days: float  # counters read: background.span_days, else the longest window
    chunk: int = CHUNK

    @classmethod
    def from_config(cls, config: Config) -> RetentionPolicy:
        """The policy of *config*: ``[retention]``, ``[windows]`` and ``[background]``."""
        from mma.match.scorer import Backgrounds  # the background's own span rule

        conf = config.section("retention")
        starts = [config.window_days(c)[0] for c in EVENT_CLASSES]
        return cls(lookback_days=max(0.0, -min(starts)),
                   margin_days=float(conf["margin_days"]),
                   cutout_days=float(conf["cutout_days"]),
                   outbox_days=float(conf["outbox_days"]),
                   dead_letter_days=float(conf["dead_letter_days"]),
                   background_days=Backgrounds(config).span_days())


@dataclass(frozen=True)
class Horizons:
    """Rows older than these times [UTC] go (see :func:`prune`)."""

    windows: datetime  # now - lookback - margin: no future event reaches further back
    active_start: datetime | None  # earliest window start of an active region
    alerts: datetime  # the earlier of the two
    cutouts: datetime
    outbox: datetime
    dead_letters: datetime
    background: datetime  # counters of nights that began before this go


@dataclass(frozen=True)
class PruneResult:
    """Rows per table that a dry run would delete, or that a prune deleted.

    ``skipped``: another process held :data:`mma.db.locks.PRUNE_KEY` (nothing done).
    ``complete``: False when the prune stopped early (asked to stop, or a race with
    a writer); what was not deleted goes at the next run.
    """

    dry_run: bool
    horizons: Horizons
    alerts: int = 0
    cutouts: int = 0
    objects: int = 0
    outbox: int = 0
    dead_letters: int = 0
    background_cells: int = 0
    skipped: bool = False
    complete: bool = True

    TABLES: ClassVar[tuple[str, ...]] = ("alerts", "cutouts", "objects", "outbox",
                                         "dead_letters", "background_cells")

    @classmethod
    def of(cls, counts: dict[str, int], *, dry_run: bool, horizons: Horizons,
           complete: bool = True) -> PruneResult:
        """The result with *counts* (rows per table; a table not named: 0)."""
        n = {name: int(counts.get(name, 0)) for name in cls.TABLES}
        return cls(dry_run=dry_run, horizons=horizons, alerts=n["alerts"],
                   cutouts=n["cutouts"], objects=n["objects"], outbox=n["outbox"],
                   dead_letters=n["dead_letters"], background_cells=n["background_cells"],
                   complete=complete)

    def counts(self) -> dict[str, int]:
        """Rows per table, in :attr:`TABLES` order."""
        return {name: int(getattr(self, name)) for name in self.TABLES}


def _active_start(conn: Connection) -> datetime | None:
    """The earliest window start of an active region, if any."""
    query = select(func.min(regions.c.window_start)).where(regions.c.status == "active")
    return conn.execute(query).scalar_one()


def horizons(conn: Connection, policy: RetentionPolicy, now: datetime) -> Horizons:
    """The horizons of *policy* at *now* (timezone-aware UTC), on the database of *conn*."""
    if now.tzinfo is None:
        raise ValueError(f"naive datetime {now!r}: retention works in UTC")
    now = now.astimezone(UTC)
    margin = timedelta(days=policy.margin_days)
    windows = now - timedelta(days=policy.lookback_days) - margin
    active = _active_start(conn)
    return Horizons(windows=windows, active_start=active,
                    alerts=windows if active is None else min(windows, active),
                    cutouts=now - timedelta(days=policy.cutout_days),
                    outbox=now - timedelta(days=policy.outbox_days),
                    dead_letters=now - timedelta(days=policy.dead_letter_days),
                    # Whole nights are read (mma.match.scorer): a day more for the rounding.
                    background=now - timedelta(days=math.ceil(policy.background_days) + 1)
                    - margin)


def _unclaimed() -> ColumnElement[bool]:
    """The alert's object was never a candidate, and no coincidence names the alert."""
    return and_(~exists().where(coincidences.c.object_pk == alerts.c.object_pk),
                ~exists().where(coincidences.c.alert_pk == alerts.c.id))


def _old_alerts(before: datetime) -> ColumnElement[bool]:
    return and_(alerts.c.time < before, _unclaimed())


def _old_cutouts(h: Horizons) -> Select[Any]:
    """Alert keys of the stamps to go (an alert's three share one key): those of alerts
    older than the stamps' horizon, candidates' included, and of the alerts that go."""
    return (select(cutouts.c.alert_pk).join(alerts, alerts.c.id == cutouts.c.alert_pk)
            .where(or_(alerts.c.time < h.cutouts, _old_alerts(h.alerts))))


def _old_outbox(before: datetime) -> ColumnElement[bool]:
    """Delivered rows older than *before*, but the newest sent one of each candidate and
    channel: it says where a retraction must go (:func:`mma.outbox.enqueue`)."""
    newer = outbox.alias("newer")
    later_sent = exists().where(newer.c.coincidence_id == outbox.c.coincidence_id,
                                newer.c.channel == outbox.c.channel,
                                newer.c.status == "sent", newer.c.id > outbox.c.id)
    return or_(and_(outbox.c.status == "sent", outbox.c.sent_at < before, later_sent),
               and_(outbox.c.status == "superseded", outbox.c.created_at < before))


def _first_night(survey: str, before: datetime) -> int:
    """The first night of *survey* whose counters are kept: the one *before* falls in."""
    return int(night_of(survey, before.timestamp()))


def count(conn: Connection, h: Horizons) -> dict[str, int]:
    """Rows per table that :func:`prune` would delete at horizons *h* (nothing deleted)."""
    def n(table: Any, *where: ColumnElement[bool]) -> int:
        return int(conn.execute(select(func.count()).select_from(table).where(*where))
                   .scalar_one())

    with_alert = exists().where(alerts.c.object_pk == objects.c.id)
    return {
        "alerts": n(alerts, _old_alerts(h.alerts)),
        "cutouts": n(_old_cutouts(h).subquery()),
        # Objects whose every alert goes: some before the horizon, none after it.
        "objects": n(objects, with_alert.where(alerts.c.time < h.alerts),
                     ~with_alert.where(alerts.c.time >= h.alerts),
                     ~exists().where(coincidences.c.object_pk == objects.c.id)),
        "outbox": n(outbox, _old_outbox(h.outbox)),
        "dead_letters": n(dead_letters, dead_letters.c.received_at < h.dead_letters),
        "background_cells": sum(n(background_cells, background_cells.c.survey == survey,
                                  background_cells.c.night < _first_night(survey, h.background))
                                for survey in background_surveys(conn)),
    }


# -- deletes ------------------------------------------------------------------------------

Step = Callable[[Connection], dict[str, int] | None]
"""One chunk in its own transaction: rows deleted per table, or None when none is left."""


def _chunked(conn: Connection, what: str, step: Step, stop: Callable[[], bool],
             totals: dict[str, int]) -> str:
    """Run *step* until nothing is left; add its counts to *totals*.

    Returns ``done``, ``stopped`` (*stop* said so) or ``raced`` (a writer made a row
    of the chunk referenced meanwhile: the chunk was rolled back; the next run retries).
    """
    while not stop():
        try:
            with conn.begin():
                deleted = step(conn)
        except IntegrityError as exc:
            log.warning("retention: %s: a chunk raced a writer and was rolled back (%s); "
                        "the next prune retries it", what, str(exc.orig).splitlines()[0])
            return "raced"
        if deleted is None:
            return "done"
        for table, n in deleted.items():
            totals[table] = totals.get(table, 0) + n
        log.debug("retention: %s: %s", what, deleted)
    return "stopped"


def _among(conn: Connection, column: Any, keys: list[int]) -> ColumnElement[bool]:
    """*column* is one of *keys*: one array parameter on PostgreSQL (10,000 parameters of
    an IN list cost more to parse and plan than the delete itself), IN elsewhere."""
    if conn.dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, keys, type_=ARRAY(sa.BigInteger)))
    return column.in_(keys)


def _rows(result: Any) -> int:
    return max(0, int(result.rowcount or 0))


def _id_step(table: Any, where: ColumnElement[bool], chunk: int) -> Step:
    """Delete up to *chunk* rows of *table* (an ``id`` key) matching *where*."""
    def step(conn: Connection) -> dict[str, int] | None:
        ids = list(conn.execute(select(table.c.id).where(where).order_by(table.c.id)
                                .limit(chunk)).scalars())
        if not ids:
            return None
        return {table.name: _rows(conn.execute(delete(table).where(_among(conn, table.c.id, ids))))}
    return step


def _cutout_step(h: Horizons, chunk: int) -> Step:
    def step(conn: Connection) -> dict[str, int] | None:
        keys = sorted(set(conn.execute(_old_cutouts(h).order_by(cutouts.c.alert_pk)
                                       .limit(chunk)).scalars()))
        if not keys:
            return None
        return {"cutouts": _rows(conn.execute(delete(cutouts)
                                              .where(_among(conn, cutouts.c.alert_pk, keys))))}
    return step


def _alert_step(h: Horizons, chunk: int) -> Step:
    """Old alerts with their cutouts, and their objects left with none (never a candidate's).

    The regions lock is held shared and the active regions read again: a region stored
    since the horizons were taken keeps its window's alerts, and its back-match (which
    holds the lock exclusively) never sees a chunk half deleted.
    """
    def step(conn: Connection) -> dict[str, int] | None:
        locks.share_regions(conn)
        active = _active_start(conn)
        before = h.alerts if active is None else min(h.alerts, active)
        rows = conn.execute(select(alerts.c.id, alerts.c.object_pk).where(_old_alerts(before))
                            .order_by(alerts.c.time).limit(chunk)).all()
        if not rows:
            return None
        ids = [int(r.id) for r in rows]
        owners = sorted({int(r.object_pk) for r in rows})
        n_cutouts = _rows(conn.execute(delete(cutouts).where(
            _among(conn, cutouts.c.alert_pk, ids))))
        n_alerts = _rows(conn.execute(delete(alerts).where(_among(conn, alerts.c.id, ids))))
        n_objects = _rows(conn.execute(delete(objects).where(
            _among(conn, objects.c.id, owners), ~exists().where(alerts.c.object_pk == objects.c.id),
            ~exists().where(coincidences.c.object_pk == objects.c.id))))
        return {"cutouts": n_cutouts, "alerts": n_alerts, "objects": n_objects}
    return step


def _background_step(survey: str, first_night: int) -> Step:
    """One night of a survey's counters (at most 12,288 order-5 pixels) per chunk."""
    c = background_cells.c

    def step(conn: Connection) -> dict[str, int] | None:
        night = conn.execute(select(func.min(c.night)).where(
            c.survey == survey, c.night < first_night)).scalar_one()
        if night is None:
            return None
        return {"background_cells": _rows(conn.execute(delete(background_cells).where(
            c.survey == survey, c.night == night)))}
    return step


def _steps(conn: Connection, policy: RetentionPolicy,
           h: Horizons) -> Iterable[tuple[str, Step]]:
    """The delete phases, in order: stamps by age first, so a dry run's counts add up."""
    yield "cutouts", _cutout_step(h, policy.chunk)
    yield "alerts", _alert_step(h, policy.chunk)
    yield "outbox", _id_step(outbox, _old_outbox(h.outbox), policy.chunk)
    yield "dead_letters", _id_step(dead_letters,
                                   dead_letters.c.received_at < h.dead_letters, policy.chunk)
    with conn.begin():
        surveys = background_surveys(conn)
    for survey in surveys:
        yield f"background_cells of {survey}", _background_step(
            survey, _first_night(survey, h.background))


def _try_lock(conn: Connection) -> bool:
    """Take :data:`mma.db.locks.PRUNE_KEY` for the session if free (PostgreSQL; True elsewhere)."""
    if conn.dialect.name != "postgresql":
        return True
    with conn.begin():
        return bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"),
                                 {"key": locks.PRUNE_KEY}).scalar_one())


def _unlock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        with conn.begin():
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": locks.PRUNE_KEY})


def prune(bind: Engine | Connection, policy: RetentionPolicy, now: datetime, *,
          dry_run: bool = False, stop: Callable[[], bool] | None = None) -> PruneResult:
    """Delete (or with *dry_run* only count) what *policy* no longer keeps at *now*.

    Parameters
    ----------
    bind
        An engine, or a connection outside any transaction (each chunk commits).
    policy
        :meth:`RetentionPolicy.from_config` of the configuration in force.
    now
        The time the horizons are measured from (timezone-aware UTC).
    dry_run
        Count what would go; delete nothing.
    stop
        Asked between chunks; True stops the prune there (daemon shutdown).

    Returns
    -------
    PruneResult
        Rows per table and the horizons; ``skipped`` when another process was pruning.
    """
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return prune(conn, policy, now, dry_run=dry_run, stop=stop)
    conn = bind
    if conn.in_transaction():
        raise ValueError("prune commits each chunk: pass a connection outside a transaction")
    with conn.begin():
        h = horizons(conn, policy, now)
        if dry_run:
            return PruneResult.of(count(conn, h), dry_run=True, horizons=h)
    if not _try_lock(conn):
        log.info("retention: another process is pruning; this turn is skipped")
        return PruneResult(dry_run=False, horizons=h, skipped=True)
    totals: dict[str, int] = {}
    outcomes: list[str] = []
    try:
        for what, step in _steps(conn, policy, h):
            outcomes.append(_chunked(conn, what, step, stop or (lambda: False), totals))
            if outcomes[-1] == "stopped":
                break
    finally:
        _unlock(conn)
    result = PruneResult.of(totals, dry_run=False, horizons=h,
                            complete=set(outcomes) == {"done"})
    log.debug("retention: alerts before %s pruned: %s%s", h.alerts.isoformat(),
             ", ".join(f"{k} {v}" for k, v in result.counts().items()),
             "" if result.complete else " (incomplete: the next run goes on)")
    return result

