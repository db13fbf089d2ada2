"""The looking commands on the bundled sample, ingested for real: events, candidates, show,
outbox, dead-letters and status, as tables and as JSON."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, update

from mma.cli import main
from mma.db.engine import make_engine
from mma.db.schema import (
    coincidence_revisions,
    coincidences,
    event_aliases,
    events,
    outbox,
    regions,
)
from mma.db.store import add_dead_letter
from tests.hostile.text import HOSTILE, HOSTILE_SHOWN, assert_clean

SAMPLE = Path(__file__).parents[1] / "mma" / "data" / "sample"
# Kafka and Slack enabled, Slack taking everything, so that ingesting fills the outbox.
CHANNELS = """
[channels.kafka]
enabled = true
[channels.slack]
enabled = true
[channels.slack.rules]
max_p_chance = 1.0
max_credible_level = 1.0
exclude_flags = []
"""


# In this order the update shrinks S261120ab's region after its candidates were found
# (some leave it: retracted), and S261121cd is retracted after back-matching.
SAMPLE_ORDER = ("S261120ab-preliminary.json", "ztf-sample-alerts.avro",
                "S261120ab-update.json", "S261121cd-preliminary.json",
                "S261121cd-retraction.json")


def ingest_sample(directory: Path, url: str | None = None) -> tuple[str, str]:
    """Ingest the bundled sample (queuing deliveries) into *url*, else a new SQLite file.

    Returns (configuration file, database URL).
    """
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "mma.toml"
    conf.write_text(f'[paths]\nstate_dir = "{directory / "state"}"\n'
                    f'cache_dir = "{directory / "cache"}"\n{CHANNELS}')
    url = url or f"sqlite:///{directory / 'ingested.sqlite'}"
    assert main(["-c", str(conf), "ingest", *(str(SAMPLE / f) for f in SAMPLE_ORDER),
                 "--db", url]) == 0
    return str(conf), url


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return ingest_sample(tmp_path_factory.mktemp("ingested"))


@pytest.fixture
def db(ingested: tuple[str, str], tmp_path: Path) -> tuple[list[str], Engine]:
    """A copy of the ingested database for one test: (``-c CONF`` args, engine)."""
    conf, url = ingested
    copy = tmp_path / "copy.sqlite"
    shutil.copy(url.removeprefix("sqlite:///"), copy)
    return ["-c", conf], make_engine(f"sqlite:///{copy}")


def run(db: tuple[list[str], Engine], capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``mma ARGS --db`` on the test's database; its stdout (exit status 0 asserted)."""
    opts, engine = db
    capsys.readouterr()
    assert main([*opts, *args, "--db", str(engine.url)]) == 0
    return capsys.readouterr().out


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def open_window(engine: Engine, event_id: str) -> None:
    """Move the end of the event's regions' windows to tomorrow."""
    with engine.begin() as conn:
        pk = conn.execute(select(events.c.id).where(events.c.event_id == event_id)).scalar_one()
        conn.execute(update(regions).where(regions.c.event_pk == pk).values(
            window_end=datetime.now(UTC) + timedelta(days=1)))


