"""The outbox: deliveries written with the coincidence, sent once, across outages.

Runs on SQLite and on a real PostgreSQL; the emitter is an in-memory sink that
can fail on demand (the real channels have their own tests against real
servers, and tests/test_delivery_e2e.py runs the whole path to Kafka).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from mma import channels as channel_rules
from mma import outbox
from mma.cli import main
from mma.config import Config, load_config
from mma.db.schema import outbox as outbox_table
from mma.emitters import Delivery
from mma.errors import DeliveryError
from mma.ingest import Pipeline
from tests.test_correlator import MAP_1, alert, feed, notice


@dataclass
class Sink:
    """An emitter that records deliveries and fails while told to."""

    name: str = "kafka"
    fail: int = 0  # fail this many more sends
    permanent: bool = False
    sent: list[Delivery] = field(default_factory=list)
    digests: list[list[Delivery]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, delivery: Delivery) -> None:
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise DeliveryError("sink down", permanent=self.permanent)
            self.sent.append(delivery)

    def close(self) -> None:
        pass

    def send_digest(self, deliveries: list[Delivery]) -> None:
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise DeliveryError("sink down", permanent=self.permanent)
            self.digests.append(list(deliveries))


def _config(tmp_path: Path, **env: str) -> Config:
    base = {"MMA_PATHS__STATE_DIR": str(tmp_path / "s"), "MMA_PATHS__CACHE_DIR": str(tmp_path),
            "MMA_CHANNELS__KAFKA__ENABLED": "true", "MMA_CHANNELS__SLACK__ENABLED": "true",
            "MMA_CHANNELS__SLACK__RULES__MAX_P_CHANCE": "1.0",
            # The synthetic survey has no measured background (flag background_unmeasured),
            # which Slack's default rules drop: these tests are about delivery, not rules.
            "MMA_CHANNELS__SLACK__RULES__EXCLUDE_FLAGS": "[]"}
    return load_config(environ={**base, **env}, system_file=tmp_path / "none")


def _rows(engine: Engine) -> list:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox_table).order_by(outbox_table.c.id)))


def _now() -> datetime:
    return datetime.now(UTC)


def test_deliveries_are_written_with_the_coincidence(engine: Engine, tmp_path: Path) -> None:
    config = _config(tmp_path, MMA_CHANNELS__SLACK__RULES__MESSENGERS='["neutrino"]')
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, alert("good", pixel=0, hours=2))
    feed(p, alert("bogus", pixel=0, hours=3, rb=0.1))  # vetoed: never emitted
    rows = _rows(engine)
    assert [(r.channel, r.status, r.payload["kind"]) for r in rows] == [
        ("kafka", "pending", "new")]  # slack wants neutrinos only
    record = rows[0].payload["record"]
    assert record["object_id"] == "ZTF25objgood"
    assert record["status"] == "active" and record["rank"] == 1


def test_sink_down_then_back_sends_exactly_once(engine: Engine, tmp_path: Path) -> None:
    config = _config(tmp_path, MMA_CHANNELS__SLACK__ENABLED="false")
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, alert("a", pixel=0, hours=2))
    sink = Sink(fail=3)
    now = _now()
    waits = []
    for _ in range(3):
        assert outbox.drain(engine, {"kafka": sink}, config, now)["retry"] == 1
        due = _rows(engine)[0].next_attempt_at
        waits.append((due - now).total_seconds())
        assert outbox.drain(engine, {"kafka": sink}, config, now) == {}  # not due yet
        now = due
    assert waits == [30.0, 60.0, 120.0]  # exponential backoff
    assert outbox.drain(engine, {"kafka": sink}, config, now)["sent"] == 1
    assert outbox.drain(engine, {"kafka": sink}, config, now + timedelta(days=1)) == {}
    assert [d.payload["object_id"] for d in sink.sent] == ["ZTF25obja"]
    (row,) = _rows(engine)
    assert row.status == "sent" and row.attempts == 4


def test_permanent_failure_and_exhausted_retries_park(engine: Engine, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    config = _config(tmp_path, MMA_CHANNELS__SLACK__ENABLED="false",
                     MMA_OUTBOX__MAX_ATTEMPTS="2", MMA_OUTBOX__BATCH="1")
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, alert("a", pixel=0, hours=2))
    feed(p, alert("b", pixel=0, hours=3))
    now = _now()
    assert outbox.drain(engine, {"kafka": Sink(fail=1, permanent=True)}, config,
                        now)["parked"] == 1
    flaky = Sink(fail=10)
    outbox.drain(engine, {"kafka": flaky}, config, now)
    outbox.drain(engine, {"kafka": flaky}, config, now + timedelta(hours=1))
    assert [r.status for r in _rows(engine)] == ["parked", "parked"]
    assert "sink down" in _rows(engine)[1].last_error
    assert main(["status", "--db", engine.url.render_as_string(hide_password=False)]) == 0
    # The outbox table of ``mma status``: channel, pending, sent, parked, last error.
    row = next(line.split() for line in capsys.readouterr().out.splitlines()
               if line.startswith("kafka "))
    assert row[:4] == ["kafka", "0", "0", "2"] and "sink down" in " ".join(row[4:])


def test_crash_between_commit_and_send(engine: Engine, tmp_path: Path) -> None:
    config = _config(tmp_path, MMA_CHANNELS__SLACK__ENABLED="false")
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, alert("a", pixel=0, hours=2))
    del p  # the process dies after committing, before any drain
    sink = Sink()
    assert outbox.drain(engine, {"kafka": sink}, config, _now())["sent"] == 1  # restarted
    assert [d.kind for d in sink.sent] == ["new"]


def test_claimed_row_of_a_dead_sender_is_retried_after_the_lease(engine: Engine,
                                                                 tmp_path: Path) -> None:
    config = _config(tmp_path, MMA_CHANNELS__SLACK__ENABLED="false")
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, alert("a", pixel=0, hours=2))
    now = _now()
    outbox._claim(engine, now, timedelta(seconds=300), 10, ["kafka"], "b")  # then "dies"
    sink = Sink()
    assert outbox.drain(engine, {"kafka": sink}, config, now) == {}
    assert outbox.drain(engine, {"kafka": sink}, config, now + timedelta(seconds=301)) == {
        "sent": 1}


def test_a_restarted_instance_takes_back_its_predecessors_claims(engine: Engine,
                                                                  tmp_path: Path) -> None:
    config = _config(tmp_path, MMA_CHANNELS__SLACK__ENABLED="false")
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, alert("a", pixel=0, hours=2))
    feed(p, alert("b", pixel=0, hours=3))
    now = _now()
    claimed = outbox._claim(engine, now, timedelta(seconds=300), 1, ["kafka"], "inst-a")
    outbox._claim(engine, now, timedelta(seconds=300), 1, ["kafka"], "inst-b")
    assert len(claimed) == 1
    sink = Sink()
    assert outbox.drain(engine, {"kafka": sink}, config, now) == {}  # both leased
    # inst-a is killed and starts again: its own claim is due at once, inst-b's is not.
    assert outbox.release_claims(engine, "inst-a", now) == 1
    assert outbox.release_claims(engine, "inst-a", now) == 0
    assert outbox.drain(engine, {"kafka": sink}, config, now, owner="inst-a") == {"sent": 1}
    assert [d.coincidence_id for d in sink.sent] == [claimed[0].coincidence_id]


def test_retraction_goes_where_the_coincidence_went(engine: Engine, tmp_path: Path) -> None:
    config = _config(tmp_path, MMA_CHANNELS__SLACK__RULES__MAX_P_CHANCE="0.0")
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, alert("a", pixel=0, hours=2))
    kafka, slack = Sink("kafka"), Sink("slack")
    outbox.drain(engine, {"kafka": kafka, "slack": slack}, config, _now())
    feed(p, notice("RETRACTION", 4, retraction=True))
    outbox.drain(engine, {"kafka": kafka, "slack": slack}, config, _now())
    assert [d.kind for d in kafka.sent] == ["new", "retraction"]
    assert kafka.sent[1].payload["status"] == "retracted"
    assert slack.sent == []  # never told of it, so no retraction either


def test_only_the_latest_pending_revision_is_sent(engine: Engine, tmp_path: Path) -> None:
    config = _config(tmp_path, MMA_CHANNELS__SLACK__ENABLED="false")
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, {0: 0.6, 1: 0.25, 2: 0.15}))
    feed(p, alert("a", pixel=0, hours=2))
    feed(p, notice("UPDATE", 3, {0: 0.85, 2: 0.15}))  # re-scores "a" before any drain
    sink = Sink()
    outbox.drain(engine, {"kafka": sink}, config, _now())
    assert [(d.revision, d.kind) for d in sink.sent] == [(2, "update")]
    assert [r.status for r in _rows(engine)] == ["superseded", "sent"]


def test_two_drainers_never_send_twice(engine: Engine, tmp_path: Path) -> None:
    config = _config(tmp_path, MMA_CHANNELS__SLACK__ENABLED="false", MMA_OUTBOX__BATCH="3")
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    for i in range(20):
        feed(p, alert(f"a{i}", pixel=0, hours=2 + i / 10))
    sink = Sink()
    now = _now()

    def run() -> None:
        while outbox.drain(engine, {"kafka": sink}, config, now):
            pass

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = [d.outbox_id for d in sink.sent]
    assert len(ids) == len(set(ids)) == 20


def test_per_recipient_subscriptions_are_channels_of_their_own(engine: Engine,
                                                               tmp_path: Path) -> None:
    user = tmp_path / "mma.toml"
    user.write_text("""
