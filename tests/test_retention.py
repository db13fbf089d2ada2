"""Retention (mma.db.retention, ``mma db prune``, the daemon's job) on the bundled sample,
ingested for real into SQLite and PostgreSQL.

The sample's alerts are of 2026-11-19..22; its GW event S261120ab keeps an active region
(window 2026-11-19T03:12:45 .. 2026-12-04) until expiry runs; 39 of its objects are
candidates. ``LATER`` puts every alert beyond the default horizon (365 + 7 days).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, func, select, text

from mma.channels import enabled_channels
from mma.cli import main
from mma.config import Config, load_config
from mma.db import retention
from mma.db.engine import make_engine
from mma.db.locks import PRUNE_KEY
from mma.db.retention import PruneResult, RetentionPolicy, prune
from mma.db.schema import alerts, coincidences, cutouts, metadata, objects, outbox, regions
from mma.db.store import add_dead_letter
from mma.emitters import Delivery
from mma.errors import ConfigError, DeliveryError, MissingField
from mma.ingest import Pipeline
from mma.outbox import drain, enqueue
from mma.service.jobs import Jobs
from mma.service.runtime import Runtime
from mma.service.sources import SourceBook
from tests.test_cli_look import ingest_sample

LATER = datetime(2028, 1, 1, tzinfo=UTC)
TABLES = {name: metadata.tables[name] for name in PruneResult.TABLES}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def template(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The sample ingested once per database: (configuration file, URL of the template)."""
    directory = tmp_path_factory.mktemp(f"retention-{request.param}")
    if request.param == "sqlite":
        yield ingest_sample(directory)
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    conf, _ = ingest_sample(directory, url)
    name = url.rsplit("/", 1)[1]
    with _admin(server) as conn:  # the ingest's pooled connections would block copies
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
    yield conf, url
    server.drop_database(name)


def _admin(server: Any) -> psycopg.Connection[Any]:
    dsn = server.admin_url.set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(dsn, autocommit=True)


@pytest.fixture
def db(template: tuple[str, str], tmp_path: Path,
       request: pytest.FixtureRequest) -> Iterator[tuple[Config, Engine]]:
    """A fresh copy of the ingested sample for one test: (its configuration, engine)."""
    conf, url = template
    if url.startswith("sqlite"):
        copy = tmp_path / "copy.sqlite"
        shutil.copy(url.removeprefix("sqlite:///"), copy)
        engine = make_engine(f"sqlite:///{copy}")
        yield load_config(conf, environ={}), engine
        engine.dispose()
        return
    server = request.getfixturevalue("postgres_server")
    name = f"mma_{uuid.uuid4().hex[:12]}"
    with _admin(server) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{url.rsplit("/", 1)[1]}"')
    engine = make_engine(server.database_url(name))
    yield load_config(conf, environ={}), engine
    engine.dispose()
    server.drop_database(name)


def sizes(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for name, t in TABLES.items()}


def candidate_objects(engine: Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(select(coincidences.c.object_pk).where(
            coincidences.c.object_pk.is_not(None))).scalars())


def alert_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(alerts.c.id, alerts.c.object_pk, alerts.c.time)))


