"""sd_notify against real AF_UNIX datagram sockets, and the shipped unit files."""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mma.service.systemd import Notifier, watchdog_interval_s

UNITS = Path(__file__).resolve().parents[1] / "systemd"

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "SystemCallFilter": "@system-service",
    "CapabilityBoundingSet": "",
}


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2.0)
    return sock


def _recv(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode("utf-8")
    return dict(line.split("=", 1) for line in data.split("\n"))


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound at a filesystem path, as systemd creates it."""
    path = str(tmp_path / "notify")
    sock = _receiver(path)
    try:
        yield path, sock
    finally:
        sock.close()


def test_path_socket_receives_every_state(path_socket: tuple[str, socket.socket]) -> None:
    path, sock = path_socket
    env = {"NOTIFY_SOCKET": path}
    notifier = Notifier.from_environ(env)
    assert notifier.enabled

    assert notifier.ready(status="consuming 3 topics")
    assert _recv(sock) == {"READY": "1", "STATUS": "consuming 3 topics"}
    assert notifier.ready()
    assert sock.recv(4096) == b"READY=1"
    assert notifier.status("lag 12\nmessages")
    assert sock.recv(4096) == b"STATUS=lag 12 messages"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    assert notifier.extend_timeout(3)
    assert sock.recv(4096) == b"EXTEND_TIMEOUT_USEC=3000000"

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = _recv(sock)
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after
    notifier.close()


def test_abstract_socket() -> None:
    name = f"mma-test-{uuid.uuid4().hex}"
    sock = _receiver("\0" + name)
    try:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"
        assert notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_unset_removes_variable_for_children(path_socket: tuple[str, socket.socket]) -> None:
    path, sock = path_socket
    env = {"NOTIFY_SOCKET": path, "OTHER": "x"}
    notifier = Notifier.from_environ(env, unset=True)
    assert env == {"OTHER": "x"}
    assert notifier.ready()
    assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize("value", [None, "", "relative/path", "@"])
def test_no_socket_is_a_noop(value: str | None) -> None:
    env = {} if value is None else {"NOTIFY_SOCKET": value}
    notifier = Notifier.from_environ(env)
    assert not notifier.enabled
    assert not notifier.ready(status="x")
    assert not notifier.reloading()
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert not notifier.status("x")


def test_send_failure_never_raises_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level("DEBUG", logger="mma.service.systemd"):
        assert not notifier.ready()
        assert not notifier.watchdog()
        assert not notifier.stopping()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()

    # the socket appears later (systemd restarted): sending resumes
    sock = _receiver(str(tmp_path / "gone"))
    try:
        assert notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_notifier_is_usable_from_a_child_process(path_socket: tuple[str, socket.socket]) -> None:
    """The real process boundary: a child started with NOTIFY_SOCKET reports READY."""
    path, sock = path_socket
    code = "from mma.service.systemd import Notifier; Notifier.from_environ().ready(status='child')"
    env = {**os.environ, "NOTIFY_SOCKET": path}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert _recv(sock) == {"READY": "1", "STATUS": "child"}


def test_watchdog_interval() -> None:
    pid = os.getpid()
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(pid)}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}, pid=1) == 1.5
    # inherited from a parent service: not ours to ping
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(pid + 1)}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "x"}) is None


def _parse_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        strict=False,
        interpolation=None,
        delimiters=("=",),
        comment_prefixes=("#", ";"),
        empty_lines_in_values=False,
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return parser


def _multi(path: Path, key: str) -> list[str]:
    """Every value of a key that systemd allows to repeat (configparser keeps the last)."""
    prefix = key + "="
    return [
        line[len(prefix) :]
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith(prefix)
    ]


@pytest.mark.parametrize("name", ["mma.service", "mma@.service"])
def test_unit_file(name: str) -> None:
    path = UNITS / name
    unit = _parse_unit(path)
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"].endswith("/mma run")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["WatchdogSec"] == "60"
    for key in ("RestartSec", "TimeoutStopSec"):
        assert service[key]
    assert service["User"] == service["Group"] == "mma"
    assert service["ConfigurationDirectory"] == "mma"
    assert "-/etc/mma/mma.env" in _multi(path, "EnvironmentFile")
    for key, value in HARDENING.items():
        assert service[key] == value, key
    assert "MemoryDenyWriteExecute" not in service  # see the unit's header: libintlc
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    if name == "mma.service":
        assert service["StateDirectory"] == "mma"
        assert service["CacheDirectory"] == "mma"
        assert _multi(path, "Environment")[0] == "MMA_CONFIG=/etc/mma/mma.toml"
    else:
        assert service["StateDirectory"] == "mma/%i"
        assert service["CacheDirectory"] == "mma/%i"
        assert "MMA_CONFIG=/etc/mma/%i.toml" in _multi(path, "Environment")
        assert "-/etc/mma/%i.env" in _multi(path, "EnvironmentFile")


def test_env_example_names_every_secret() -> None:
    text = (UNITS / "mma.env.example").read_text(encoding="utf-8")
    for var in (
        "MMA_GCN_CLIENT_ID",
        "MMA_GCN_CLIENT_SECRET",
        "MMA_SLACK_WEBHOOK_URL",
        "MMA_SMTP_PASSWORD",
    ):
        assert f"#{var}=" in text
    assert "0600" in text
    # only comments and blank lines: nothing is set by copying the example
    assert all(not line or line.startswith("#") for line in text.splitlines())


@pytest.mark.parametrize(
    ("name", "as_name"), [("mma.service", "mma.service"), ("mma@.service", "mma@test.service")]
)
def test_systemd_analyze_verify(tmp_path: Path, name: str, as_name: str) -> None:
    """systemd's own parser finds no unknown key or bad value, where it can run.

    ExecStart is pointed at an executable that exists here, since /opt/mma is a
    deployment path. systemd-analyze reports unknown keys and unparsable values
    on stderr while still exiting 0, so those lines are what is asserted on;
    a failure that does not name our file (no systemd in a container) is
    environmental and ignored, the configparser checks above still apply.
    """
    tool = shutil.which("systemd-analyze")
    exe = shutil.which("true") or sys.executable
    unit = tmp_path / as_name
    unit.write_text(
        (UNITS / name).read_text(encoding="utf-8").replace("/opt/mma/.venv/bin/mma", exe),
        encoding="utf-8",
    )
    if tool is None:
        assert _parse_unit(unit)["Service"]["Type"] == "notify"
        return
    try:
        proc = subprocess.run(
            [tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return
    ours = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if str(unit) in line or line.startswith(as_name)
    ]
    assert ours == [], "\n".join(ours)
