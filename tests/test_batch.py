"""Alerts in batches (one transaction per Kafka batch) give what one at a time gives.

The reference is always the one-at-a-time path on a fresh SQLite database; the
batch path runs on SQLite and on a real PostgreSQL server.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from mma.config import Config
from mma.db import alert_store
from mma.db.engine import make_engine, upgrade
from mma.db.schema import alerts, dead_letters, objects
from mma.errors import TransientError
from mma.ingest import Parsed, Pipeline
from mma.models import Alert
from tests.helpers import HANDLER
from tests.test_correlator import T0, alert, feed, notice, rows


def reference_engine(tmp_path: Path) -> Engine:
    eng = make_engine(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    upgrade(eng)
    return eng


def sample() -> list[Alert]:
    """Objects with several alerts (out of time order), a repeat, a first detection."""
    a = [alert("1", 0, 5.0), alert("2", 0, 2.0), alert("3", 4, 7.0), alert("4", 0, 9.0)]
    a[1] = Alert(**{**a[1].__dict__, "object_id": a[0].object_id,
                    "first_detection": T0 - timedelta(days=3)})
    a[3] = Alert(**{**a[3].__dict__, "object_id": a[0].object_id})
    return [*a, a[2]]  # the last one repeats alert 3 within the batch


def table_state(engine: Engine) -> tuple[list[Any], list[Any]]:
    with engine.connect() as conn:
        objs = sorted(tuple(r) for r in conn.execute(select(
            objects.c.survey, objects.c.object_id, objects.c.first_time, objects.c.last_time,
            objects.c.n_alerts, objects.c.ra_deg, objects.c.dec_deg)))
        als = sorted((r.alert_id, r.survey, r.hpx29, r.time, r.first_detection, r.vetoes,
                      r.passes_vetting, dict(r.quality)) for r in conn.execute(select(alerts)))
    return objs, als


def test_add_alerts_equals_one_at_a_time(engine: Engine, tmp_path: Path) -> None:
    ref = reference_engine(tmp_path)
    earlier = alert("0", 0, 1.0)
    earlier = Alert(**{**earlier.__dict__, "object_id": sample()[0].object_id})
    batch = [earlier, *sample()]  # "0" is stored before, and sent again in the batch
    hpx, vetoes = [10 * i for i in range(len(batch))], [["x"] if i == 2 else []
                                                       for i in range(len(batch))]
    with ref.begin() as conn:
        alert_store.add_alert(conn, earlier, hpx29=0, vetoes=[])
        expected = [alert_store.add_alert(conn, a, hpx29=h, vetoes=v)
                    for a, h, v in zip(batch, hpx, vetoes, strict=True)]
    with engine.begin() as conn:
        alert_store.add_alert(conn, earlier, hpx29=0, vetoes=[])
        got = alert_store.add_alerts(conn, batch, hpx29=hpx, vetoes=vetoes)
    assert [g is None for g in got] == [e is None for e in expected] == [
        True, False, False, False, False, True]
    assert [g and g[1] for g in got] == [e and e[1] for e in expected]
    assert table_state(engine) == table_state(ref)
    with engine.connect() as conn:  # the returned keys are the stored rows' keys
        ids = dict(conn.execute(select(alerts.c.alert_id, alerts.c.id)).all())
    assert [g[0] for g in got if g] == [ids[a.alert_id] for a in batch[1:5]]


def test_batch_gives_the_coincidences_of_one_at_a_time(engine: Engine, config: Config,
                                                       tmp_path: Path) -> None:
    ref = Pipeline(reference_engine(tmp_path), config)
    batched = Pipeline(engine, config)
    region = notice("Initial", 0.5, {0: 0.45, 4: 0.3, 8: 0.13, 1: 0.12})
    feed(ref, region)
    feed(batched, region)
    stream = [*sample(), alert("5", 8, 3.0, rb=0.1), alert("6", 11, 4.0)]
    for item in stream:
        feed(ref, item)
    outcomes = batched.process_alerts(
        [Parsed(HANDLER, repr(a).encode(), f"t:0:{i}", item=a) for i, a in enumerate(stream)])
    assert [o.kind for o in outcomes] == ["alert"] * 4 + ["duplicate", "alert", "alert"]
    # An alert publishes its object's candidate; the vetoed "5" is stored, not published.
    assert [bool(o.touched) for o in outcomes] == [True] * 4 + [False, False, False]
    assert table_state(engine) == table_state(ref.engine)
    # Provisional P_chance uses the cached background, re-measured after so many new
    # alerts: a batch notes its alerts before matching, so only that may differ ...
    assert without_background(rows(engine)) == without_background(rows(ref.engine))
    # ... and a re-score (periodic in the daemon, final in a replay) makes them equal
    # (but for "active" against "updated", which tells whether the re-score changed it).
    end = T0 + timedelta(days=1)
    ref.rescore(end)
    batched.rescore(end)
    assert live(rows(engine)) == live(rows(ref.engine))


def live(found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {key: {**without_background(found)[key], "live": row["status"] != "retracted"}
            for key, row in found.items()}


def without_background(found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The content of each record; one at a time, an object with three alerts is
    published three times (revision, status and changes differ), in a batch once.
    P_chance, ln B (its sky term) and the association probability rest on the
    survey background, which one at a time re-measures at other moments."""
    skip = ("p_chance", "components", "revision", "status", "changes", "log_bayes_factor",
            "p_association")
    return {key: {k: v for k, v in row.items() if k not in skip}
            for key, row in found.items()}


