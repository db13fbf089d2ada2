"""Clean output: the one escaping (mma.printable), the log formatter, and mma replay's stderr."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mma.cli import main
from mma.log import CONTINUATION, HANDLER_NAME, configure
from mma.printable import UNSAFE_CATEGORIES, printable, printable_lines
from tests.hostile.text import (
    FORGED,
    HOSTILE,
    HOSTILE_SHOWN,
    RAW_FORBIDDEN,
    assert_clean,
    cases,
)

# One example of each class the escaping must catch: C0 (ESC, BEL, LF, CR, TAB, NUL),
# DEL, C1 (NEL, CSI), bidi embeddings, overrides, isolates and marks, zero-width and
# BOM format characters, line and paragraph separators, lone surrogates, a tag character.
UNSAFE = ["\x1b", "\x07", "\n", "\r", "\t", "\x00", "\x7f", "\x85", "\x9b",
          *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A)),
          "\u200e", "\u200f", "\u061c", "\u200b", "\u200d", "\ufeff", "\u2028", "\u2029",
          "\ud800", "\udfff", "\U000e0001"]
FORGED_START = re.compile(r"^(<\d>|\d{4}-\d\d-\d\dT|(DEBUG|INFO|WARNING|ERROR|CRITICAL) )")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@pytest.mark.parametrize("ch", UNSAFE, ids=[f"U+{ord(c):04X}" for c in UNSAFE])
def test_printable_escapes_each_unsafe_character(ch: str) -> None:
    # ascii() is the independent oracle: Python's own escape of the character.
    assert printable(f"a{ch}b") == f"a{ascii(ch)[1:-1]}b"


def test_printable_keeps_text_of_any_script() -> None:
    text = r"ZTF19acfixfe Ωμέγα 東京 é ü 🌌 a b=c\x1b [2J ~"
    assert printable(text) is text
    assert printable("naïve\u00a0space\u0301") == "naïve\u00a0space\u0301"  # NBSP, combining
    assert printable(42) == "42" and printable(Path("/a\nb")) == "/a\\nb"


def test_fast_path_skips_no_unsafe_character() -> None:
    # printable() returns text untouched when str.isprintable() is True: that must
    # never hold for a character of an unsafe category, in all of Unicode.
    missed = [hex(c) for c in range(sys.maxunicode + 1)
              if unicodedata.category(chr(c)) in UNSAFE_CATEGORIES and chr(c).isprintable()]
    assert missed == []


def test_printable_output_is_one_clean_encodable_line() -> None:
    text = printable("".join(UNSAFE) + HOSTILE)
    assert_clean(text)
    assert "\n" not in text
    text.encode("utf-8")  # no lone surrogate left to make the encoder raise


def test_printable_lines_keep_only_lf_breaks() -> None:
    assert printable_lines("a\x1bb\r\nc\u2028d\n") == ["a\\x1bb\\r", "c\\u2028d", ""]


@contextmanager
def restored_root_logger() -> Iterator[logging.Logger]:
    """The root logger, its level restored and mma's handler removed on exit."""
    root = logging.getLogger()
    level = root.level
    try:
        yield root
    finally:
        for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
            root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """mma's own handler on the root logger for one test, removed after."""
    with restored_root_logger():
        yield capsys


def _stream_of(fd: int) -> str:
    """The ``JOURNAL_STREAM`` value systemd sets when *fd* is its stream: device:inode."""
    st = os.fstat(fd)
    return f"{st.st_dev}:{st.st_ino}"


