"""Operating ``mma run``: heartbeats in ``mma status``, SIGHUP reloads, prompt delivery.

A real Kafka broker, a real HTTP server standing in for Slack, and the daemon as
a subprocess with a configuration file that the test rewrites while it runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mma.registry import Registry
from tests.services.http import HttpSink
from tests.test_daemon import MMA, SAMPLE, _drain_topic, _produce

pytestmark = pytest.mark.daemon  # runs mma as a subprocess


def _wait(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _status(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([MMA, "status", "--json"], env=env, check=True, capture_output=True,
                         text=True, timeout=60)
    return dict(json.loads(out.stdout))


def _config(bootstrap: str, stem: str, *, slack: bool) -> str:
    return f"""
[kafka]
gcn_bootstrap_servers = "{bootstrap}"
alert_bootstrap_servers = "{bootstrap}"
group_id = "g-{stem}"
instance = "ops-{stem}"
poll_timeout_seconds = 0.5
notice_topics = ["lvk:n-{stem}"]
alert_topics = ["ztf:a-{stem}"]

[daemon]
# Far longer than the test waits: coincidences must go out because a batch woke the
# delivery thread, not because a period elapsed.
deliver_interval_seconds = 300.0
heartbeat_interval_seconds = 1.0

[skymaps]
fetch = false

[channels.kafka]
enabled = true
bootstrap_servers = "{bootstrap}"
topic = "out-{stem}"

[channels.slack]
enabled = {"true" if slack else "false"}
min_interval_seconds = 0.0

[channels.slack.rules]
max_p_chance = 1.0
exclude_flags = []  # the test survey's background is unmeasured: a flag Slack drops
"""


class _Notify:
    """A systemd notify socket: what the daemon told it, in order."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.told: list[str] = []

    def read(self) -> list[str]:
        while True:
            try:
                self.told.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.told


def test_status_reload_and_prompt_delivery(tmp_path: Path, kafka_bootstrap: str,
                                           http_sink: HttpSink) -> None:
    stem = uuid.uuid4().hex[:8]
    config = tmp_path / "mma.toml"
    config.write_text(_config(kafka_bootstrap, stem, slack=False))
    notice_files = sorted(SAMPLE.glob("*.json"), key=lambda p: json.loads(
        p.read_text())["time_created"])
    _produce(kafka_bootstrap, f"n-{stem}", [p.read_bytes() for p in notice_files])
    env = {**os.environ, "MMA_CONFIG": str(config),
           "MMA_DATABASE__URL": f"sqlite:///{tmp_path / 'ops.sqlite'}",
           "MMA_PATHS__STATE_DIR": str(tmp_path), "MMA_PATHS__CACHE_DIR": str(tmp_path),
           "MMA_SLACK_WEBHOOK_URL": http_sink.url_for("/services/T0/B0/ops")}
    notify = _Notify(tmp_path / "notify.sock")
    with subprocess.Popen([MMA, "run"], env={**env, "NOTIFY_SOCKET": str(notify.sock
                                                                         .getsockname())},
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            # READY=1 first: the daemon checks its configuration before it opens (and
            # migrates) the database, and `mma status` does not create one.
            _wait("READY", lambda: "READY=1" in "".join(notify.read()))
            # 1. The heartbeat: `mma status` shows the instance and its notice topic.
            def daemon() -> dict[str, Any] | None:
                found = [d for d in _status(env)["daemons"] if d["instance"] == f"ops-{stem}"]
                sources = {s["source"]: s for s in found[0]["sources"]} if found else {}
                # Messages are counted as they are handled and the lag after the commit
                # that follows: a beat in between shows the lag as unknown.
                mine = sources.get(f"n-{stem}", {})
                if mine.get("messages") == len(notice_files) and mine.get("lag") is not None:
                    return found[0]
                return None

            seen = _wait("the heartbeat to show the notices", daemon)
            assert not seen["stale"] and seen["pid"] == proc.pid
            notices = next(s for s in seen["sources"] if s["source"] == f"n-{stem}")
            assert notices["lag"] == 0 and notices["dead_letters"] == 0

            # 2. A bad file on SIGHUP: logged, the running configuration stays.
            config.write_text("[kafka\nbroken = ")
            proc.send_signal(signal.SIGHUP)
            _wait("RELOADING then READY", lambda: "".join(notify.read()).count("READY=1") >= 2)
            assert proc.poll() is None

            # 3. SIGHUP with Slack enabled: the new channel is used without a restart.
            config.write_text(_config(kafka_bootstrap, stem, slack=True))
            proc.send_signal(signal.SIGHUP)
            _wait("the second reload", lambda: "".join(notify.read()).count("READY=1") >= 3)
            avro = (SAMPLE / "ztf-sample-alerts.avro").read_bytes()
            packets = [payload for _h, payload in Registry().iter_file(avro, "sample")]
            sent = time.monotonic()
            _produce(kafka_bootstrap, f"a-{stem}", packets)

            # 4. Coincidences reach Slack and the topic long before deliver_interval.
            _wait("Slack posts", lambda: [r for r in http_sink.requests if r.method == "POST"])
            assert time.monotonic() - sent < 60
            assert [m for m in _drain_topic(kafka_bootstrap, f"out-{stem}") if m.key()]
            alerts = _wait("the alerts in the heartbeat", lambda: [
                s for d in _status(env)["daemons"] for s in d["sources"]
                if s["source"] == f"a-{stem}" and s["messages"] == len(packets)])
            assert alerts[0]["lag"] == 0
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    assert "configuration not reloaded, the running one stays" in stderr
    assert "configuration reloaded" in stderr
    # A clean stop removes the instance from `mma status` (a crashed one goes STALE).
    assert not [d for d in _status(env)["daemons"] if d["instance"] == f"ops-{stem}"]
