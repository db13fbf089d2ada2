"""Daemon heartbeats in the shared database, for ``mma status``.

Each running daemon instance writes (:mod:`mma.db.daemons`), every heartbeat
interval, one row of :data:`mma.db.schema.daemon_status` for itself (source ``""``)
and one per Kafka topic it consumes, with the messages and dead letters counted since it
started and its consumer lag. ``mma status``, a separate process without
access to Kafka, reads them back with :func:`read_status`; an instance whose
last heartbeat is older than a few intervals is shown as stale (crashed,
stuck, or cut off from the database). A clean stop removes the instance's rows
(:func:`retire`).

Ages are measured with the reader's clock against the writer's ``updated_at``:
hosts sharing a database are expected to keep their clocks synchronised.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine

from mma.db import daemons
from mma.printable import printable

log = logging.getLogger(__name__)

INSTANCE_ROW = ""  # the source of the row describing the instance itself


@dataclass
class SourceStats:
    """What one instance has consumed from one source since it started.

    Attributes
    ----------
    messages : int
        Messages consumed.
    dead_letters : int
        Messages that ended in ``dead_letters``.
    lag : int or None
        Consumer lag summed over this instance's partitions of the source;
        None when unknown (no assignment or no watermark yet).
    last_message_at : datetime or None
        When the last message was consumed (timezone-aware UTC).
    """

    messages: int = 0
    dead_letters: int = 0
    lag: int | None = None
    last_message_at: datetime | None = None


class SourceStatus(NamedTuple):
    """One source of an instance as read back by :func:`read_status`."""

    source: str
    messages: int
    dead_letters: int
    lag: int | None
    last_message_at: datetime | None


@dataclass
class InstanceStatus:
    """One daemon instance as read back by :func:`read_status`.

    Attributes
    ----------
    instance, host : str
        Instance name and the host it runs on.
    pid : int
        Its process id on that host.
    started_at, updated_at : datetime
        Start and last heartbeat (timezone-aware UTC).
    age_s : float
        Seconds from the last heartbeat to the reader's *now*.
    stale : bool
        True if *age_s* exceeds the reader's threshold.
    sources : list of SourceStatus
        Per-source counters, sorted by source.
    """

    instance: str
    host: str
    pid: int
    started_at: datetime
    updated_at: datetime
    age_s: float
    stale: bool
    sources: list[SourceStatus] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (datetimes as ISO 8601 strings)."""
        return {
            "instance": self.instance, "host": self.host, "pid": self.pid,
            "started_at": self.started_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "age_s": self.age_s, "stale": self.stale,
            "sources": [{**s._asdict(), "last_message_at": _iso(s.last_message_at)}
                        for s in self.sources],
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def beat(engine: Engine, *, instance: str, started_at: datetime,
         sources: Mapping[str, SourceStats], now: datetime | None = None) -> None:
    """Record a heartbeat of *instance* in one transaction.

    Upserts the instance row (source ``""``, holding the totals over the
    sources: lag only if every source's lag is known) and one row per source,
    and deletes the rows of sources the instance no longer has.

    Parameters
    ----------
    engine : Engine
        The shared database.
    instance : str
        The daemon instance name (``kafka.instance`` or the host name).
    started_at : datetime
        When the instance started (timezone-aware).
    sources : Mapping[str, SourceStats]
        Counters by source (Kafka topic); ``""`` is reserved.
    now : datetime, optional
        The heartbeat time (timezone-aware); default: the current time.

    Raises
    ------
    ValueError
        If a source is named ``""``.
    sqlalchemy.exc.SQLAlchemyError
        If the database cannot be written; the caller decides whether to go on.
    """
    if INSTANCE_ROW in sources:
        raise ValueError("source name '' is reserved for the instance row")
    now = now or datetime.now(UTC)
    lags = [s.lag for s in sources.values() if s.lag is not None]
    last = [s.last_message_at for s in sources.values() if s.last_message_at is not None]
    total = SourceStats(
        messages=sum(s.messages for s in sources.values()),
        dead_letters=sum(s.dead_letters for s in sources.values()),
        lag=sum(lags) if sources and len(lags) == len(sources) else None,
        last_message_at=max(last, default=None),
    )
    common = {"instance": instance, "started_at": started_at, "updated_at": now,
              "pid": os.getpid(), "host": socket.gethostname()}
    rows = [{**common, "source": name, "messages": s.messages,
             "dead_letters": s.dead_letters, "lag": s.lag,
             "last_message_at": s.last_message_at}
            for name, s in {INSTANCE_ROW: total, **sources}.items()]
    with engine.begin() as conn:
        daemons.write_beat(conn, instance, rows)
    log.debug("heartbeat of %s: %d sources", instance, len(sources))


def retire(engine: Engine, *, instance: str) -> None:
    """Remove the rows of *instance* (on a clean stop).

    Parameters
    ----------
    engine : Engine
        The shared database.
    instance : str
        The daemon instance name given to :func:`beat`.
    """
    with engine.begin() as conn:
        n = daemons.remove_instance(conn, instance)
    log.debug("heartbeat rows of %s removed: %d", instance, n)


def read_status(conn: Connection, *, now: datetime,
                stale_after_s: float) -> list[InstanceStatus]:
    """Read the heartbeats of all instances, sorted by instance name.

    Parameters
    ----------
    conn : Connection
        A connection to the shared database.
    now : datetime
        The reader's current time (timezone-aware).
    stale_after_s : float
        An instance whose last heartbeat is older than this many seconds is
        marked stale (typically three heartbeat intervals).

    Returns
    -------
    list of InstanceStatus
        One per instance row; source rows without an instance row are ignored.
    """
    rows = daemons.beats(conn)
    found: dict[str, InstanceStatus] = {}
    for row in rows:
        if row["source"] == INSTANCE_ROW:
            age = (now - row["updated_at"]).total_seconds()
            found[row["instance"]] = InstanceStatus(
                instance=row["instance"], host=row["host"], pid=row["pid"],
                started_at=row["started_at"], updated_at=row["updated_at"],
                age_s=age, stale=age > stale_after_s)
    for row in rows:
        if row["source"] != INSTANCE_ROW and row["instance"] in found:
            found[row["instance"]].sources.append(SourceStatus(
                row["source"], row["messages"], row["dead_letters"], row["lag"],
                row["last_message_at"]))
    for status in found.values():
        status.sources.sort(key=lambda s: s.source)
    return [found[name] for name in sorted(found)]


def format_status(statuses: Sequence[InstanceStatus]) -> list[str]:
    """Lines for ``mma status``: ``daemons: N``, then each instance and its sources.

    An unknown lag shows as ``?``, a source without messages as ``never``, and an
    instance whose heartbeat is too old ends with ``STALE``. Instance, host and
    source names are read from a shared database that any instance writes:
    they are shown through :func:`mma.printable.printable`.
    """
    lines = [f"daemons: {len(statuses)}"]
    for st in statuses:
        lines.append(f"  {printable(st.instance)}  {printable(st.host)}/pid {st.pid}"
                     f"  up since {st.started_at.isoformat(timespec='seconds')}"
                     f"  heartbeat {st.age_s:.0f} s ago" + ("  STALE" if st.stale else ""))
        for src in st.sources:
            last = (src.last_message_at.isoformat(timespec="seconds")
                    if src.last_message_at else "never")
            lines.append(f"    {printable(src.source)}  messages {src.messages}"
                         f"  dead letters {src.dead_letters}"
                         f"  lag {'?' if src.lag is None else src.lag}  last message {last}")
    return lines
