"""Two daemons re-scoring the same coincidences at once, on a real PostgreSQL server.

Each re-score reads a coincidence, compares the new numbers with it and writes the
next revision. Without a row lock both daemons read revision r, and both write
r + 1 with the same payload: two outbox rows, the same message published twice.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from mma.config import load_config
from mma.db import locks
from mma.db.schema import coincidences, outbox
from mma.ingest import Pipeline
from tests.test_correlator import T0, alert, feed, notice


def revisions(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(coincidences.c.coincidence_id,
                                        coincidences.c.revision)).all())


# PostgreSQL only: SQLite lets one writer at a time in, so the race cannot happen there.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_concurrent_rescores_write_each_revision_once(engine: Engine, tmp_path: Path) -> None:
    pg = engine
    # The survey's own background from its first night and a negligible prior elsewhere:
    # the objects expected over the sky are the measured ones, which new alerts move.
    config = load_config(environ={"MMA_PATHS__STATE_DIR": str(tmp_path / "state"),
                                  "MMA_BACKGROUND__MIN_NIGHTS": "1",
                                  "MMA_BACKGROUND__MIN_FIELD_NIGHTS": "1",
                                  "MMA_BACKGROUND__PRIOR_NEW_PER_SR_DAY": "1e-6",
                                  "MMA_BACKGROUND__PRIOR_ALL_PER_SR_DAY": "1e-6",
                                  "MMA_SCORING__BACKGROUND_RATE_FLOOR_PER_SR_PER_DAY": "1e-6"},
                         system_file=tmp_path / "absent.toml")
    first, second = Pipeline(pg, config), Pipeline(pg, config)
    feed(first, notice("PRELIMINARY", 0.01, {0: 0.7, 1: 0.3}))
    for i in range(4):
        feed(first, alert(f"m{i}", pixel=0, hours=1 + i))
    # The background measured at scoring time had few objects; many more arrive since,
    # so a re-score changes every ln B (its sky term).
    for i in range(300):
        feed(first, alert(f"bg{i}", pixel=4 + i % 8, hours=5))
    before = revisions(pg)
    assert len(before) == 4
    now = T0 + timedelta(hours=6)
    result: dict[str, set[str]] = {}
    with pg.connect() as conn:
        with conn.begin():
            # What Pipeline.rescore does, inside a transaction this test holds open.
            ledger = first.correlator.ledger()
            locks.share_regions(conn)
            first.correlator.remeasure(conn, now)
            for event_pk in sorted(first.correlator.active):
                locks.lock_events(conn, [event_pk])  # held until commit
                first.correlator.rescore(conn, ledger, event_pk, now)
            first.stage.finish(conn, ledger, set(first.correlator.active))
            assert ledger.published == set(before)
            waiter = threading.Thread(target=lambda: result.update(second=second.rescore(now)))
            waiter.start()
            waiter.join(2.0)
            assert waiter.is_alive(), "the second re-score did not wait for the first"
        waiter.join(30.0)
    assert result["second"] == set()  # it found the first one's revision: nothing to change
    assert revisions(pg) == {cid: r + 1 for cid, r in before.items()}
    with pg.connect() as conn:
        queued = conn.execute(select(outbox.c.coincidence_id, outbox.c.revision)).all()
    assert len(queued) == len(set(queued))
