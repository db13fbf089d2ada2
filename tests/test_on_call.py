"""A night on call, end to end: what a person sees and does after notices and alerts arrive.

The bundled sample is ingested into a database with the Kafka channel on (its broker
unreachable, so deliveries wait in the outbox), then the commands an astronomer runs
are driven one after another, each checked against the others and against the
database, and the event page is opened in a real headless Chromium: it must show
the same ranked candidates as ``mma candidates``, in the same order, and say that
the event is muted after ``mma mute``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mma.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "mma" / "data" / "sample"
EVENT = "S261120ab"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.browser


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """``mma argv`` in this process; its stdout (asserting exit status 0)."""
    capsys.readouterr()
    status = main(list(argv))
    out = capsys.readouterr()
    assert status == 0, f"mma {' '.join(argv)} exited {status}: {out.err}"
    return out.out


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def night(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> str:
    """The sample stored in a fresh SQLite database, deliveries queued for Kafka."""
    monkeypatch.setenv("MMA_PATHS__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MMA_PATHS__CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MMA_CHANNELS__KAFKA__ENABLED", "true")
    monkeypatch.setenv("MMA_CHANNELS__KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    db = f"sqlite:///{tmp_path / 'night.sqlite'}"
    _run(capsys, "ingest", str(SAMPLE), "--db", db)
    return db


def test_the_commands_and_the_page_tell_one_story(
        night: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        browser: Any) -> None:
    db = ("--db", night)
    # What is there: both events, the retracted one said so, nothing dead-lettered.
    events = {e["event_id"]: e for e in _json_lines(_run(capsys, "events", *db, "--json"))}
    assert set(events) == {"S261120ab", "S261121cd"}
    assert events["S261121cd"]["status"] == "retracted"
    assert _json_lines(_run(capsys, "dead-letters", *db, "--json")) == []

    # The event's candidates, best first, and the status agreeing with them.
    ranked = _json_lines(_run(capsys, "candidates", EVENT, *db, "--json"))
    live = [c for c in ranked if c["status"] in ("active", "updated") and not c["vetoed"]]
    assert len(live) >= 2 and [c["rank"] for c in live] == list(range(1, len(live) + 1))
    assert events[EVENT]["n_live"] == len(live)
    status = json.loads(_run(capsys, "status", *db, "--json"))
    kafka = next(c for c in status["outbox"] if c["channel"] == "kafka")
    assert kafka["pending"] == len(live) and kafka["sent"] == 0

    # The best one in detail: its history, and what mma check says of its position.
    best = live[0]
    shown = _run(capsys, "show", best["coincidence_id"][:8], *db)
    assert best["object_id"] in shown and "revisions" in shown
    detail = json.loads(_run(capsys, "show", best["coincidence_id"], *db, "--json"))
    first = detail["record"]["first_detection"]
    check = json.loads(_run(capsys, "check", EVENT, str(best["ra_deg"]), str(best["dec_deg"]),
                            first, *db, "--json"))
    assert check["credible_level"] == pytest.approx(best["credible_level"], abs=1e-6)
    assert check["inside"] is True

    # A picture of the region with the candidates, for the night's log.
    picture = tmp_path / "region.png"
    _run(capsys, "picture", EVENT, "--candidate", best["coincidence_id"], "-o", str(picture),
         *db)
    assert picture.read_bytes().startswith(PNG_MAGIC)

    # Mute the event, and resend the best candidate to Kafka by hand.
    _run(capsys, "mute", EVENT, *db)
    muted = {e["event_id"]: e for e in _json_lines(_run(capsys, "events", *db, "--json"))}
    assert muted[EVENT]["muted_at"] is not None
    _run(capsys, "resend", best["coincidence_id"], "--channel", "kafka", *db)
    rows = _json_lines(_run(capsys, "outbox", "--channel", "kafka", *db, "--json"))
    assert sum(r["coincidence_id"] == best["coincidence_id"] for r in rows) == 2

    # The event page shows the same candidates in the same order, and the mute.
    pages = tmp_path / "pages"
    _run(capsys, "page", EVENT, "-o", str(pages), *db)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto((pages / "events" / EVENT / "index.html").resolve().as_uri())
        page.wait_for_load_state("load")
        objects = page.evaluate("""Array.from(document.querySelectorAll(
            '#candidates tbody tr')).map(r => r.innerText)""")
        assert len(objects) == len(live)
        for row, candidate in zip(objects, live, strict=True):
            assert candidate["object_id"] in row
        assert page.locator("#muted").count() == 1
        assert page.locator("#retracted").count() == 0
    finally:
        page.close()