def test_stamps_go_after_cutout_days_candidates_included(db: tuple[Config, Engine]) -> None:
    """The only raw packet bytes stored are kept ``cutout_days`` by their alert's time."""
    config, engine = db
    with engine.connect() as conn:
        stamped = sorted(conn.execute(select(cutouts.c.alert_pk, alerts.c.time)
                                      .join(alerts, alerts.c.id == cutouts.c.alert_pk)
                                      .distinct()).all(), key=lambda r: r.time)
    assert len(stamped) >= 2 and stamped[0].time < stamped[-1].time
    assert {r.alert_pk for r in stamped} <= {a.id for a in alert_rows(engine)
                                             if a.object_pk in candidate_objects(engine)}
    # A horizon between the oldest and the newest stamped alert, all windows still open.
    cut = stamped[len(stamped) // 2].time
    now = cut + timedelta(days=1)
    policy = dataclasses.replace(RetentionPolicy.from_config(config), cutout_days=1.0)
    before = sorted(alert_rows(engine))
    with engine.connect() as conn:
        n_old = conn.execute(select(func.count()).select_from(cutouts).join(
            alerts, alerts.c.id == cutouts.c.alert_pk).where(alerts.c.time < cut)).scalar_one()
    result = prune(engine, policy, now)
    with engine.connect() as conn:
        left = set(conn.execute(select(cutouts.c.alert_pk)).scalars())
    assert left == {r.alert_pk for r in stamped if r.time >= cut}
    assert result.cutouts == n_old > 0
    assert sorted(alert_rows(engine)) == before  # the alerts themselves stay


def expire(db: tuple[Config, Engine], now: datetime) -> None:
    """Close the regions whose windows ended by *now* (the daemon's expiry job)."""
    config, engine = db
    Pipeline(engine, config).expire(now)


def test_old_alerts_go_candidates_objects_keep_theirs(db: tuple[Config, Engine]) -> None:
    config, engine = db
    expire(db, LATER)
    candidates = candidate_objects(engine)
    before = alert_rows(engine)
    kept = {a.id for a in before if a.object_pk in candidates}
    assert 0 < len(kept) < len(before)
    with engine.connect() as conn:
        stamps = set(conn.execute(select(cutouts.c.alert_pk, cutouts.c.kind)).all())
        n_objects = conn.execute(select(func.count()).select_from(objects)).scalar_one()
    # Small chunks: the same result in many short transactions; stamps kept for longer
    # than the alerts' age (their own horizon has a test below).
    policy = dataclasses.replace(RetentionPolicy.from_config(config), chunk=100,
                                 cutout_days=10_000.0)
    result = prune(engine, policy, LATER)
    assert result.horizons.windows == LATER - timedelta(days=365 + 7)
    assert result.horizons.active_start is None and result.complete
    assert {a.id for a in alert_rows(engine)} == kept
    assert result.alerts == len(before) - len(kept)
    with engine.connect() as conn:
        left = set(conn.execute(select(objects.c.id)).scalars())
        assert set(conn.execute(select(cutouts.c.alert_pk, cutouts.c.kind)).all()) == {
            s for s in stamps if s[0] in kept}
    assert left == candidates  # every other object lost its last alert
    assert result.objects == n_objects - len(candidates)


def test_alerts_in_an_active_regions_window_stay(db: tuple[Config, Engine]) -> None:
    config, engine = db
    with engine.connect() as conn:
        start = conn.execute(select(regions.c.window_start).where(
            regions.c.status == "active")).scalar_one()
    candidates = candidate_objects(engine)
    before = [a for a in alert_rows(engine) if a.object_pk not in candidates]
    early = {a.id for a in before if a.time < start}
    assert early and len(early) < len(before)  # the sample has alerts on both sides
    result = prune(engine, RetentionPolicy.from_config(config), LATER)
    assert result.horizons.active_start == start == result.horizons.alerts
    assert result.horizons.windows > start  # the region, not the windows, holds them
    left = {a.id for a in alert_rows(engine)}
    assert left.isdisjoint(early) and {a.id for a in before} - early <= left
    assert result.alerts == len(early)


def test_dry_run_counts_what_the_prune_then_deletes(db: tuple[Config, Engine]) -> None:
    config, engine = db
    expire(db, LATER)
    add_dead_letter(engine, source="ztf", origin="ztf_20261120:0:42",
                    error=MissingField("candidate.jd"), raw=b"\x00not avro")
    policy = RetentionPolicy.from_config(config)
    start = sizes(engine)
    dry = prune(engine, policy, LATER, dry_run=True)
    assert dry.dry_run and sizes(engine) == start
    for name in ("alerts", "objects", "outbox", "dead_letters", "background_cells"):
        assert dry.counts()[name] > 0, name
    real = prune(engine, policy, LATER)
    assert not real.dry_run and real.counts() == dry.counts()
    end = sizes(engine)
    assert {k: start[k] - end[k] for k in TABLES} == real.counts()
    assert prune(engine, policy, LATER, dry_run=True).counts() == dict.fromkeys(TABLES, 0)


class Recorder:
    """A channel that takes every delivery, or refuses every one for good."""

    def __init__(self, name: str, refuse: bool = False) -> None:
        self.name, self.refuse, self.sent = name, refuse, list[Delivery]()

    def send(self, delivery: Delivery) -> None:
        if self.refuse:
            raise DeliveryError("550 mailbox unavailable", permanent=True)
        self.sent.append(delivery)

    def close(self) -> None:
        pass


def outbox_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox.c.id, outbox.c.coincidence_id,
                                        outbox.c.channel, outbox.c.status)))


