"""How the ``mma`` command behaves: log levels, missing inputs, broken pipes, deliveries."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from select import select as wait_readable

import pytest
from sqlalchemy import select

from mma.cli import COMMAND_LEVELS, SIGPIPE_STATUS, main
from mma.db.engine import make_engine
from mma.db.schema import dead_letters, outbox
from tests.test_log import restored_root_logger

MMA = str(Path(sys.executable).with_name("mma"))
SAMPLE = resources.files("mma").joinpath("data", "sample")


@pytest.fixture(autouse=True)
def root_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """The root logger as main() leaves it, restored after the test."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.delenv("MMA_CONFIG", raising=False)
    with restored_root_logger() as root:
        yield root


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "MMA_CONFIG")}


# --- log levels ---------------------------------------------------------------------------

def test_commands_log_warnings_by_default_the_daemon_info(tmp_path: Path,
                                                         root_logger: logging.Logger) -> None:
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    assert main(["db", "upgrade", "--db", url]) == 0
    assert root_logger.level == logging.WARNING
    assert COMMAND_LEVELS == {"run": "INFO"}  # the service's journal keeps its INFO lines


def test_flag_beats_file_beats_command_default(tmp_path: Path,
                                               root_logger: logging.Logger) -> None:
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    conf = tmp_path / "mma.toml"
    conf.write_text('[logging]\nlevel = "error"\n')
    assert main(["-c", str(conf), "db", "upgrade", "--db", url]) == 0
    assert root_logger.level == logging.ERROR
    assert main(["-c", str(conf), "-l", "debug", "db", "upgrade", "--db", url]) == 0
    assert root_logger.level == logging.DEBUG


def test_unknown_level_is_a_usage_error(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-l", "LOUD", "db", "upgrade", "--db", f"sqlite:///{tmp_path / 'a'}"]) == 1
    assert "unknown log level 'LOUD'" in capsys.readouterr().err


def _bad_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "notice.json").write_bytes(SAMPLE.joinpath("S261121cd-retraction.json")
                                         .read_bytes())
    (folder / "garbage.json").write_bytes(b'{"not": "a notice"')
    return folder


def test_summary_follows_the_log_under_its_heading(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(_bad_folder(tmp_path))]) == 0
    lines = capsys.readouterr().err.splitlines()
    heading = next(i for i, line in enumerate(lines) if line.startswith("--- mma replay: "))
    assert lines[heading] == "--- mma replay: 1 records processed, no deliveries queued ---"
    assert lines[heading - 1] == ""
    logged = lines[:heading - 1]
    # WARNING by default: the dead letter shows, the INFO narration does not.
    assert any(" ERROR " in line and "garbage.json" in line for line in logged), logged
    assert not any(" INFO " in line for line in lines), lines
    assert "dead letters: 1" in lines[-1]


# --- progress bars ------------------------------------------------------------------------

LOG_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR) mma[.\w]*: ")


