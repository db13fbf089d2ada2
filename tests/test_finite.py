"""Finite numbers everywhere: scores, the database, the outputs.

The case (:mod:`tests.hostile.numbers`): a Fink alert whose catalogued host lies
40 sigma beyond a real LVK map's distance once scored ``ln B_D = -inf``; the
record then broke SQLite's ``json_extract``, ``mma replay`` died writing its
output, and on PostgreSQL the JSON column refused the row, an error retried
forever. Here it is replayed on both databases, and run through ``mma run``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import (
    Engine,
    func,
    insert,
    select,
    text,
)

from mma.cli import main
from mma.config import Config, load_config
from mma.db import alert_store
from mma.db.engine import make_engine
from mma.db.schema import alerts, coincidences, dead_letters, notices
from mma.emitters.kafka import encode_value
from mma.emitters.slack import SlackEmitter
from mma.errors import ConfigError, DeliveryError, InvalidValue
from mma.ingest import Parsed, Pipeline
from mma.match.finite import LN_CEILING, LN_FLOOR, check_record, clamp_ln
from mma.match.scorer import Scorer
from mma.report import write_jsonl
from tests.helpers import HANDLER
from tests.hostile import numbers
from tests.test_correlator import alert, feed, notice, rows
from tests.test_daemon import MMA, _drain_topic, _produce, _state


def strict_json(line: str | bytes) -> Any:
    """Parse JSON as the standard has it: NaN and Infinity are errors, not numbers."""
    def refuse(name: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {name}")
    return json.loads(line, parse_constant=refuse)


def assert_finite(value: Any, path: str = "record") -> None:
    """Every number in *value*, however deep, is finite."""
    if isinstance(value, float):
        assert math.isfinite(value), f"{path} = {value}"
    elif isinstance(value, dict):
        for key, item in value.items():
            assert_finite(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_finite(item, f"{path}[{i}]")


def ln_b_d_in_sql(engine: Engine) -> list[float]:
    """``components.ln_B_D`` of every stored candidate, read by the database's own JSON."""
    if engine.dialect.name == "sqlite":
        query = text("SELECT json_extract(payload, '$.components.ln_B_D') FROM coincidences")
    else:
        query = text("SELECT (payload->'components'->>'ln_B_D')::float FROM coincidences")
    with engine.connect() as conn:
        return [float(v) for v in conn.execute(query).scalars()]


@pytest.fixture(scope="module")
def case_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two files of the case in a directory, as a user would replay them."""
    folder = tmp_path_factory.mktemp("numbers")
    for case in numbers.cases():
        assert case.outcome == "stored"
        (folder / case.filename).write_bytes(case.data)
    return folder


# ----------------------------------------------------------------------- the case, end to end
def test_fink_host_far_beyond_the_gw_distance_is_stored_and_written_finite(
        db_url: str, case_files: Path, tmp_path: Path) -> None:
    """``mma replay`` with an output file, on SQLite and PostgreSQL: exit 0, the
    candidate stored, read back by the database's JSON functions, and written."""
    out = tmp_path / "coincidences.jsonl"
    assert main(["replay", str(case_files), "--output", str(out), "--db", db_url]) == 0
    records = [strict_json(line) for line in out.read_text().splitlines()]
    assert [(r["event_id"], r["object_id"]) for r in records] == [
        (numbers.EVENT_ID, numbers.OBJECT_ID)]
    record = records[0]
    assert_finite(record)
    # The host is 40 sigma out: the catalogued galaxy counts as a chance neighbour of a
    # broker match without an offset (P_host = 0.5): ln B_D = ln(1 - 0.5), not -inf.
    assert record["components"]["ln_B_D"] == pytest.approx(math.log(0.5))
    assert record["log_bayes_factor"] == pytest.approx(sum(
        record["components"][k] for k in ("ln_B_sky", "ln_B_t", "ln_B_D", "ln_prior")))
    assert 0.0 <= record["p_chance"] <= 1.0 and 0.0 <= record["p_association"] <= 1.0
    engine = make_engine(db_url)
    try:
        assert ln_b_d_in_sql(engine) == pytest.approx([math.log(0.5)])
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(notices)).scalar_one() == 1
            assert conn.execute(select(func.count()).select_from(alerts)).scalar_one() == 1
            assert conn.execute(select(dead_letters.c.error)).all() == []
    finally:
        engine.dispose()


