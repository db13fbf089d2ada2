"""Database layer on SQLite and on a real PostgreSQL: migrations, UTC, idempotent writes."""

from __future__ import annotations

import math
import secrets
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import (
    JSON,
    Column,
    Engine,
    MetaData,
    Table,
    create_engine,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from mma.db import alert_store, region_store, store
from mma.db.engine import json_loads, make_engine, refuses_values, upgrade
from mma.db.schema import alerts, dead_letters, events, metadata, notices, objects
from mma.errors import InvalidValue, MalformedMessage, TransientError
from mma.ingest.guard import database_errors
from mma.models import Alert, Notice

T0 = datetime(2024, 1, 14, 22, 59, 29, 889000, tzinfo=UTC)


def _notice(**kw: Any) -> Notice:
    base = Notice(event_id="S240114aj", messenger="gw", instrument="LVK",
                  notice_type="PRELIMINARY", event_time=T0,
                  issued_time=T0 + timedelta(seconds=30))
    return replace(base, **kw)


def _alert(alert_id: str = "1", obj: str = "ZTF24aaaaaaa", hours: float = 3.0) -> Alert:
    return Alert(alert_id=alert_id, object_id=obj, survey="ZTF", ra_deg=10.0, dec_deg=-5.0,
                 time=T0 + timedelta(hours=hours),
                 first_detection=T0 - timedelta(days=2), quality={"rb": 0.9})


def test_migration_matches_the_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_stamps_are_compressed_with_lz4_on_postgresql(postgres_url: str) -> None:
    """Migration 0010: pglz spent ~2 ms a Rubin stamp; LZ4 a tenth of that."""
    eng = make_engine(postgres_url)
    try:
        upgrade(eng)
        with eng.connect() as conn:
            method = conn.exec_driver_sql(
                "SELECT attcompression FROM pg_attribute WHERE attrelid = 'cutouts'::regclass "
                "AND attname = 'data'").scalar_one()
    finally:
        eng.dispose()
    assert method == "l"


def test_timestamps_come_back_utc_aware(engine: Engine) -> None:
    with engine.begin() as conn:
        stored = store.add_notice(conn, _notice(), b"raw-1", handler="lvk", origin="t")
        row = conn.execute(select(events).where(events.c.id == stored.event_pk)).one()
    assert row.event_time == T0
    assert row.event_time.utcoffset() == timedelta(0)


def test_notice_is_idempotent_and_keeps_raw_bytes(engine: Engine) -> None:
    with engine.begin() as conn:
        first = store.add_notice(conn, _notice(), b"same bytes", handler="lvk", origin="a")
        again = store.add_notice(conn, _notice(), b"same bytes", handler="lvk", origin="b")
        assert first.is_new and not again.is_new
        assert again.notice_pk == first.notice_pk
        assert conn.execute(select(func.count()).select_from(notices)).scalar_one() == 1
        raw = conn.execute(select(notices.c.raw)).scalar_one()
    assert bytes(raw) == b"same bytes"


def test_aliases_merge_and_revised_time_updates_the_event(engine: Engine) -> None:
    with engine.begin() as conn:
        a = store.add_notice(conn, _notice(), b"n1", handler="lvk", origin=None)
        revised = T0 + timedelta(seconds=2)
        b = store.add_notice(conn, _notice(event_id="GW240114", aliases=("S240114aj",),
                                           event_time=revised, notice_type="UPDATE",
                                           issued_time=T0 + timedelta(hours=1)),
                             b"n2", handler="lvk", origin=None)
        assert a.event_pk == b.event_pk  # one event, never forked
        event = store.load_event(conn, a.event_pk)
        assert event.event_time == revised
        assert event.aliases == ("GW240114", "S240114aj")
        # An older notice arriving late does not roll the time back.
        store.add_notice(conn, _notice(issued_time=T0 + timedelta(seconds=10),
                                       notice_type="PRELIMINARY"), b"n0", handler="lvk",
                         origin=None)
        assert store.load_event(conn, a.event_pk).event_time == revised


def test_alert_dedup_and_object_span(engine: Engine) -> None:
    with engine.begin() as conn:
        one = alert_store.add_alert(conn, _alert("1", hours=3), hpx29=123, vetoes=[])
        dup = alert_store.add_alert(conn, _alert("1", hours=3), hpx29=123, vetoes=[])
        two = alert_store.add_alert(conn, _alert("2", hours=30), hpx29=123, vetoes=["rb=0.1<0.5"])
        assert one is not None and two is not None and dup is None
        assert one[1] == T0 - timedelta(days=2)  # first detection from the packet
        obj = conn.execute(select(objects)).one()
        assert obj.n_alerts == 2
        assert obj.last_time == T0 + timedelta(hours=30)
        passes = dict(conn.execute(select(alerts.c.alert_id, alerts.c.passes_vetting)).all())
    assert passes == {"1": True, "2": False}


def test_dead_letter_keeps_bytes_and_reason(engine: Engine) -> None:
    raw = bytes(range(256)) * 10
    pk = store.add_dead_letter(engine, source="lvk", origin="igwn.gwalert:0:42",
                               error=MalformedMessage("bad JSON at byte 3"), raw=raw)
    with engine.connect() as conn:
        row = conn.execute(select(dead_letters).where(dead_letters.c.id == pk)).one()
    assert bytes(row.raw) == raw and row.size == len(raw)
    assert row.error_type == "MalformedMessage" and "byte 3" in row.error
    assert row.origin == "igwn.gwalert:0:42"


def test_naive_datetime_is_refused(engine: Engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), engine.begin() as conn:
        conn.execute(events.insert().values(
            event_id="X", messenger="gw", instrument="LVK",
            event_time=datetime(2024, 1, 1), status="active", test=False, properties={}))


@pytest.mark.daemon
def test_concurrent_upgrades_of_a_fresh_database(db_url: str) -> None:
    """Daemons starting together migrate one at a time (advisory lock on PostgreSQL).

    Separate processes, as daemons are: Alembic keeps process-global state.
    """
    mma = str(Path(sys.executable).with_name("mma"))
    procs = [subprocess.Popen([mma, "-l", "WARNING", "db", "upgrade", "--db", db_url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in results]


@pytest.mark.parametrize("distance", [False, True])
def test_region_tiles_round_trip_exactly(engine: Engine, distance: bool) -> None:
    """Tiles come back bit for bit: 63-bit level-29 indices, NaN and infinite distances."""
    rng = np.random.default_rng(3)
    n = 5000
    # Order-10 tiles, and the sky's last level-29 pixel (index 12 * 4**29 - 1, near 2**62).
    pix = np.sort(rng.choice((12 << 20) - 1, n - 1, replace=False)).astype(np.int64)
    lo = np.append(pix << 38, (12 << 58) - 1)
    hi = np.append((pix + 1) << 38, 12 << 58)
    weight = rng.random(n)
    density = weight / weight.sum() / ((hi - lo) * (4 * np.pi / (12 << 58)))  # sr^-1
    dist = None
    if distance:
        dist = [rng.normal(100, 30, n), rng.random(n) * 50, rng.random(n) * 1e-4]
        dist[0][:3] = [np.nan, np.inf, -np.inf]
    tiles = region_store.Tiles(lo, hi, density, *(dist or []))
    with engine.begin() as conn:
        stored = store.add_notice(conn, _notice(), b"raw", handler="lvk", origin=None)
        region_pk, *_ = region_store.add_region(
            conn, event_pk=stored.event_pk, notice_pk=stored.notice_pk, kind="skymap",
            tiles=tiles, window=(T0, T0 + timedelta(days=1)), area50_deg2=1.0,
            area90_deg2=2.0)
    with engine.connect() as conn:
        back = region_store.region_tiles_of(conn, region_pk)
    for name, want in tiles._asdict().items():
        if name == "credible_level":  # computed by add_region, not read back
            continue
        got = getattr(back, name)
        if want is None:
            assert got is None, name
        else:
            assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True), name


# ---------------------------------------------- finite numbers (tests/test_finite.py)
@pytest.mark.parametrize("bad", [math.nan, -math.inf, math.inf])
def test_the_json_serializer_refuses_non_finite_numbers(engine: Engine, bad: float) -> None:
    """Not stored as ``NaN``/``-Infinity`` text (SQLite) nor sent to be refused as a data
    error (PostgreSQL): refused before it is sent, naming the field (wrapped in
    StatementError on SQLite, raised through psycopg as it is), a bad message either way."""
    row = {"event_id": "S1", "messenger": "gw", "event_class": "gw.cbc", "instrument": "LVK",
           "event_time": T0, "status": "active", "test": False, "flags": []}
    wrapped = StatementError if engine.dialect.name == "sqlite" else InvalidValue
    with pytest.raises(wrapped, match="NaN or infinity in a JSON column value: far="), \
            engine.begin() as conn:
        conn.execute(insert(events).values(**row, properties={"far": bad}))
    with pytest.raises(InvalidValue, match="NaN or infinity in a JSON column value: far="), \
            database_errors("t:0:4"), engine.begin() as conn:
        conn.execute(insert(events).values(**row, properties={"far": bad}))
    with engine.begin() as conn:  # the same row, finite, is stored
        conn.execute(insert(events).values(**row, properties={"far": 1e-5}))
        assert conn.execute(select(events.c.properties)).scalars().all() == [{"far": 1e-5}]


def test_a_value_the_database_refuses_is_the_messages_fault(postgres_url: str) -> None:
    """PostgreSQL's own refusals of a value (invalid JSON, NUL in text, an index entry too
    large) are the message's: dead-lettered, not retried forever; a lost connection stays
    transient."""
    engine = create_engine(postgres_url)  # as before the fix: the default serializer
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE keys (k text)"))
            conn.execute(text("CREATE INDEX ix_keys_k ON keys (k)"))
        for statement, value in (("SELECT CAST(:v AS json)", "{\"x\": NaN}"),
                                 ("SELECT CAST(:v AS text)", "nul \x00 here"),
                                 # An index entry too large: an OperationalError (54000).
                                 ("INSERT INTO keys VALUES (:v)", secrets.token_hex(6000))):
            with pytest.raises(InvalidValue, match="the database refused a value"), \
                    database_errors("t:0:1"), engine.connect() as conn:
                conn.execute(text(statement), {"v": value})
    finally:
        engine.dispose()
    lost = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    with pytest.raises(TransientError, match="database error"), database_errors("t:0:2"):
        raise lost
    assert not refuses_values(lost)


def test_constraint_failures_a_retry_cannot_cure_are_data_errors(engine: Engine) -> None:
    """NOT NULL fails again on retry (the message's fault); a unique race may not."""
    with pytest.raises(InvalidValue, match="the database refused a value"), \
            database_errors("t:0:3"), engine.begin() as conn:
        conn.execute(insert(dead_letters).values(source="s", error_type=None, error="e",
                                                 size=0, raw=b""))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE uniq (k integer UNIQUE)"))
        conn.execute(text("INSERT INTO uniq VALUES (1)"))
    with pytest.raises(IntegrityError) as race, engine.begin() as conn:
        conn.execute(text("INSERT INTO uniq VALUES (1)"))
    assert not refuses_values(race.value)


def test_dead_letters_and_properties_are_stored_whatever_their_text_and_numbers(
        engine: Engine) -> None:
    """A reason quoting NUL (PostgreSQL text refuses it) is stored escaped; a message's
    own NaN and infinities (properties, quality) are stored as null."""
    pk = store.add_dead_letter(engine, source="s" * 100, origin="o\x00",
                               error=ValueError("bad \x00 value"), raw=b"\x00")
    with engine.connect() as conn:
        row = conn.execute(select(dead_letters).where(dead_letters.c.id == pk)).one()
    assert (row.error, row.origin, len(row.source), row.raw) == (
        "bad \\x00 value", "o\\x00", 64, b"\x00")
    assert store.plain_json({"far": math.nan, "nested": [{"x": -math.inf}, 1.5]}) == {
        "far": None, "nested": [{"x": None}, 1.5]}


def test_rows_stored_before_the_fix_read_as_finite(tmp_path: Path) -> None:
    """SQLite kept ``NaN`` and ``-Infinity`` text; they read as null and -1.8e308."""
    assert json_loads('{"a": NaN, "b": -Infinity, "c": Infinity, "d": 1.5}') == {
        "a": None, "b": -1.7976931348623157e308, "c": 1.7976931348623157e308, "d": 1.5}
    engine = make_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE old (payload JSON)"))
            conn.execute(text("INSERT INTO old VALUES ('{\"ln_B_D\": -Infinity}')"))
        old = Table("old", MetaData(), Column("payload", JSON))
        with engine.connect() as conn:
            assert conn.execute(select(old.c.payload)).scalar_one() == {
                "ln_B_D": -1.7976931348623157e308}
    finally:
        engine.dispose()