def test_outbox_sent_rows_go_pending_and_parked_stay(db: tuple[Config, Engine]) -> None:
    config, engine = db
    channels = enabled_channels(config)
    sent_at = datetime.now(UTC)
    emitters = {name: Recorder(name) for name in ("kafka", "slack")}
    assert drain(engine, emitters, config, sent_at)["sent"] > 0
    announced = sorted({r.coincidence_id for r in outbox_rows(engine) if r.status == "sent"})
    with engine.begin() as conn:  # the same revisions queued and sent again
        enqueue(conn, channels, announced, sent_at)
    drain(engine, emitters, config, sent_at + timedelta(minutes=1))
    with engine.begin() as conn:  # queued a third time: Slack refuses (parked), Kafka waits
        enqueue(conn, channels, announced, sent_at)
    drain(engine, {"slack": Recorder("slack", refuse=True)}, config, sent_at)
    rows = outbox_rows(engine)
    status = Counter(r.status for r in rows)
    assert status["parked"] == status["pending"] > 0  # Slack's and Kafka's
    assert status["sent"] == 2 * (status["parked"] + status["pending"])  # two rounds each
    policy = RetentionPolicy.from_config(config)
    assert prune(engine, policy, sent_at + timedelta(days=29)).outbox == 0  # too young
    result = prune(engine, policy, sent_at + timedelta(days=31))
    assert result.outbox == status["superseded"] + status["sent"] // 2
    newest: dict[tuple[str, str], int] = {}
    for r in rows:
        if r.status == "sent":
            newest[r.coincidence_id, r.channel] = max(r.id, newest.get(
                (r.coincidence_id, r.channel), 0))
    left = outbox_rows(engine)
    assert {r.id for r in left if r.status == "sent"} == set(newest.values())
    assert {r.id for r in left if r.status != "sent"} == {
        r.id for r in rows if r.status in ("pending", "parked")}


def test_dead_letters_go_by_age(engine: Engine, config: Config) -> None:
    received = datetime.now(UTC)
    for i in range(3):
        add_dead_letter(engine, source="lvk", origin=f"igwn.gwalert:0:{i}",
                        error=MissingField("superevent_id"), raw=b'{"alert_type": "PRELIM')
    policy = RetentionPolicy.from_config(config)
    assert policy.dead_letter_days == 90.0
    assert prune(engine, policy, received + timedelta(days=89)).dead_letters == 0
    result = prune(engine, policy, received + timedelta(days=91))
    assert result.dead_letters == 3 and sizes(engine)["dead_letters"] == 0


def test_a_stopped_prune_deletes_nothing_more(db: tuple[Config, Engine]) -> None:
    config, engine = db
    start = sizes(engine)
    result = prune(engine, RetentionPolicy.from_config(config), LATER, stop=lambda: True)
    assert not result.complete and result.counts() == dict.fromkeys(TABLES, 0)
    assert sizes(engine) == start


