"""The ``mma`` command line: help, config, db, and the demo on the bundled sample."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import Connection, Engine, insert
from sqlalchemy.sql.schema import Table

from mma import __version__
from mma.cli import build_parser, main
from mma.db.engine import make_engine, upgrade
from mma.db.schema import alerts, coincidences, events, notices, objects, regions
from mma.report import records, summary
from tests.hostile.text import HOSTILE, HOSTILE_SHOWN, assert_clean

ROOT = Path(__file__).parents[1]
SCHEMA = json.loads((ROOT / "mma/schema/coincidence.schema.json").read_text())


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    names = sorted(sub.choices)  # type: ignore[arg-type]
    assert names == ["candidates", "check", "coincidences", "config", "db", "dead-letters",
                     "deliver", "demo", "events", "ingest", "mute", "outbox", "page", "pages",
                     "picture", "replay", "resend", "run", "show", "status", "unmute", "watch"]
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
    # A daemon needs a source: here the spool directory (sources are opt-in).
    good.write_text(f'[scoring]\nmax_credible_level = 0.5\n[daemon]\nspool_dir = "{tmp_path}"\n')
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
    assert "active events: 0" in out and "dead letters: 0" in out


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


# Stored as a database written before the handlers screened ids would hold them.
EVENT_ID, MESSENGER, OBJECT_ID = f"S2611{HOSTILE}", "gw\x1b[31m\u202e", f"ZTF25{HOSTILE}"


def _add(conn: Connection, table: Table, **values: Any) -> Any:
    key = conn.execute(insert(table).values(**values)).inserted_primary_key
    assert key is not None
    return key[0]


def _store_unscreened(engine: Engine) -> None:
    """One event, region, object, alert and candidate whose strings carry controls."""
    t0 = datetime(2025, 3, 1, 5, 22, tzinfo=UTC)
    with engine.begin() as conn:
        event = _add(conn, events, event_id=EVENT_ID, messenger=MESSENGER,
                     event_class="gw.bns", instrument="LVK", event_time=t0)
        notice = _add(conn, notices, event_pk=event, handler="lvk", notice_type="PRELIMINARY",
                      issued_time=t0, sha256="0" * 64, raw=b"{}")
        region = _add(conn, regions, event_pk=event, notice_pk=notice, version=1,
                      kind="circle", window_start=t0, window_end=t0 + timedelta(days=1),
                      area50_deg2=10.0, area90_deg2=40.0, n_tiles=0)
        obj = _add(conn, objects, survey="ZTF", object_id=OBJECT_ID, ra_deg=1.0, dec_deg=2.0,
                   first_time=t0, last_time=t0)
        alert = _add(conn, alerts, survey="ZTF", alert_id="1", object_pk=obj, ra_deg=1.0,
                     dec_deg=2.0, hpx29=0, time=t0, passes_vetting=True)
        cid = str(uuid.uuid4())
        conn.execute(insert(coincidences).values(
            coincidence_id=cid, event_pk=event, object_pk=obj, alert_pk=alert,
            region_pk=region, status="active", log_bayes_factor=3.0, p_chance=0.01, rank=1,
            payload={"coincidence_id": cid, "event_id": EVENT_ID, "object_id": OBJECT_ID,
                     "flags": [], "credible_level": 0.5, "log_bayes_factor": 3.0,
                     "p_chance": 0.01}))


def _check_table(text: str) -> None:
    """The table of the stored rows: one line for the event, every string escaped."""
    assert_clean(text)
    [row] = [line for line in text.splitlines() if line.startswith("S2611")]
    assert row.startswith(f"S2611{HOSTILE_SHOWN} gw\\x1b[31m\\u202e  1        40     1  "
                          f"ZTF25{HOSTILE_SHOWN}")
    assert "0.500   3.00     0.01" in row


def test_summary_shows_stored_strings_escaped(engine: Engine) -> None:
    _store_unscreened(engine)
    with engine.connect() as conn:
        rows = records(conn)
        table = summary(conn, rows, {})
    assert [r["object_id"] for r in rows] == [OBJECT_ID]  # stored as it came
    assert len(table.splitlines()) == 5  # header, rule, the event, blank, totals
    _check_table(table)


def test_replay_summary_of_an_unscreened_database(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = make_engine(url)
    upgrade(engine)
    _store_unscreened(engine)
    engine.dispose()
    (tmp_path / "none").mkdir()
    assert main(["replay", "--db", url, str(tmp_path / "none")]) == 0
    out, err = capsys.readouterr()
    assert_clean(out)
    assert json.loads(out)["object_id"] == OBJECT_ID  # JSON escapes it itself
    _check_table(err)