def _stderr_on_a_terminal(args: list[str]) -> bytes:
    """What mma writes to stderr when it is a terminal (a pty, raw: no LF -> CRLF)."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with subprocess.Popen([MMA, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=slave, env=_env()) as child:
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert child.wait(timeout=120) == 0
    os.close(master)
    return out


@pytest.mark.daemon
@pytest.mark.slow  # a replay in a subprocess on a pty, then on a pipe: ~10 s
def test_progress_bar_redrawn_below_each_log_record() -> None:
    with resources.as_file(SAMPLE) as folder:
        args = ["-l", "INFO", "replay", str(folder / "S261120ab-preliminary.json"),
                str(folder / "ztf-sample-alerts.avro")]
        raw = _stderr_on_a_terminal(args).decode("utf-8")
        piped = subprocess.run([MMA, *args], capture_output=True, env=_env(), timeout=120,
                               check=True).stderr.decode("utf-8")
    assert "\rprocess: 100%|" in raw and "\rre-score: " in raw  # the phases, labelled
    # What stays on screen of each line: the text after its last carriage return.
    shown = [line.rsplit("\r", 1)[-1] for line in raw.split("\n")]
    logged = [line for line in shown if " INFO " in line]
    assert len(logged) >= 4, shown  # records emitted while the bar was drawn...
    assert all(LOG_LINE.match(line) for line in logged), logged  # ...each intact, alone
    assert "event S261120ab: new gw event (gw.cbc) from LVK" in "\n".join(logged)
    # The bar was drawn before a record and again after it.
    first = raw.index("new gw event")
    assert "\rprocess:" in raw[:first] and "\rprocess:" in raw[first:]
    # Not a terminal: no bar, no carriage return, the same records.
    assert "\r" not in piped and "process:" not in piped
    assert sum(" INFO " in line for line in piped.splitlines()) == len(logged)


@pytest.mark.parametrize("slow", [True, False], ids=["slow-read", "fast-read"])
def test_reading_bar_counts_bytes_when_reading_takes_long(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slow: bool) -> None:
    from mma import replay

    files = []
    for i in range(3):
        files.append(tmp_path / f"f{i}.json")
        files[-1].write_bytes(b"x" * 1000)
    master, slave = pty.openpty()
    tty.setraw(slave)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with open(slave, "w", encoding="utf-8") as term:
        monkeypatch.setattr(sys, "stderr", term)
        monkeypatch.setattr(replay, "PROGRESS_DELAY_S", 0.05 if slow else 60.0)
        for _path in replay._reading(files, "read", progress=True):
            time.sleep(0.1)  # reading a file
        term.flush()
    chunks = []
    while wait_readable([master], [], [], 0.5)[0]:  # the pty passes data on asynchronously
        try:
            chunks.append(os.read(master, 65536))
        except OSError:  # EIO: nothing more, the writing side is closed
            break
    os.close(master)
    out = b"".join(chunks).decode("utf-8")
    if slow:
        assert "\rread: 100%|" in out and "| 3.00k/3.00k [" in out, out  # bytes
    else:
        assert out == ""


# --- missing and unreadable inputs ---------------------------------------------------------

@pytest.mark.parametrize("command", ["replay", "ingest"])
def test_missing_input_exits_1_before_any_database(tmp_path: Path, command: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "x.sqlite"
    good = _bad_folder(tmp_path)
    missing = tmp_path / "nowhere" / "S1.json"
    assert main([command, "--db", f"sqlite:///{db}", str(good), str(missing)]) == 1
    assert capsys.readouterr().err == f"mma: no such file or directory: {missing}\n"
    assert not db.exists()


def test_empty_directory_is_warned_of_and_exits_0(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".hidden").write_text("x")  # hidden files are not inputs
    assert main(["replay", str(empty)]) == 0
    err = capsys.readouterr().err
    assert f"WARNING mma.replay: no files under {empty}" in err
    assert "--- mma replay: 0 records processed" in err


def test_unreadable_file_is_dead_lettered(tmp_path: Path) -> None:
    # /proc/self/mem is a regular file whose first page cannot be read (EIO), even by root.
    db = tmp_path / "x.sqlite"
    assert main(["replay", "--db", f"sqlite:///{db}", "/proc/self/mem",
                 str(_bad_folder(tmp_path))]) == 0
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(select(dead_letters.c.origin, dead_letters.c.error)).all()
    engine.dispose()
    assert any(r.origin == "/proc/self/mem" and "file unreadable" in r.error for r in rows), rows


# --- broken pipes ---------------------------------------------------------------------------

def _run_into_closed_pipe(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run mma with stdout a pipe whose reader has already gone."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([MMA, *args], stdout=write, stderr=subprocess.PIPE, env=_env(),
                              timeout=120, check=False)
    finally:
        os.close(write)


@pytest.mark.daemon
def test_status_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    assert main(["db", "upgrade", "--db", url]) == 0
    done = _run_into_closed_pipe(["status", "--db", url])
    assert (done.returncode, done.stderr) == (SIGPIPE_STATUS, b"")


@pytest.mark.daemon
@pytest.mark.slow  # a replay of the sample in a subprocess: ~10 s
def test_replay_into_head_exits_quietly(tmp_path: Path) -> None:
    with resources.as_file(SAMPLE) as folder:
        done = _run_into_closed_pipe(["replay", str(folder)])
        assert done.returncode == SIGPIPE_STATUS
        assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr
        piped = subprocess.run(["bash", "-c", '"$0" replay "$1" | head -1; '
                                'echo "status ${PIPESTATUS[0]}" >&2', MMA, str(folder)],
                               capture_output=True, env=_env(), timeout=120, check=True)
    assert piped.stdout.count(b"\n") == 1 and piped.stdout.startswith(b'{"')
    assert b"Traceback" not in piped.stderr and b"Exception ignored" not in piped.stderr
    assert piped.stderr.splitlines()[-1] in (b"status 0", b"status 141")


def test_a_socket_broken_pipe_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from mma.cli import admin

    def fails(*_args: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")  # as an SMTP or HTTP peer would

    monkeypatch.setattr(admin, "cmd_config", fails)
    with pytest.raises(BrokenPipeError):
        main(["config", "check"])


# --- deliveries -----------------------------------------------------------------------------

CHANNELS = """
[channels.email]
enabled = true
recipients = ["oncall@example.org"]
[channels.slack]
enabled = true
"""
OPEN_RULES = """
[channels.{}.rules]
exclude_flags = []
max_p_chance = 1.0
max_credible_level = 1.0
"""


def _outbox_channels(url: str) -> tuple[set[str], int]:
    """The channels of the outbox's rows, and how many candidates are stored."""
    from mma.db.schema import coincidences

    engine = make_engine(url)
    with engine.connect() as conn:
        channels = {r.channel for r in conn.execute(select(outbox.c.channel))}
        n = len(conn.execute(select(coincidences.c.coincidence_id)).all())
    engine.dispose()
    return channels, n


@pytest.mark.slow  # two ingests of a 1 MB sky map and 614 alerts: ~8 s
def test_ingest_no_deliver_queues_nothing_replay_never(tmp_path: Path) -> None:
    conf = tmp_path / "mma.toml"
    conf.write_text(CHANNELS + OPEN_RULES.format("email") + OPEN_RULES.format("slack"))
    with resources.as_file(SAMPLE) as folder:
        files = [str(folder / "S261120ab-preliminary.json"),
                 str(folder / "ztf-sample-alerts.avro")]
        runs = {}
        for name, extra in (("quiet", ["ingest", "--no-deliver"]), ("loud", ["ingest"]),
                            ("replay", ["replay", "-o", str(tmp_path / "out.jsonl")])):
            url = f"sqlite:///{tmp_path / name}.sqlite"
            assert main(["-c", str(conf), *extra, "--db", url, *files]) == 0
            runs[name] = _outbox_channels(url)
    assert runs["quiet"][1] > 0 and runs["quiet"][1] == runs["loud"][1]  # same candidates
    assert runs["quiet"][0] == set() and runs["replay"][0] == set()
    assert runs["loud"][0] == {"email", "slack"}