@pytest.mark.parametrize("journal", [False, True], ids=["stderr", "journald"])
def test_forged_record_is_one_line(logs: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch, journal: bool) -> None:
    if journal:
        monkeypatch.setenv("JOURNAL_STREAM", _stream_of(2))
    else:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    configure("INFO")
    log = logging.getLogger("mma.test")
    log.error("%s: dead letter #%d: %s", f"ZTF{HOSTILE}", 7, ValueError(HOSTILE))
    log.info("fetching %s", f"https://gcn.example/map{HOSTILE}.fits")
    err = logs.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 2 and err.count("\n") == 2  # one line per record, nothing else
    assert_clean(err)
    if journal:  # journald stamps the time itself; the prefix is the priority (err, info)
        assert lines[0].startswith("<3>ERROR mma.test: ZTF\\n2026")
        assert lines[1].startswith("<6>INFO mma.test: fetching")
    else:
        assert LOG_LINE.match(lines[0])
        assert lines[0][21:].startswith("ERROR mma.test: ZTF\\n2026")
    assert f"ZTF{HOSTILE_SHOWN}" in lines[0]
    assert "map\\n2026-12-05T00:00:00Z CRITICAL mma: forged\\x1b[2J" in lines[1]


def test_traceback_stays_readable_but_cannot_forge(logs: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    configure("INFO")
    log = logging.getLogger("mma.test")
    try:
        raise RuntimeError(f"bad id{HOSTILE}\n<2>journal priority\r{FORGED}")
    except RuntimeError:
        log.exception("%s: unexpected error in %s", f"a{FORGED}", "ztf")
    log.warning("where %s", "x", stack_info=True)
    lines = logs.readouterr().err.splitlines()
    assert_clean("\n".join(lines))
    records = [line for line in lines if not line.startswith(CONTINUATION)]
    assert len(records) == 2 and all(LOG_LINE.match(line) for line in records)
    assert records[0].endswith("a\\n2026-12-05T00:00:00Z CRITICAL mma: forged: unexpected "
                               "error in ztf")
    # Multi-line still (readable), every continuation marked, none a forged record.
    body = [line[len(CONTINUATION):] for line in lines if line.startswith(CONTINUATION)]
    assert body[0] == "Traceback (most recent call last):"
    assert "RuntimeError: bad id" in body and "<2>journal priority\\r" in body
    assert HOSTILE_SHOWN.removeprefix("\\n") in body
    assert "Stack (most recent call last):" in body
    # Without the indent, these lines would read as records (or journald priorities).
    assert sum(FORGED_START.match(line) is not None for line in body) == 3


def _write(folder: Path, files: list[tuple[str, bytes]]) -> None:
    folder.mkdir()
    for name, data in files:
        (folder / name).write_bytes(data)


def _hostile_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    _write(folder, [(c.filename, c.data) for c in cases()])
    return folder


def _check_replay_stderr(err: str, *, journal: bool) -> None:
    """Every hostile string shown escaped; each line a record, a continuation or the summary."""
    assert_clean(err)
    lines = err.splitlines()
    assert not any(line.startswith(FORGED.strip()) for line in lines)
    summary = lines.index("")  # the summary follows the log after a blank line
    for line in lines[:summary]:
        if journal:
            assert re.match(rf"<[2-7]>((DEBUG|INFO|WARNING|ERROR|CRITICAL) |{CONTINUATION})",
                            line), line
        else:
            assert line.startswith(CONTINUATION) or LOG_LINE.match(line), line
    # Each dead letter logged once, on one line (hostile file name, refused ids).
    for case in (c for c in cases() if c.outcome == "dead_letter"):
        dead = [line for line in lines
                if "dead letter #" in line and printable(case.filename) in line]
        assert len(dead) == 1 and case.reason in dead[0], (case.name, dead)
    assert f"unreadable{HOSTILE_SHOWN}.json" in err
    # The notice whose map URL carries controls is refused (its reason shows the URL
    # escaped, checked by assert_clean); the other is in the table.
    assert {line.split()[0] for line in lines[summary:] if line.startswith("IceCube-")} == {
        "IceCube-990001_1"}


def test_replay_output_is_clean(tmp_path: Path, logs: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = tmp_path / "out.jsonl"
    assert main(["-l", "DEBUG", "replay", "-o", str(out), str(_hostile_folder(tmp_path))]) == 0
    _check_replay_stderr(logs.readouterr().err, journal=False)
    assert_clean(out.read_text())


@pytest.mark.daemon
@pytest.mark.slow  # ~6 s each on a shared machine: start-up, two circle regions, a ZTF packet
@pytest.mark.parametrize("journal", [False, True], ids=["stderr", "journald"])
def test_replay_subprocess_writes_no_raw_controls(tmp_path: Path, journal: bool) -> None:
    """The bytes a real ``mma replay`` writes to stderr and stdout, journald or not."""
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    exe = Path(sys.executable).with_name("mma")
    with (tmp_path / "stderr").open("w+b") as err:
        if journal:  # as systemd does: the stream's device and inode
            env["JOURNAL_STREAM"] = _stream_of(err.fileno())
        done = subprocess.run([str(exe), "-l", "DEBUG", "replay",
                               str(_hostile_folder(tmp_path))],
                              stdout=subprocess.PIPE, stderr=err, env=env, timeout=120,
                              check=True)
        err.seek(0)
        stderr = err.read()
    for raw in (stderr, done.stdout):
        for ch in RAW_FORBIDDEN:
            assert ch.encode() not in raw
    _check_replay_stderr(stderr.decode("utf-8"), journal=journal)


# sd-daemon(3): SD_CRIT "<2>", SD_ERR "<3>", SD_WARNING "<4>", SD_INFO "<6>", SD_DEBUG "<7>";
# "prefix every line": a line without one is filed at the stream's default level.
SD_PREFIX = {logging.CRITICAL: "<2>", logging.ERROR: "<3>", logging.WARNING: "<4>",
             logging.INFO: "<6>", logging.DEBUG: "<7>"}


@pytest.mark.parametrize("level", sorted(SD_PREFIX), ids=logging.getLevelName)
def test_journal_lines_carry_the_priority_each(level: int) -> None:
    from mma.log import formatter

    fmt = formatter(journal=True)
    try:
        raise ValueError(f"two\nlines{FORGED}")
    except ValueError:
        record = logging.LogRecord("mma.t", level, __file__, 1, "boom %s", ("x",),
                                   sys.exc_info())
    lines = fmt.format(record).split("\n")
    assert lines[0] == f"{SD_PREFIX[level]}{logging.getLevelName(level)} mma.t: boom x"
    assert len(lines) > 4  # the traceback: one journal entry per line, each at this level
    assert all(line.startswith(SD_PREFIX[level] + CONTINUATION) for line in lines[1:])
    assert not any(line[3:].startswith("<") for line in lines)  # nothing forged after it
    assert formatter(journal=False).format(record).split("\n")[1].startswith(CONTINUATION)


def test_journal_only_when_stderr_is_the_journal_stream(
        logs: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    log = logging.getLogger("mma.test")
    # Inherited from a service but stderr redirected elsewhere: no prefixes.
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    configure("INFO")
    log.warning("a")
    configure("INFO", journal=True)  # the explicit option
    log.warning("b")
    monkeypatch.setenv("JOURNAL_STREAM", _stream_of(2))
    configure("", default="ERROR")  # empty level: the caller's default
    log.warning("c")
    log.error("d")
    lines = logs.readouterr().err.splitlines()
    assert LOG_LINE.match(lines[0]) and lines[0].endswith("WARNING mma.test: a")
    assert lines[1:] == ["<4>WARNING mma.test: b", "<3>ERROR mma.test: d"]
    configure("")  # the daemon's reload with [logging] level = "": its own INFO
    assert logging.getLogger().level == logging.INFO


def test_python_warnings_are_logged(tmp_path: Path) -> None:
    code = ("import warnings\nfrom mma.log import configure\nconfigure('WARNING')\n"
            "warnings.warn('odd\\nvalue')\n")
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60, check=True)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and LOG_LINE.match(lines[0]), lines
    assert "WARNING py.warnings: " in lines[0] and "UserWarning: odd\\nvalue" in lines[0]