[channels.email]
enabled = true
[[channels.email.subscribers]]
address = "neutrino-desk@example.org"
messengers = ["neutrino"]
exclude_flags = []
[[channels.email.subscribers]]
address = "gw-oncall@example.org"
max_p_chance = 1.0
exclude_flags = []  # the synthetic survey's background is unmeasured
""")
    config = load_config(user, environ={"MMA_PATHS__STATE_DIR": str(tmp_path)},
                         system_file=tmp_path / "none")
    channels = channel_rules.enabled_channels(config)
    gw = channel_rules.subscriber_channel("gw-oncall@example.org")
    assert set(channels) == {gw, channel_rules.subscriber_channel("neutrino-desk@example.org")}
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, alert("a", pixel=0, hours=2))
    assert [r.channel for r in _rows(engine)] == [gw]  # the neutrino desk is not told


def test_digest_channel_sends_one_message_for_everything_pending(engine: Engine,
                                                                 tmp_path: Path) -> None:
    config = _config(tmp_path, MMA_CHANNELS__KAFKA__ENABLED="false",
                     MMA_CHANNELS__SLACK__DIGEST_MINUTES="10")
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    for i in range(3):
        feed(p, alert(f"a{i}", pixel=0, hours=2 + i))
    slack = Sink("slack")
    now = _now()
    assert outbox.drain(engine, {"slack": slack}, config, now) == {}  # not yet
    sent = outbox.drain(engine, {"slack": slack}, config, now + timedelta(minutes=11))
    assert sent == {"sent": 3}
    assert [sorted(d.payload["object_id"].removeprefix("ZTF25obj") for d in batch)
            for batch in slack.digests] == [
        ["a0", "a1", "a2"]]
    assert slack.sent == [] and {r.status for r in _rows(engine)} == {"sent"}
