"""Crashes and scale-out at volume, under load: the final state is a clean replay's.

The stream of :mod:`tests.volume_stream` (17 real O4 LVK notices with two superseded
maps and a retraction, ~5,500 ZTF packets of 700 objects) is produced in stream order,
notices between the alerts, onto a 1-partition notice topic and a 4-partition alert
topic (unkeyed: one object's detections land on several partitions), while a CPU hog
competes for the cores with the broker, PostgreSQL and the daemons. Then:

* one ``mma run`` is SIGKILLed three times at random points and restarted each time;
* two, and three, ``mma run`` share the consumer group and the database, and one of
  them is SIGKILLed once and restarted.

When the last daemon has idled out, the database's live coincidences and the output
topic's newest revision of each key must equal a clean ``mma replay`` of the same
stream: none lost, none spurious, none carrying a superseded region (region version
and credible level compared), every alert stored once, no dead letter.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import func, select

from mma.db.engine import make_engine
from mma.db.schema import alerts, coincidences, dead_letters, notices
from tests import volume_stream
from tests.test_daemon import MMA, _drain_topic, _free_port
from tests.test_daemon_faults import _env

pytestmark = [pytest.mark.daemon, pytest.mark.slow]

JD_UNIX = 2440587.5
PARTITIONS = 4
RATE_PER_S = 600.0  # produced messages per second: the stream lasts ~10 s
HEADER_REVISION = "mma-revision"

Final = dict[str, tuple[int, float]]  # coincidence id -> (region version, credible level)


@dataclass
class Stream:
    notices: list[bytes]
    packets: list[tuple[bytes, bytes]]
    reference: Final


def _final_of(url: str) -> Final:
    """Live, unvetoed coincidences of a database with their region version and level."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(coincidences.c.coincidence_id, coincidences.c.status,
                                       coincidences.c.vetoed, coincidences.c.payload)).all()
    finally:
        engine.dispose()
    return {r.coincidence_id: (int(r.payload["region_version"]),
                               round(float(r.payload["credible_level"]), 9))
            for r in rows if r.status != "retracted" and not r.vetoed}


def _create_topics(bootstrap: str, spec: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, n, 1) for t, n in spec.items()]).values():
        future.result(timeout=30)


def _topic_final(bootstrap: str, topic: str) -> Final:
    """The newest revision of each key on the output topic, unless it is a retraction.

    Delivery is at least once: a (key, revision) pair may appear twice after a kill,
    but always with the same content.
    """
    newest: dict[str, tuple[int, dict]] = {}
    seen: dict[tuple[str, int], bytes] = {}
    for msg in _drain_topic(bootstrap, topic):
        key = (msg.key() or b"").decode()
        revision = int(dict(msg.headers() or [])[HEADER_REVISION])
        value = msg.value() or b""
        assert seen.setdefault((key, revision), value) == value, (
            f"{key} r{revision} published twice with different content")
        if key not in newest or revision > newest[key][0]:
            newest[key] = (revision, json.loads(value))
    return {key: (int(rec["region_version"]), round(float(rec["credible_level"]), 9))
            for key, (_rev, rec) in newest.items() if rec["kind"] != "retraction"}


def _diff(got: Final, want: Final) -> str:
    lost = sorted(set(want) - set(got))
    spurious = sorted(set(got) - set(want))
    stale = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    return (f"{len(lost)} lost {lost[:3]}, {len(spurious)} spurious {spurious[:3]}, "
            f"{len(stale)} stale {[(k, got[k], want[k]) for k in stale[:3]]}")


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Stream:
    """The stream, and the final state of a clean one-process replay of it."""
    tmp = tmp_path_factory.mktemp("volume")
    notice_list = volume_stream.notices()
    packets = volume_stream.alert_packets()
    folder = volume_stream.write_replay_dir(tmp / "in", notice_list, packets)
    db = f"sqlite:///{tmp / 'replay.sqlite'}"
    env = _env(tmp, db, "127.0.0.1:1", "ref", **volume_stream.WINDOW_ENV)
    subprocess.run([MMA, "replay", str(folder), "--db", db, "--output", str(tmp / "r.jsonl")],
                   env=env, check=True, capture_output=True, timeout=600)
    reference = _final_of(db)
    assert len(reference) > 1000
    return Stream(notice_list, packets, reference)


def _in_stream_order(stream: Stream, t_notices: str, t_alerts: str,
                     ) -> list[tuple[str, bytes | None, bytes]]:
    """(topic, key, value) in the order a live stream would bring them."""
    timed: list[tuple[float, int, str, bytes | None, bytes]] = []
    for raw in stream.notices:
        created = json.loads(raw)["time_created"].replace("Z", "+00:00")
        timed.append((datetime.fromisoformat(created).timestamp(), len(timed), t_notices,
                      None, raw))
    for _key, raw in stream.packets:
        jd = _jd_of(raw)
        timed.append(((jd - JD_UNIX) * 86400.0, len(timed), t_alerts, None, raw))
    timed.sort()
    return [(topic, key, value) for _t, _i, topic, key, value in timed]


def _jd_of(raw: bytes) -> float:
    record: Any = next(iter(fastavro.reader(io.BytesIO(raw))))
    return float(record["candidate"]["jd"])


class Feeder(threading.Thread):
    """Produce the stream at :data:`RATE_PER_S` messages per second."""

    def __init__(self, bootstrap: str, messages: list[tuple[str, bytes | None, bytes]]):
        super().__init__(name="feeder", daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "compression.type": "gzip",
                                  "message.max.bytes": 10_000_000, "linger.ms": 5})
        self.messages = messages
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            started = time.monotonic()
            for i, (topic, key, value) in enumerate(self.messages):
                self.producer.produce(topic, value, key=key)
                self.producer.poll(0)
                ahead = i / RATE_PER_S - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            assert self.producer.flush(60) == 0
        except BaseException as exc:
            self.error = exc


