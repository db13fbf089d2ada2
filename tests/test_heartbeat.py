"""Daemon heartbeats in the shared database and their display by ``mma status``."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, update

from mma.cli import main
from mma.db.schema import daemon_status
from mma.service.heartbeat import InstanceStatus, SourceStats, beat, read_status, retire
from tests.hostile.text import HOSTILE, HOSTILE_SHOWN, assert_clean

T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
NOTICES = "gcn.notices.icecube.lvk_nu_track_search"
ALERTS = "ztf_20261125_programid1"


def _read(engine: Engine, now: datetime, stale_after_s: float = 90.0) -> list[InstanceStatus]:
    with engine.connect() as conn:
        return read_status(conn, now=now, stale_after_s=stale_after_s)


def _rows(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return sorted((r.instance, r.source) for r in conn.execute(
            select(daemon_status.c.instance, daemon_status.c.source)))


def test_second_beat_updates_the_rows(engine: Engine) -> None:
    beat(engine, instance="a", started_at=T0, now=T0 + timedelta(seconds=30),
         sources={NOTICES: SourceStats(messages=3, lag=7)})
    seen = T0 + timedelta(seconds=50)
    beat(engine, instance="a", started_at=T0, now=T0 + timedelta(seconds=60),
         sources={NOTICES: SourceStats(messages=5, dead_letters=1, lag=0,
                                       last_message_at=seen)})
    assert _rows(engine) == [("a", ""), ("a", NOTICES)]
    [st] = _read(engine, now=T0 + timedelta(seconds=70))
    assert (st.instance, st.pid, st.host) == ("a", os.getpid(), socket.gethostname())
    assert st.started_at == T0 and st.updated_at == T0 + timedelta(seconds=60)
    assert st.age_s == pytest.approx(10.0) and not st.stale
    [src] = st.sources
    assert tuple(src) == (NOTICES, 5, 1, 0, seen)
    assert src.last_message_at is not None and src.last_message_at.tzinfo is not None


def test_instance_row_holds_the_totals(engine: Engine) -> None:
    late = T0 + timedelta(seconds=20)
    beat(engine, instance="a", started_at=T0, now=T0 + timedelta(seconds=30), sources={
        NOTICES: SourceStats(messages=2, dead_letters=1, lag=4, last_message_at=T0),
        ALERTS: SourceStats(messages=10, lag=6, last_message_at=late)})
    with engine.connect() as conn:
        total = conn.execute(select(daemon_status).where(
            daemon_status.c.source == "")).mappings().one()
    assert (total["messages"], total["dead_letters"], total["lag"]) == (12, 1, 10)
    assert total["last_message_at"] == late
    # One unknown lag makes the total unknown, not an undercount.
    beat(engine, instance="a", started_at=T0, now=T0 + timedelta(seconds=60), sources={
        NOTICES: SourceStats(lag=4), ALERTS: SourceStats(lag=None)})
    with engine.connect() as conn:
        assert conn.execute(select(daemon_status.c.lag).where(
            daemon_status.c.source == "")).scalar_one() is None


def test_dropped_sources_are_deleted(engine: Engine) -> None:
    beat(engine, instance="a", started_at=T0, now=T0,
         sources={NOTICES: SourceStats(), ALERTS: SourceStats()})
    assert _rows(engine) == [("a", ""), ("a", NOTICES), ("a", ALERTS)]
    beat(engine, instance="a", started_at=T0, now=T0 + timedelta(seconds=30),
         sources={ALERTS: SourceStats(messages=1)})
    assert _rows(engine) == [("a", ""), ("a", ALERTS)]
    beat(engine, instance="a", started_at=T0, now=T0 + timedelta(seconds=60), sources={})
    assert _rows(engine) == [("a", "")]


def test_two_instances_coexist_and_retire_removes_only_one(engine: Engine) -> None:
    beat(engine, instance="b", started_at=T0, now=T0,
         sources={ALERTS: SourceStats(messages=1, lag=2)})
    beat(engine, instance="a", started_at=T0, now=T0,
         sources={NOTICES: SourceStats(messages=3), ALERTS: SourceStats(messages=4, lag=5)})
    # Instance a's beat with a source b also consumes leaves b's rows alone.
    beat(engine, instance="a", started_at=T0, now=T0 + timedelta(seconds=1),
         sources={NOTICES: SourceStats(messages=3)})
    statuses = _read(engine, now=T0 + timedelta(seconds=2))
    assert [s.instance for s in statuses] == ["a", "b"]
    assert [(s.source, s.messages, s.lag) for s in statuses[1].sources] == [(ALERTS, 1, 2)]
    assert [s.source for s in statuses[0].sources] == [NOTICES]
    retire(engine, instance="a")
    assert _rows(engine) == [("b", ""), ("b", ALERTS)]
    retire(engine, instance="b")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(daemon_status)).scalar_one() == 0


def test_stale_after_the_threshold(engine: Engine) -> None:
    beat(engine, instance="a", started_at=T0, now=T0, sources={})
    beat(engine, instance="b", started_at=T0, now=T0 + timedelta(seconds=60), sources={})
    now = T0 + timedelta(seconds=100)
    stale = {s.instance: (s.age_s, s.stale) for s in _read(engine, now, stale_after_s=90)}
    assert stale == {"a": (100.0, True), "b": (40.0, False)}
    assert not any(s.stale for s in _read(engine, now, stale_after_s=120))


def test_reserved_source_name_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="reserved"):
        beat(engine, instance="a", started_at=T0, sources={"": SourceStats()})
    assert _rows(engine) == []


def test_status_shows_daemons_lag_and_stale(engine: Engine, db_url: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    beat(engine, instance="fresh", started_at=now - timedelta(hours=1), now=now, sources={
        NOTICES: SourceStats(messages=12, dead_letters=2, lag=345, last_message_at=now),
        ALERTS: SourceStats(messages=7)})
    beat(engine, instance="gone", started_at=now - timedelta(hours=2),
         now=now - timedelta(minutes=10), sources={ALERTS: SourceStats(lag=0)})
    assert main(["status", "--db", db_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "active events: 0" in lines and "dead letters: 0" in lines
    assert "daemons: 2" in lines
    fresh = next(line for line in lines if line.strip().startswith("fresh "))
    gone = next(line for line in lines if line.strip().startswith("gone "))
    assert f"{socket.gethostname()}/pid {os.getpid()}" in fresh
    assert "STALE" not in fresh and gone.endswith("STALE")
    notices = next(line for line in lines if line.strip().startswith(NOTICES))
    assert "messages 12" in notices and "dead letters 2" in notices and "lag 345" in notices
    alerts = [line for line in lines if line.strip().startswith(ALERTS)]
    assert "lag ?" in alerts[0] and "last message never" in alerts[0]  # fresh's, unknown
    assert "lag 0" in alerts[1]  # gone's
    assert lines.index(fresh) < lines.index(notices) < lines.index(gone)


def test_status_json(engine: Engine, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    beat(engine, instance="a", started_at=now, now=now - timedelta(minutes=5),
         sources={NOTICES: SourceStats(messages=4, lag=9, last_message_at=now)})
    assert main(["status", "--json", "--db", db_url]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["active_events"] == [] and doc["notices"] == [] and doc["alerts"] == []
    assert doc["outbox"] == [] and doc["dead_letters"] == {}
    [daemon] = doc["daemons"]
    assert daemon["instance"] == "a" and daemon["stale"] is True
    assert daemon["age_s"] >= 300
    assert daemon["sources"] == [{"source": NOTICES, "messages": 4, "dead_letters": 0,
                                  "lag": 9, "last_message_at": now.isoformat()}]


def test_status_shows_names_escaped(engine: Engine, db_url: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Any instance may write the shared table: its names are untrusted.
    now = datetime.now(UTC)
    instance, source = f"a{HOSTILE}", f"topic{HOSTILE}"
    beat(engine, instance=instance, started_at=now, now=now,
         sources={source: SourceStats(messages=3)})
    with engine.begin() as conn:
        conn.execute(update(daemon_status).values(host=f"h\u202e\u2066{HOSTILE[:20]}"))
    assert main(["status", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert_clean(out)
    lines = out.splitlines()
    [inst] = [line for line in lines if line.startswith("  a\\n")]
    assert inst.startswith(f"  a{HOSTILE_SHOWN}  h\\u202e\\u2066\\n2026-12-05T00:00:00/pid ")
    [src] = [line for line in lines if line.startswith("    topic")]
    assert src.startswith(f"    topic{HOSTILE_SHOWN}  messages 3  dead letters 0  lag ?")
    assert main(["status", "--json", "--db", db_url]) == 0
    json_out = capsys.readouterr().out
    assert_clean(json_out)
    assert json_out.isascii()
    assert json.loads(json_out)["daemons"][0]["instance"] == instance