def test_events_status_closed_windows_are_not_active(db: tuple[list[str], Engine],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    rows = {r["event_id"]: r for r in jsonl(run(db, capsys, "events", "--json"))}
    assert rows["S261121cd"]["status"] == "retracted"
    # The sample's windows (15 days from November 2026) have closed: expired, not active,
    # although its region row still says active.
    assert rows["S261120ab"]["status"] == "expired" and rows["S261120ab"]["muted_at"] is None
    assert rows["S261120ab"]["region_version"] == 2
    with db[1].connect() as conn:
        assert conn.execute(select(func.count()).select_from(regions).where(
            regions.c.status == "active")).scalar_one() == 1
    assert run(db, capsys, "events", "--active", "--json") == ""
    assert "active events: 0" in run(db, capsys, "status")
    open_window(db[1], "S261120ab")
    [active] = jsonl(run(db, capsys, "events", "--active", "--json"))
    assert active["event_id"] == "S261120ab" and active["status"] == "active"
    ranked = [c for c in jsonl(run(db, capsys, "candidates", "S261120ab", "--json"))
              if c["rank"] is not None]
    assert active["n_live"] == len(ranked) > 0
    assert active["best_p_chance"] == min(c["p_chance"] for c in ranked)
    table = run(db, capsys, "events").splitlines()
    assert table[0].split()[:3] == ["event", "messenger/class", "instrument"]
    line = next(t for t in table if t.startswith("S261120ab"))
    assert "gw/gw.cbc" in line and " active " in line and f" {len(ranked)} " in line


def test_candidates_live_by_rank_then_retracted(db: tuple[list[str], Engine],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    found = jsonl(run(db, capsys, "candidates", "S261120ab", "--json"))
    statuses = [c["status"] for c in found]
    n_live = sum(s != "retracted" for s in statuses)
    assert 0 < n_live < len(found)
    assert all(s == "retracted" for s in statuses[n_live:])  # after every live one
    ranks = [c["rank"] for c in found if c["rank"] is not None]
    assert ranks == list(range(1, len(ranks) + 1))
    assert [c["rank"] for c in found[:len(ranks)]] == ranks  # the ranked ones first
    # An alias finds the same event.
    with db[1].begin() as conn:
        pk = conn.execute(select(events.c.id).where(events.c.event_id == "S261120ab")).scalar()
        conn.execute(insert(event_aliases).values(alias="GW-ALIAS-1", event_pk=pk))
    table = run(db, capsys, "candidates", "GW-ALIAS-1").splitlines()
    assert table[0].split()[:4] == ["rank", "id", "object", "survey"]
    assert len(table) == len(found) + 1
    first = table[1].split()
    assert first[0] == "1" and first[1] == str(found[0]["coincidence_id"])[:8]
    assert first[6] == f"{found[0]['log_bayes_factor']:.1f}"


def test_unknown_event_or_id_is_a_usage_error(db: tuple[list[str], Engine],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    opts, engine = db
    url = str(engine.url)
    assert main([*opts, "candidates", "S000000zz", "--db", url]) == 1
    assert "no event 'S000000zz'" in capsys.readouterr().err
    assert main([*opts, "show", "0123abcd", "--db", url]) == 1
    assert "no candidate '0123abcd'" in capsys.readouterr().err
    assert main([*opts, "show", "0eb", "--db", url]) == 1
    assert "at least 8" in capsys.readouterr().err
    missing = f"sqlite:///{Path(url.removeprefix('sqlite:///')).parent / 'none.sqlite'}"
    assert main([*opts, "events", "--db", missing]) == 1
    assert "no database" in capsys.readouterr().err


def test_show_facts_history_and_outbox(db: tuple[list[str], Engine],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    best = jsonl(run(db, capsys, "candidates", "S261120ab", "--json"))[0]
    cid = str(best["coincidence_id"])
    with db[1].connect() as conn:
        n_history = conn.execute(select(func.count()).select_from(coincidence_revisions).where(
            coincidence_revisions.c.coincidence_id == cid)).scalar_one()
        channels = sorted(conn.execute(select(outbox.c.channel).where(
            outbox.c.coincidence_id == cid)).scalars())
    doc = json.loads(run(db, capsys, "show", cid[:10], "--json"))
    assert doc["candidate"]["coincidence_id"] == cid and doc["record"]["coincidence_id"] == cid
    assert len(doc["revisions"]) == n_history > 1
    assert [r["revision"] for r in doc["revisions"]][-1] == best["revision"]
    assert sorted(o["channel"] for o in doc["outbox"]) == channels
    assert {"kafka", "slack"} <= set(channels)
    text = run(db, capsys, "show", cid[:8])
    assert f"coincidence      {cid}" in text
    sections = text.split("\n\n")
    assert [s.splitlines()[0] for s in sections[1:]] == ["detections", "revisions", "outbox"]
    assert len(sections[2].splitlines()) == n_history + 2  # title and header
    assert len(sections[1].splitlines()) == len(doc["record"]["detections"]) + 2


def test_outbox_filters_and_limit(db: tuple[list[str], Engine],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    with db[1].connect() as conn:
        n = conn.execute(select(func.count()).select_from(outbox).where(
            outbox.c.channel == "slack", outbox.c.status == "pending")).scalar_one()
    rows = jsonl(run(db, capsys, "outbox", "--status", "pending", "--channel", "slack",
                     "--limit", "1000", "--json"))
    assert len(rows) == n > 3
    assert {(r["channel"], r["status"]) for r in rows} == {("slack", "pending")}
    table = run(db, capsys, "outbox", "--limit", "3").splitlines()
    assert len(table) == 4 and "next attempt" in table[0]
    status = json.loads(run(db, capsys, "status", "--json"))
    slack = next(c for c in status["outbox"] if c["channel"] == "slack")
    assert slack["pending"] == n and slack["sent"] == 0
    assert [a["source"] for a in status["alerts"]] == ["ZTF"]
    assert status["notices"][0]["source"] == "lvk" and status["notices"][0]["count"] == 4


def test_dead_letters_escaped_hashed_and_counted(db: tuple[list[str], Engine],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    raw = b"\x00not a notice" + HOSTILE.encode()
    for n in range(3):
        add_dead_letter(db[1], source="lvk", origin=f"topic{HOSTILE}:0:{n}",
                        error=ValueError(f"bad {n}{HOSTILE}"), raw=raw)
    add_dead_letter(db[1], source="ztf", origin=None, error=KeyError("x"), raw=b"{}")
    rows = jsonl(run(db, capsys, "dead-letters", "--json"))
    assert len(rows) == 4 and "raw" not in rows[0]
    assert rows[-1]["sha256"] == hashlib.sha256(raw).hexdigest() and rows[-1]["size"] == len(raw)
    text = run(db, capsys, "dead-letters", "--limit", "2")
    assert_clean(text)
    lines = text.splitlines()
    assert len([x for x in lines[1:] if x and x[0].isdigit()]) == 2
    assert lines[-2:] == ["ValueError  3", "KeyError    1"]
    assert HOSTILE_SHOWN[:20] in text
    status = run(db, capsys, "status")
    assert "dead letters: 4" in status and "ValueError  3" in status


def test_tables_escape_stored_text(db: tuple[list[str], Engine],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    with db[1].begin() as conn:
        conn.execute(update(events).where(events.c.event_id == "S261120ab")
                     .values(event_id=f"S1{HOSTILE}", instrument=f"I{HOSTILE}"))
    open_window(db[1], f"S1{HOSTILE}")
    for args in (("events",), ("status",), ("candidates", f"S1{HOSTILE}")):
        out = run(db, capsys, *args)
        assert_clean(out)
    assert f"S1{HOSTILE_SHOWN}" in run(db, capsys, "events")


def test_coincidences_of_both_events(db: tuple[list[str], Engine],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """GW170817 x GRB 170817A listed from either event (Δt from the event asked about),
    as a table and as the stored record; a hostile stored pair stays one short line."""
    from tests.test_joint_message import HOSTILE_ID, gw170817_grb, store_pair

    record = store_pair(db[1])
    [gw_line] = run(db, capsys, "coincidences", "G298048").splitlines()[1:]
    assert gw_line.split()[:4] == ["FermiGBM-524666471", "GW", "x", "GRB"]
    assert " +2.0 " in gw_line and " 32.5 " in gw_line
    assert "1.2e-20 Hz (1 per 2.64e+12 yr)" in gw_line
    assert "3.7e-22 Hz (1 per 8.56e+13 yr)" in gw_line and "6f1c1f6e" in gw_line
    [grb_line] = run(db, capsys, "coincidences", "FermiGBM-524666471").splitlines()[1:]
    assert grb_line.startswith("G298048 ") and " -2.0 " in grb_line
    [found] = jsonl(run(db, capsys, "coincidences", "G298048", "--json"))
    assert found == {**record, "status": "active", "revision": 1}
    assert run(db, capsys, "coincidences", "S261120ab").splitlines()[1:] == []
    hostile = gw170817_grb() | {"coincidence_id": "hostile-pair", "dt_s": "soon",
                                "other": {"event_id": HOSTILE_ID + "\x1b[2J"},
                                "overlap_integral": None, "temporal_far_hz": -1}
    with db[1].begin() as conn:
        pk = conn.execute(select(events.c.id).where(events.c.event_id == "G298048")).scalar()
        conn.execute(insert(coincidences).values(
            coincidence_id="hostile-pair", event_pk=pk, other_event_pk=pk, status="active",
            vetoed=False, revision=1, payload=hostile))
    lines = run(db, capsys, "coincidences", "G298048").splitlines()
    assert len(lines) == 3 and all(len(line) < 400 for line in lines)
    assert_clean("\n".join(lines))


def test_candidates_of_an_event_with_only_a_pair(db: tuple[list[str], Engine],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_joint_message import store_pair

    store_pair(db[1])
    assert run(db, capsys, "candidates", "G298048").splitlines()[1:] == []