def test_a_term_that_rules_the_candidate_out_is_its_floor_not_minus_infinity(
        db_url: str, case_files: Path, tmp_path: Path) -> None:
    """``pre_existing_factor`` 0 excludes an object seen before the merger (this one is):
    ln prior was -inf, the replay died writing its output (SQLite) or was refused by
    the JSON column and retried (PostgreSQL). Now the floor, stored and written."""
    config = tmp_path / "mma.toml"
    config.write_text('[priors]\n"pre_existing_factor.gw.cbc" = 0.0\n')
    out = tmp_path / "coincidences.jsonl"
    assert main(["--config", str(config), "replay", str(case_files), "--output", str(out),
                 "--db", db_url]) == 0
    [record] = [strict_json(line) for line in out.read_text().splitlines()]
    assert "pre_existing" in record["flags"]
    assert record["components"]["ln_prior"] == LN_FLOOR
    assert_finite(record)
    assert 0.0 <= record["p_association"] < 1e-300  # ruled out, as far as a double goes


# -------------------------------------------------------------------- the guard at the source
def test_check_record_names_the_event_the_object_and_the_fields() -> None:
    record = {"p_chance": 0.5, "components": {"ln_B_D": -math.inf, "ln_B_t": 0.0},
              "detections": [{"magnitude": 18.0}, {"magnitude": math.nan}]}
    with pytest.raises(InvalidValue) as refused:
        check_record(record, event_id="S240114b", object_id="ZTF20aafujpn")
    message = str(refused.value)
    assert "event S240114b" in message and "object ZTF20aafujpn" in message
    assert "components.ln_B_D=-inf" in message and "detections[1].magnitude=nan" in message
    check_record({"a": [1.0, {"b": 2}], "c": None, "d": "x"}, event_id="e", object_id="o")
    with pytest.raises(InvalidValue, match=r"t\[1\]=inf"):  # numpy scalars, tuples
        check_record({"t": (np.float64(1.0), np.float64("inf"))}, event_id="e", object_id="o")


def test_clamp_keeps_order_and_leaves_nan_to_the_check() -> None:
    assert clamp_ln(-math.inf) == LN_FLOOR and clamp_ln(math.inf) == LN_CEILING
    assert clamp_ln(-1e6) == LN_FLOOR and clamp_ln(-3.0) == -3.0
    assert math.exp(LN_FLOOR) > 0.0 and math.isfinite(math.exp(LN_CEILING))
    assert math.isnan(clamp_ln(math.nan))


def poison(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, alert_id: str,
           **fields: Any) -> None:
    """Make the scorer return *fields* (NaN: a bug) for the object of alert *alert_id*."""
    score = pipeline.correlator.scorer.score

    def poisoned(conn: Any, active: Any, survey: str, summary: Any, *args: Any) -> Any:
        got = score(conn, active, survey, summary, *args)
        if summary.detections[0].alert_id == alert_id:
            return dataclasses.replace(got, **fields)
        return got

    monkeypatch.setattr(pipeline.correlator.scorer, "score", poisoned)


