"""What the notice and alert paths share: the database, the matcher, the channels.

A :class:`Stage` is built once by :class:`mma.ingest.pipeline.Pipeline`; the
paths in :mod:`mma.ingest.notices` and :mod:`mma.ingest.alerts` write through
it, each message (or batch) in one transaction that ends with :meth:`Stage.finish`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from mma import outbox
from mma.config import Config
from mma.match.correlator import Correlator
from mma.match.revisions import Ledger, rerank
from mma.models import Alert, Notice

log = logging.getLogger(__name__)


class Handler(Protocol):
    """What the pipeline needs of a handler module (see :mod:`mma.handlers`)."""

    NAME: str
    KIND: str

    def parse(self, raw: bytes, *, topic: str) -> Notice | Alert: ...


@dataclass
class Outcome:
    """What processing one message did."""

    kind: str  # notice | alert | duplicate | ignored | dead_letter
    touched: set[str] = field(default_factory=set)  # candidate ids published


@dataclass
class Stage:
    """The shared parts of one pipeline.

    Attributes
    ----------
    fetch
        Downloads a skymap URL (raising TransientError or BadMessage); None
        leaves URL-only maps unfetched (replays without --fetch).
    dead_letter
        Keeps a message that cannot be processed: (source, origin, error, raw).
    max_skymap_bytes
        Cap on a skymap after gunzip [bytes] (``limits.max_skymap_inflated_bytes``).
    max_region_tiles
        Cap on the tiles of one region (``limits.max_region_tiles``).
    """

    engine: Engine
    config: Config
    correlator: Correlator
    channels: Mapping[str, Mapping[str, Any]]
    fetch: Callable[[str], bytes] | None
    dead_letter: Callable[[str, str, BaseException, bytes], Outcome]
    max_skymap_bytes: int
    max_region_tiles: int

    def finish(self, conn: Connection, ledger: Ledger, event_pks: set[int]) -> set[str]:
        """Rank, keep the revision history, and queue what was published."""
        versions = {a.region_pk: a.version for a in self.correlator.active.values()}
        rerank(conn, ledger, event_pks, versions)
        ledger.flush(conn)
        outbox.enqueue(conn, self.channels, ledger.published, utcnow())
        return set(ledger.published)



def utcnow() -> datetime:
    """The wall clock, timezone-aware UTC."""
    return datetime.now(UTC)