def test_one_bad_alert_is_dead_lettered_and_the_rest_stored(
        engine: Engine, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = Pipeline(engine, config)
    feed(pipeline, notice("Initial", 0.5, {0: 0.8, 1: 0.2}))
    score = pipeline.correlator.scorer.score

    def broken(conn: Any, active: Any, survey: Any, summary: Any, *args: Any) -> Any:
        if summary.detections[0].alert_id == "2":
            raise ZeroDivisionError("a bug this alert triggers")
        return score(conn, active, survey, summary, *args)

    monkeypatch.setattr(pipeline.correlator.scorer, "score", broken)
    stream = [alert(str(i), 0, 1.0 + i) for i in range(4)]
    outcomes = pipeline.process_alerts(
        [Parsed(HANDLER, f"raw{i}".encode(), f"t:0:{i}", item=a) for i, a in enumerate(stream)])
    assert [o.kind for o in outcomes] == ["alert", "alert", "dead_letter", "alert"]
    with engine.connect() as conn:
        assert conn.execute(select(dead_letters.c.origin, dead_letters.c.raw)).all() == [
            ("t:0:2", b"raw2")]
        assert sorted(conn.execute(select(alerts.c.alert_id)).scalars()) == ["0", "1", "3"]
    assert set(rows(engine)) == {"0", "1", "3"}


def test_database_failure_commits_nothing_and_can_be_retried(
        engine: Engine, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = Pipeline(engine, config)
    feed(pipeline, notice("Initial", 0.5, {0: 0.8, 1: 0.2}))
    batch = [Parsed(HANDLER, b"r", f"t:0:{i}", item=alert(str(i), 0, 2.0)) for i in range(3)]
    add_alerts = alert_store.add_alerts

    def fail_after_insert(conn: Any, *args: Any, **kwargs: Any) -> Any:
        add_alerts(conn, *args, **kwargs)
        raise OperationalError("INSERT", {}, Exception("connection lost"))

    monkeypatch.setattr(alert_store, "add_alerts", fail_after_insert)
    with pytest.raises(TransientError) as failed:
        pipeline.process_alerts(batch)
    # One journald line naming the batch and the driver's error, no SQL text.
    assert str(failed.value) == "t:0:0 (+2): database error: Exception: connection lost"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(alerts)).scalar_one() == 0
    monkeypatch.setattr(alert_store, "add_alerts", add_alerts)
    assert [o.kind for o in pipeline.process_alerts(batch)] == ["alert"] * 3
    assert len(rows(engine)) == 3


def test_parse_never_raises_and_settle_dead_letters(engine: Engine, config: Config) -> None:
    class Broken:
        NAME = "broken"
        KIND = "alert"

        def parse(self, raw: bytes, *, topic: str) -> Any:
            raise KeyError("handler bug")

    pipeline = Pipeline(engine, config)
    parsed = pipeline.parse(Broken(), b"xyz", origin="t:1:5")
    assert parsed.item is None and isinstance(parsed.error, KeyError)
    assert pipeline.settle(parsed).kind == "dead_letter"
    with engine.connect() as conn:
        assert conn.execute(select(dead_letters.c.source, dead_letters.c.origin,
                                   dead_letters.c.raw)).all() == [("broken", "t:1:5", b"xyz")]


def test_quality_is_stored_as_plain_json(engine: Engine) -> None:
    """NaN and infinities become null, numpy scalars plain numbers, on every database;
    a survey's alert keeps only the fields that say something, a broker's all."""
    base = alert("q", 0, 1.0)
    quality = {"reliability": float("nan"), "snr": float("inf"), "neg": -float("inf"),
               "f32": np.float32(0.5), "i64": np.int64(7), "flag": np.bool_(True),
               "band": "g", "none": None, "raised": np.bool_(False), "zero": 0}
    brokered = Alert(**{**base.__dict__, "alert_id": "b", "broker": "Fink", "quality": quality})
    with engine.begin() as conn:
        alert_store.add_alerts(conn, [Alert(**{**base.__dict__, "quality": quality}), brokered],
                               hpx29=[1, 1], vetoes=[[], []])
    with engine.connect() as conn:
        stored = dict(conn.execute(select(alerts.c.alert_id, alerts.c.quality)).all())
    assert stored["q"] == {"f32": 0.5, "i64": 7, "flag": True, "band": "g", "zero": 0}
    assert type(stored["q"]["i64"]) is int and type(stored["q"]["flag"]) is bool
    assert stored["b"] == {"reliability": None, "snr": None, "neg": None, "f32": 0.5, "i64": 7,
                           "flag": True, "band": "g", "none": None, "raised": False, "zero": 0}


# PostgreSQL only: SQLite lets one writer at a time in.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_daemons_storing_one_new_object_at_once_both_commit(engine: Engine) -> None:
    """Two transactions create the same object concurrently (detections of one object
    on two partitions, two daemons): the second waits, then adds to the first's row
    instead of failing on the unique key; the object counts both alerts."""
    first = alert("a1", 0, 5.0)
    second = Alert(**{**alert("a2", 0, 2.0).__dict__, "object_id": first.object_id})
    result: dict[str, Any] = {}
    with engine.connect() as conn, conn.begin():
        alert_store.add_alerts(conn, [first], hpx29=[1], vetoes=[[]])

        def other() -> None:
            try:
                with engine.begin() as conn2:
                    result["stored"] = alert_store.add_alerts(conn2, [second], hpx29=[2],
                                                              vetoes=[[]])
            except Exception as exc:  # the failure this test exists to catch
                result["error"] = exc

        waiter = threading.Thread(target=other)
        waiter.start()
        waiter.join(2.0)
        assert waiter.is_alive(), "the second writer did not wait for the first"
    waiter.join(30.0)
    assert "error" not in result, result.get("error")
    stored = result["stored"][0]
    # The first writer's later detection is known to the second (committed first).
    assert stored.object_first == second.time and stored.object_last == first.time
    with engine.connect() as conn:
        objs = conn.execute(select(objects.c.first_time, objects.c.last_time,
                                   objects.c.n_alerts)).all()
    assert objs == [(second.time, first.time, 2)]