def test_a_non_finite_score_dead_letters_its_alert_with_its_identities(
        engine: Engine, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """NaN injected into one candidate's score: the record is refused where it is built,
    that alert alone is dead-lettered naming event and object; no retry, the rest stored."""
    pipeline = Pipeline(engine, config)
    feed(pipeline, notice("Initial", 0.5, {0: 0.8, 1: 0.2}))
    poison(pipeline, monkeypatch, "2", ln_b_sky=math.nan)
    stream = [alert(str(i), 0, 1.0 + i) for i in range(4)]
    outcomes = pipeline.process_alerts(  # raises TransientError if it were retried
        [Parsed(HANDLER, f"raw{i}".encode(), f"t:0:{i}", item=a) for i, a in enumerate(stream)])
    assert [o.kind for o in outcomes] == ["alert", "alert", "dead_letter", "alert"]
    with engine.connect() as conn:
        letters = conn.execute(select(dead_letters.c.origin, dead_letters.c.error_type,
                                      dead_letters.c.error)).all()
    assert [(o, t) for o, t, _ in letters] == [("t:0:2", "InvalidValue")]
    assert "event S250301x" in letters[0][2] and "object ZTF25obj2" in letters[0][2]
    assert "ln_B_sky=nan" in letters[0][2]
    assert set(rows(engine)) == {"0", "1", "3"}
    for record in rows(engine).values():
        assert_finite(record)


def test_a_non_finite_score_costs_a_region_one_candidate_not_its_notice(
        engine: Engine, config: Config, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Alerts first, then the notice: the poisoned object's candidate is left out (an
    error line names event and object), the notice and the other candidates stored."""
    pipeline = Pipeline(engine, config)
    for i in range(3):
        feed(pipeline, alert(str(i), 0, 1.0 + i))
    poison(pipeline, monkeypatch, "1", ln_b_t=math.nan)
    region = notice("Initial", 0.5, {0: 0.8, 1: 0.2})
    outcome = pipeline.process(HANDLER, repr(region).encode(), origin="n:0:0", item=region,
                               now=region.issued_time)
    assert outcome.kind == "notice"
    assert set(rows(engine)) == {"0", "2"}
    assert any("event S250301x" in r.message and "object ZTF25obj1" in r.message
               and r.levelname == "ERROR" for r in caplog.records)


# ------------------------------------------------------------- a value the database refuses
def test_a_batch_whose_values_the_database_refuses_dead_letters_the_culprit(
        engine: Engine, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """A value the database itself refuses (here a NOT NULL column left empty while
    alert "2" is stored) fails the batch; one at a time, only that alert is a dead
    letter; the batch is not retried as if the database were down."""
    pipeline = Pipeline(engine, config)
    add_alerts = alert_store.add_alerts

    def refusing(conn: Any, batch: Any, **kwargs: Any) -> Any:
        if any(a.alert_id == "2" for a in batch):
            conn.execute(insert(dead_letters).values(source="s", error_type=None, error="e",
                                                     size=0, raw=b""))
        return add_alerts(conn, batch, **kwargs)

    monkeypatch.setattr(alert_store, "add_alerts", refusing)
    stream = [alert(str(i), 0, 1.0 + i) for i in range(4)]
    outcomes = pipeline.process_alerts(
        [Parsed(HANDLER, f"raw{i}".encode(), f"t:0:{i}", item=a) for i, a in enumerate(stream)])
    assert [o.kind for o in outcomes] == ["alert", "alert", "dead_letter", "alert"]
    with engine.connect() as conn:
        [(origin, kind, reason)] = conn.execute(select(
            dead_letters.c.origin, dead_letters.c.error_type, dead_letters.c.error)).all()
        assert conn.execute(select(func.count()).select_from(alerts)).scalar_one() == 3
    assert (origin, kind) == ("t:0:2", "InvalidValue")
    assert reason.startswith("t:0:2: the database refused a value: ")


# ------------------------------------------------------------------------ the daemon, live
def _one_row(index: int) -> bytes:
    """Row *index* of the real Fink night's first file, as a one-row parquet message."""
    table = pq.read_table(sorted(numbers.NIGHT.glob("*.parquet"))[0]).slice(index, 1)
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


@pytest.mark.daemon
def test_the_daemon_stores_it_finite_and_moves_on(tmp_path: Path, kafka_bootstrap: str,
                                                  postgres_url: str) -> None:
    """``mma run`` on PostgreSQL with real Kafka: the notice, the far-host alert and the
    alert after it are all stored, the candidate is published as standard JSON, and
    every offset is committed (nothing retried, nothing left behind).

    ``pre_existing_factor`` 0 as well (this object was seen before the merger): its
    ln prior was -inf, which the JSON column refused, a database error retried
    forever; the daemon never reached its idle exit.
    """
    stem = uuid.uuid4().hex[:8]
    config = tmp_path / "mma.toml"
    config.write_text('[priors]\n"pre_existing_factor.gw.cbc" = 0.0\n')
    t_notices, t_alerts, t_out = f"n-{stem}", f"a-{stem}", f"out-{stem}"
    _produce(kafka_bootstrap, t_notices, [numbers.NOTICE.read_bytes()])
    _produce(kafka_bootstrap, t_alerts, [numbers.fink_alert(), _one_row(0)])
    env = {**os.environ, "MMA_CONFIG": str(config), "MMA_DATABASE__URL": postgres_url,
           "MMA_PATHS__STATE_DIR": str(tmp_path), "MMA_PATHS__CACHE_DIR": str(tmp_path),
           "MMA_LOGGING__LEVEL": "WARNING", "MMA_SKYMAPS__FETCH": "false",
           "MMA_KAFKA__GCN_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "MMA_KAFKA__ALERT_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "MMA_KAFKA__GROUP_ID": f"g-{stem}", "MMA_KAFKA__INSTANCE": f"i-{stem}",
           "MMA_KAFKA__POLL_TIMEOUT_SECONDS": "0.5",
           "MMA_KAFKA__NOTICE_TOPICS": json.dumps([f"lvk:{t_notices}"]),
           "MMA_KAFKA__ALERT_TOPICS": json.dumps([f"fink:{t_alerts}"]),
           # The 2024 region must stay active while the test runs: expiry only at start.
           "MMA_DAEMON__EXPIRE_INTERVAL_SECONDS": "3600",
           "MMA_DAEMON__DELIVER_INTERVAL_SECONDS": "0.5",
           "MMA_CHANNELS__KAFKA__ENABLED": "true",
           "MMA_CHANNELS__KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "MMA_CHANNELS__KAFKA__TOPIC": t_out}
    run = subprocess.run([MMA, "run", "--idle-exit", "6"], env=env, capture_output=True,
                         text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    state = _state(postgres_url)
    assert (state["notices"], state["letters"]) == (1, [])
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(alerts)).scalar_one() == 2
            cid = conn.execute(select(coincidences.c.coincidence_id)).scalar_one()
        assert ln_b_d_in_sql(engine) == pytest.approx([math.log(0.5)])
    finally:
        engine.dispose()
    # Every offset committed: the notices' group is the instance's own, the alerts' shared.
    for group, topic, end in ((f"g-{stem}-notices-i-{stem}", t_notices, 1),
                              (f"g-{stem}", t_alerts, 2)):
        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
        try:
            [committed] = consumer.committed([TopicPartition(topic, 0)], timeout=30)
        finally:
            consumer.close()
        assert committed.offset == end, (topic, committed.offset)
    published = [m for m in _drain_topic(kafka_bootstrap, t_out) if m.key() == cid.encode()]
    assert published
    for message in published:
        record = strict_json(message.value())
        assert_finite(record)
        assert record["components"]["ln_B_D"] == pytest.approx(math.log(0.5))
        assert record["components"]["ln_prior"] == LN_FLOOR


def test_every_output_refuses_what_is_not_standard_json() -> None:
    """Kafka and Slack refuse a record holding NaN for good (parked, not retried), and so
    does the replay's writer: none of them writes ``NaN`` or ``Infinity``."""
    record = {"coincidence_id": "c", "p_chance": math.nan}
    with pytest.raises(ValueError, match="Out of range float"):
        encode_value(record)
    with pytest.raises(DeliveryError) as parked:
        SlackEmitter._encode(record, "coincidence c")
    assert parked.value.permanent
    with pytest.raises(ValueError, match="Out of range float"):
        write_jsonl([record], io.StringIO())


@pytest.mark.parametrize("key", ["BACKGROUND__PRIOR_NEW_PER_SR_DAY",
                                 "SCORING__BACKGROUND_RATE_FLOOR_PER_SR_PER_DAY"])
@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_background_rates_that_are_not_finite_stop_the_start(tmp_path: Path, key: str,
                                                             value: str) -> None:
    """TOML and the environment accept ``inf``; N_bg, P_chance and every record would not
    be numbers. A ConfigError at start instead, naming the key."""
    config = load_config(environ={f"MMA_{key}": value}, system_file=tmp_path / "absent")
    with pytest.raises(ConfigError, match=key.split("__")[1].lower()):
        Scorer(config)


def test_a_rescore_refused_for_one_event_goes_on_with_the_others(
        engine: Engine, config: Config, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A value refused while one event is re-scored is logged; the next event is re-scored."""
    pipeline = Pipeline(engine, config)
    first = notice("Initial", 0.5, {0: 0.8, 1: 0.2})
    feed(pipeline, first)
    feed(pipeline, dataclasses.replace(first, event_id="S250302y"))
    feed(pipeline, alert("0", 0, 1.0))
    tried: list[int] = []
    rescore = pipeline.correlator.rescore

    def refusing(conn: Any, ledger: Any, event_pk: int, now: Any) -> Any:
        tried.append(event_pk)
        if len(tried) == 1:
            raise InvalidValue("the database refused a value")
        return rescore(conn, ledger, event_pk, now)

    monkeypatch.setattr(pipeline.correlator, "rescore", refusing)
    pipeline.rescore(first.issued_time + timedelta(hours=2))
    assert len(set(tried)) == 2
    assert any(r.levelname == "ERROR" and f"rescore of event #{tried[0]} skipped" in r.message
               for r in caplog.records)
