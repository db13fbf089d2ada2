"""The ``mma`` command line: help, config, db, and the demo on the bundled sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from mma import __version__
from mma.cli import build_parser, main

ROOT = Path(__file__).parents[1]
SCHEMA = json.loads((ROOT / "mma/schema/coincidence.schema.json").read_text())


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    names = sorted(sub.choices)  # type: ignore[arg-type]
    assert names == ["config", "db", "deliver", "demo", "ingest", "replay", "run", "status"]
    for name in names:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0
        assert f"usage: mma {name}" in capsys.readouterr().out


@pytest.mark.daemon
def test_version_from_installed_console_script() -> None:
    exe = Path(sys.executable).with_name("mma")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"mma {__version__}"


def test_config_check_rejects_unknown_key(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[scoring]\nmax_credible = 0.5\n")
    assert main(["--config", str(bad), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "scoring.max_credible" in err
    good = tmp_path / "good.toml"
    good.write_text("[scoring]\nmax_credible_level = 0.5\n")
    assert main(["--config", str(good), "config", "check"]) == 0


def test_config_show_redacts_secrets(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MMA_SMTP_PASSWORD", "hunter2-do-not-print")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "smtp_password" in out


def test_db_upgrade_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    assert main(["db", "upgrade", "--db", url]) == 0
    assert main(["status", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "coincidences   0" in out and "dead_letters   0" in out


def test_demo_prints_ranked_coincidences(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.jsonl"
    assert main(["demo", "--output", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    for record in records:
        jsonschema.validate(record, SCHEMA)
    live = [r for r in records if r["status"] != "retracted"]
    retracted = [r for r in records if r["status"] == "retracted"]
    # The sample's planted counterparts near S261120ab's main lobe are found and ranked.
    assert {r["event_id"] for r in live} == {"S261120ab"}
    assert all(r["region_version"] == 2 for r in live)
    assert sorted(r["rank"] for r in live) == list(range(1, len(live) + 1))
    assert any("pre_existing" in r["flags"] for r in live)
    # One candidate per object and event, however often the object alerted.
    keys = [(r["event_id"], r["object_id"]) for r in records]
    assert len(keys) == len(set(keys))
    assert any(r["n_detections"] > 1 for r in live)
    # S261121cd was retracted: its candidates say so; the update dropped the second lobe.
    assert {f for r in retracted for f in r["flags"]} >= {"event_retracted", "left_region"}
    assert {r["event_id"] for r in retracted} == {"S261120ab", "S261121cd"}
    err = capsys.readouterr().err
    assert "S261120ab" in err and "dead letters: 0" in err


def test_schema_example_is_valid() -> None:
    example = json.loads((ROOT / "mma/schema/coincidence.example.json").read_text())
    jsonschema.validate(example, SCHEMA)
    bad = dict(example, credible_level=1.5)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)