def test_a_chunk_that_breaks_a_reference_is_rolled_back(db: tuple[Config, Engine],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer making a chunk's row referenced meanwhile (simulated: the candidate check
    gone, so a candidate's alert named by coincidences.alert_pk is in a chunk): that
    chunk is undone whole, the prune says so, and the other tables are still pruned."""
    config, engine = db
    expire(db, LATER)
    with engine.connect() as conn:
        named = set(conn.execute(select(coincidences.c.alert_pk).where(
            coincidences.c.alert_pk.is_not(None))).scalars())
    before = {a.id for a in alert_rows(engine)}
    monkeypatch.setattr(retention, "_unclaimed", lambda: alerts.c.id.is_not(None))
    policy = dataclasses.replace(RetentionPolicy.from_config(config), chunk=100_000)
    result = prune(engine, policy, LATER)
    assert not result.complete and result.alerts == 0 and result.objects == 0
    assert {a.id for a in alert_rows(engine)} == before and named <= before
    assert result.outbox > 0 and result.background_cells > 0


# PostgreSQL only: SQLite has one writer at a time, and no advisory locks.
@pytest.mark.parametrize("template", ["postgresql"], indirect=True)
def test_one_prune_at_a_time_on_postgresql(db: tuple[Config, Engine]) -> None:
    config, engine = db
    assert engine.dialect.name == "postgresql"
    expire(db, LATER)
    policy = RetentionPolicy.from_config(config)
    start = sizes(engine)
    with engine.connect() as other:  # another daemon pruning
        other.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PRUNE_KEY})
        other.commit()
        skipped = prune(engine, policy, LATER)
        assert skipped.skipped and skipped.counts() == dict.fromkeys(TABLES, 0)
        assert sizes(engine) == start
        other.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PRUNE_KEY})
        other.commit()
    result = prune(engine, policy, LATER)
    assert not result.skipped and result.alerts > 0
    with engine.connect() as conn:  # the prune let its own lock go
        assert conn.execute(text("SELECT pg_try_advisory_lock(:key)"),
                            {"key": PRUNE_KEY}).scalar_one()


def test_the_horizon_follows_the_windows_in_force(tmp_path: Path) -> None:
    base = {"MMA_PATHS__STATE_DIR": str(tmp_path)}
    default = RetentionPolicy.from_config(load_config(environ=base, system_file=tmp_path / "x"))
    assert (default.lookback_days, default.margin_days) == (365.0, 7.0)  # neutrino windows
    assert default.background_days == 395.0
    longer = RetentionPolicy.from_config(load_config(environ={
        **base, "MMA_WINDOWS__NEUTRINO_CASCADE": "[-500.0, 30.0]",
        "MMA_RETENTION__MARGIN_DAYS": "0"}, system_file=tmp_path / "x"))
    assert (longer.lookback_days, longer.margin_days) == (500.0, 0.0)


@pytest.mark.parametrize(("key", "value"), [("MARGIN_DAYS", "-1"), ("OUTBOX_DAYS", "0"),
                                            ("CUTOUT_DAYS", "-3"), ("INTERVAL_SECONDS", "0"),
                                            ("DEAD_LETTER_DAYS", '"long"')])
def test_bad_retention_settings_are_refused(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"retention.{key.lower()}"):
        load_config(environ={f"MMA_RETENTION__{key}": value}, system_file=tmp_path / "x")


def test_cli_prune_dry_run_then_prune(db: tuple[Config, Engine], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    config, engine = db
    # Windows that reach no day before t0, no margin: the alert horizon is the start of
    # the active region's window, and the sample's earlier alerts go.
    conf = tmp_path / "short.toml"
    conf.write_text("[windows]\n" + "".join(
        f'"{c}" = [0.0, 10.0]\n' for c in config.section("windows"))
        + "[retention]\nmargin_days = 0.0\nenabled = false\n")  # the daemon's schedule only
    args = ["-c", str(conf), "db", "prune", "--db", engine.url.render_as_string(False)]
    start = sizes(engine)
    capsys.readouterr()
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert sizes(engine) == start and "dry run: nothing deleted" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:7]}
    assert list(rows) == list(PruneResult.TABLES)
    assert out.splitlines()[0].split() == ["table", "older", "than", "would", "go"]
    assert rows["alerts"][1] == "2026-11-19T03:12:45Z" and int(rows["alerts"][2]) > 0
    assert "alert horizon 2026-11-19T03:12:45Z" in out and "look back 0 d" in out
    assert main(args) == 0
    out2 = capsys.readouterr().out
    assert out2.splitlines()[0].split()[-1] == "deleted"
    gone = int(next(line for line in out2.splitlines() if line.startswith("alerts")).split()[-1])
    assert gone == int(rows["alerts"][2]) == start["alerts"] - sizes(engine)["alerts"]


def test_the_daemon_job_prunes(db: tuple[Config, Engine], tmp_path: Path,
                               caplog: pytest.LogCaptureFixture) -> None:
    config, engine = db
    expire(db, LATER)
    jobs = Jobs(Runtime.build(engine, config), engine, instance="retention-test",
                started_at=datetime.now(UTC), book=SourceBook())
    jobs.reschedule()
    job = jobs.scheduler.get_job("retention")
    assert job is not None and job.trigger.interval == timedelta(hours=1)
    start = sizes(engine)
    with caplog.at_level(logging.INFO, logger="mma.service.jobs"):
        jobs.prune_database(LATER)
    assert 0 < sizes(engine)["alerts"] < start["alerts"]
    assert f"retention-test: retention (alerts before {(LATER - timedelta(days=372)).isoformat()}" \
        in caplog.text
    off = load_config(environ={"MMA_RETENTION__ENABLED": "false",
                               "MMA_PATHS__STATE_DIR": str(tmp_path)},
                      system_file=tmp_path / "x")
    jobs.runtime.config = off
    jobs.reschedule()
    assert jobs.scheduler.get_job("retention") is None