@contextlib.contextmanager
def cpu_hog() -> Iterator[None]:
    """A process spinning on one core for the duration (the races show under load)."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait(10)


class Fleet:
    """``mma run`` processes on one database and consumer group, with their logs."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.procs: dict[int, subprocess.Popen] = {}

    def start(self, i: int, *extra: str) -> None:
        folder = self.tmp_path / f"i{i}"
        folder.mkdir(exist_ok=True)
        log = (folder / "run.log").open("ab")
        self.procs[i] = subprocess.Popen(
            [MMA, "run", *extra], stdout=log, stderr=subprocess.STDOUT,
            env={**self.env, "MMA_KAFKA__INSTANCE": f"inst{i}", "MMA_PATHS__STATE_DIR": str(
                folder), "MMA_PATHS__CACHE_DIR": str(folder),
                "MMA_DAEMON__HEALTH_PORT": str(_free_port())})

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(20)

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.tmp_path.glob("i*/run.log")))

    def wait(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        codes = []
        for proc in self.procs.values():
            try:
                codes.append(proc.wait(max(1.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(-999)
        return codes

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _stored(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(alerts)).scalar_one())
    except Exception:  # the schema may not exist yet
        return 0
    finally:
        engine.dispose()


def _wait_stored(url: str, fleet: Fleet, low: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _stored(url) < low:
        assert time.monotonic() < deadline, f"fewer than {low} alerts stored: {fleet.logs()}"
        time.sleep(0.1)


def _check(url: str, bootstrap: str, t_out: str, stream: Stream, fleet: Fleet,
           seed: int) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            letters = conn.execute(select(dead_letters.c.origin, dead_letters.c.error)).all()
            n_notices = conn.execute(select(func.count()).select_from(notices)).scalar_one()
            n_alerts = conn.execute(select(func.count()).select_from(alerts)).scalar_one()
    finally:
        engine.dispose()
    context = f"(seed {seed}) " + fleet.logs()[-4000:]
    assert letters == [], context
    assert n_notices == len(stream.notices), context
    assert n_alerts == len(stream.packets), context
    final = _final_of(url)
    assert final == stream.reference, "database: " + _diff(final, stream.reference)
    topic = _topic_final(bootstrap, t_out)
    assert topic == stream.reference, "output topic: " + _diff(topic, stream.reference)


def _scenario(tmp_path: Path, kafka_bootstrap: str, postgres_url: str, stream: Stream,
              n_daemons: int, disturb: Callable[[Fleet, random.Random, str], None],
              idle_exit: bool) -> None:
    """Start *n_daemons*, feed the stream under a CPU hog, *disturb* them meanwhile, let
    them idle out, and compare the outcome with the clean replay."""
    seed = int(time.time() * 1000) % 100_000
    rng = random.Random(seed)
    stem = uuid.uuid4().hex[:8]
    t_notices, t_alerts, t_out = f"n-{stem}", f"a-{stem}", f"out-{stem}"
    _create_topics(kafka_bootstrap, {t_notices: 1, t_alerts: PARTITIONS, t_out: 1})
    fleet = Fleet(tmp_path, _env(tmp_path, postgres_url, kafka_bootstrap, stem,
                                 **volume_stream.WINDOW_ENV))
    feeder = Feeder(kafka_bootstrap, _in_stream_order(stream, t_notices, t_alerts))
    extra = ("--idle-exit", "10") if idle_exit else ()
    try:
        with cpu_hog():
            for i in range(n_daemons):
                fleet.start(i, *extra)
            feeder.start()
            disturb(fleet, rng, postgres_url)
            feeder.join(120)
            assert feeder.error is None and not feeder.is_alive()
            if not idle_exit:  # killed once more after the stream, then idles out
                fleet.kill(0)
                fleet.start(0, "--idle-exit", "10")
            assert fleet.wait(timeout=300) == [0] * n_daemons, fleet.logs()
    finally:
        fleet.stop_all()
    _check(postgres_url, kafka_bootstrap, t_out, stream, fleet, seed)


def test_sigkills_at_volume_end_as_a_clean_replay(
        tmp_path: Path, kafka_bootstrap: str, postgres_url: str, stream: Stream) -> None:
    """One daemon, SIGKILLed at three random points of the stream and once after it."""
    def disturb(fleet: Fleet, rng: random.Random, url: str) -> None:
        n = len(stream.packets)
        for k in (1, 2, 3):
            _wait_stored(url, fleet, int(n * rng.uniform(k / 4 - 0.12, k / 4 + 0.12)),
                         timeout=240)
            time.sleep(rng.uniform(0, 0.5))  # not only right after a commit
            fleet.kill(0)
            fleet.start(0)

    _scenario(tmp_path, kafka_bootstrap, postgres_url, stream, 1, disturb, idle_exit=False)


@pytest.mark.parametrize("n_daemons", [2, 3])
def test_scale_out_at_volume_ends_as_a_clean_replay(
        tmp_path: Path, kafka_bootstrap: str, postgres_url: str, stream: Stream,
        n_daemons: int) -> None:
    """Several daemons in one group on one database; one of them SIGKILLed and restarted."""
    def disturb(fleet: Fleet, rng: random.Random, url: str) -> None:
        _wait_stored(url, fleet, int(len(stream.packets) * rng.uniform(0.2, 0.7)),
                     timeout=240)
        victim = rng.randrange(n_daemons)
        fleet.kill(victim)
        fleet.start(victim, "--idle-exit", "10")

    _scenario(tmp_path, kafka_bootstrap, postgres_url, stream, n_daemons, disturb,
              idle_exit=True)
