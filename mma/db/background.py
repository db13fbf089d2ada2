"""The survey background counters (``background_cells``): increments and reads.

The alert path adds each batch's counts in its own transaction, so a batch
redelivered after a crash (its alerts already stored) adds nothing twice. Several
daemons increment the same rows: each increment is one ``INSERT .. ON CONFLICT DO
UPDATE`` (atomic on SQLite and PostgreSQL), in key order so that two batches
touching the same cells wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from mma.db.schema import background_cells

_COUNTS = ("n_new", "n_all", "n_alerts")


@dataclass(frozen=True)
class Cells:
    """Counts of one survey, one row per (night, pixel) with any alert.

    Attributes
    ----------
    night, pixel : ndarray of int
        Night index (:func:`mma.match.background.night_of`) and HEALPix order-5
        NESTED pixel.
    n_new, n_all, n_alerts : ndarray of int
        Objects first seen, objects seen (once a night) and alerts stored.
    """

    night: np.ndarray
    pixel: np.ndarray
    n_new: np.ndarray
    n_all: np.ndarray
    n_alerts: np.ndarray

    def __len__(self) -> int:
        return len(self.night)

    def select(self, keep: np.ndarray | slice) -> Cells:
        """The rows *keep* (a mask, indices or a slice) selects."""
        return Cells(self.night[keep], self.pixel[keep], self.n_new[keep], self.n_all[keep],
                     self.n_alerts[keep])


def add_cells(conn: Connection, survey: str, cells: Cells) -> None:
    """Add *cells* to the survey's counters (rows created as needed)."""
    if not len(cells):
        return
    order = np.lexsort((cells.pixel, cells.night))
    rows = [{"survey": survey, "night": int(cells.night[i]), "pixel": int(cells.pixel[i]),
             "n_new": int(cells.n_new[i]), "n_all": int(cells.n_all[i]),
             "n_alerts": int(cells.n_alerts[i])} for i in order]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(background_cells)
    stmt = stmt.on_conflict_do_update(
        index_elements=["survey", "night", "pixel"],
        set_={name: background_cells.c[name] + stmt.excluded[name] for name in _COUNTS})
    # One statement per row, in key order: a multi-row upsert on PostgreSQL would
    # lock its rows in an order of its own choosing.
    conn.execute(stmt, rows)


def load_cells(conn: Connection, survey: str, first_night: int, last_night: int) -> Cells:
    """The survey's counters for nights ``first_night..last_night`` (inclusive)."""
    c = background_cells.c
    rows = conn.execute(
        select(c.night, c.pixel, c.n_new, c.n_all, c.n_alerts)
        .where(c.survey == survey, c.night >= first_night, c.night <= last_night)).all()
    table = np.array(rows, dtype=np.int64).reshape(-1, 5)
    return Cells(*(table[:, k] for k in range(5)))


def background_surveys(conn: Connection) -> list[str]:
    """Surveys with any counts."""
    return sorted(conn.execute(select(background_cells.c.survey).distinct()).scalars())


def merge_cells(parts: Sequence[Cells]) -> Cells:
    """Sum counts of the same (night, pixel) over *parts* (e.g. a batch's alerts)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Cells(empty, empty, empty, empty, empty)
    night = np.concatenate([p.night for p in parts])
    pixel = np.concatenate([p.pixel for p in parts])
    keys, inverse = np.unique(np.stack([night, pixel]), axis=1, return_inverse=True)
    inverse = inverse.ravel()

    def total(name: str) -> np.ndarray:
        return np.bincount(inverse, weights=np.concatenate([getattr(p, name) for p in parts]),
                           minlength=keys.shape[1]).astype(np.int64)

    return Cells(keys[0], keys[1], total("n_new"), total("n_all"), total("n_alerts"))
