"""Who writes what at once: the regions lock, and one writer per event.

Daemons sharing a PostgreSQL database write concurrently; the final state must
not depend on which of them stored what first. Two transaction-scoped advisory
locks order the writes (docs/concurrency.md):

* **The regions lock.** A transaction that changes which regions are active (a
  notice: new event, new region version, retraction; a fetched map; expiry)
  holds it exclusively; a transaction that matches against the active regions
  (an alert batch, a re-score) holds it shared. So an alert batch sees no
  region change between its start and its commit: its alerts are matched
  against the regions active at its commit, and a region's back-match sees
  every alert committed before it (none is in flight).
* **One lock per event.** Shared holders of the regions lock take the lock of
  every event whose candidates they will write, in event order: two alert
  batches (or a batch and a re-score) never write one event's candidates,
  ranks or revisions at the same time.

SQLite has a single writer and serialisable transactions (a write transaction
whose snapshot is stale fails and is retried): both locks are no-ops there.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, text

# Keys in PostgreSQL's advisory lock space (bigint); "mma" in the high bits, away from
# the migration lock (mma.db.engine.MIGRATION_LOCK).
REGIONS_KEY = 0x6D6D61_0001
PRUNE_KEY = 0x6D6D61_0002  # one retention prune at a time (mma.db.retention), session-level
EVENT_KEY_BASE = 0x6D6D61 << 32  # + events.id


def _postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def hold_regions(conn: Connection) -> None:
    """Take the regions lock exclusively until the transaction ends.

    For transactions that store, supersede, retract or expire a region.
    """
    if _postgres(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": REGIONS_KEY})


def share_regions(conn: Connection) -> None:
    """Take the regions lock shared until the transaction ends (alert batches, re-scores).

    Call first in the transaction, before reading the active regions.
    """
    if _postgres(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": REGIONS_KEY})


def lock_events(conn: Connection, event_pks: Iterable[int]) -> None:
    """Take the lock of each event until the transaction ends, in event order.

    Every transaction takes them in ascending ``events.id``, so two of them
    never wait for each other in a cycle. Call with the regions lock held
    (shared); an exclusive holder needs no event lock.
    """
    if not _postgres(conn):
        return
    for event_pk in sorted(set(event_pks)):
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                     {"key": EVENT_KEY_BASE + int(event_pk)})
