"""Event pages written from the replayed sample, opened in a real headless Chromium.

The sample (``mma/data/sample``) is replayed once into a SQLite database; the
pages are written by ``mma page`` / :func:`mma.page.write_index` and opened via
``file://``. The browser tests save a full-page screenshot of the event page to
``tests/output/event-page.png``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from mma.cli import main
from mma.config import Config, load_config
from mma.db.engine import make_engine
from mma.db.schema import coincidences, events
from mma.page import write_index
from mma.service.pages import PageJob

SAMPLE = Path(__file__).resolve().parents[1] / "mma" / "data" / "sample"
OUTPUT = Path(__file__).resolve().parent / "output"
SCREENSHOT = OUTPUT / "event-page.png"
MMA = str(Path(sys.executable).with_name("mma"))
EVIL = "<script>window.__xss=1;alert('x')</script>\"'><img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file holding the replayed sample (read-only: tests copy it to change it)."""
    where = tmp_path_factory.mktemp("sample")
    db = where / "sample.sqlite"
    assert main(["replay", str(SAMPLE), "--db", f"sqlite:///{db}",
                 "--output", str(where / "out.jsonl")]) == 0
    return db


def _copy(sample_db: Path, tmp_path: Path) -> str:
    db = tmp_path / "copy.sqlite"
    shutil.copyfile(sample_db, db)
    return f"sqlite:///{db}"


def _write(url: str, event_id: str, out: Path) -> Path:
    assert main(["page", event_id, "--db", url, "-o", str(out)]) == 0
    return out / "events" / event_id / "index.html"


def _live_ranked(url: str, event_id: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(coincidences).join(
            events, events.c.id == coincidences.c.event_pk).where(
            events.c.event_id == event_id, coincidences.c.status.in_(("active", "updated")),
            coincidences.c.rank.is_not(None))).scalar_one()
    engine.dispose()
    return int(n)


def _column(page: Any, col: str) -> list[float]:
    index = page.evaluate(f"""Array.from(document.querySelectorAll('#candidates thead th'))
                          .findIndex(th => th.dataset.col === '{col}')""")
    keys = page.evaluate(f"""Array.from(document.querySelectorAll('#candidates tbody tr'))
                         .map(r => r.cells[{index}].dataset.sort)""")
    return [float(k) for k in keys]


def _open(browser: Any, path: Path) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)
    problems: list[str] = []

    def dialog(d: Any) -> None:
        problems.append(f"dialog: {d.message}")
        d.dismiss()

    def console(m: Any) -> None:
        if m.type == "error":
            problems.append(f"console: {m.text}")

    page.on("dialog", dialog)
    page.on("pageerror", lambda e: problems.append(f"error: {e}"))
    page.on("console", console)
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, problems


@pytest.mark.browser
def test_event_page_renders_sorts_and_loads_images(sample_db: Path, tmp_path: Path,
                                                   browser: Any) -> None:
    url = f"sqlite:///{sample_db}"
    path = _write(url, "S261120ab", tmp_path / "pages")
    page, problems = _open(browser, path)
    assert "S261120ab" in page.title()
    assert page.inner_text("#event-id") == "S261120ab"
    n_live = _live_ranked(url, "S261120ab")
    assert n_live > 1
    assert page.locator("#candidates tbody tr").count() == n_live
    assert page.locator("#retracted").count() == 0

    for col in ("p_chance", "ln_b"):
        page.click(f'#candidates th[data-col="{col}"]')
        ascending = _column(page, col)
        assert ascending == sorted(ascending)
        page.click(f'#candidates th[data-col="{col}"]')
        descending = _column(page, col)
        assert descending == sorted(ascending, reverse=True)
        assert page.get_attribute(f'#candidates th[data-col="{col}"]',
                                  "aria-sort") == "descending"
    assert len(set(_column(page, "ln_b"))) > 1  # the ln B sort really reordered rows

    page.wait_for_function("Array.from(document.images).every(i => i.complete)",
                           timeout=30_000)
    widths = page.evaluate("Array.from(document.images).map(i => [i.src, i.naturalWidth])")
    assert len(widths) >= 1 + n_live  # the sky map and a light curve per ranked candidate
    assert all(width > 0 for _src, width in widths), widths
    assert page.locator("#sky").count() == 1
    assert page.locator('img[src^="lc-"]').count() >= n_live
    assert page.locator('img[src^="stamps-"]').count() >= 1  # the sample's packets have cutouts
    assert problems == []
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    print(f"screenshot: {SCREENSHOT}")
    page.close()


@pytest.mark.browser
def test_retracted_event_shows_its_banner(sample_db: Path, tmp_path: Path,
                                         browser: Any) -> None:
    path = _write(f"sqlite:///{sample_db}", "S261121cd", tmp_path / "pages")
    page, problems = _open(browser, path)
    banner = page.locator("#retracted")
    assert banner.is_visible() and "RETRACTED" in banner.inner_text()
    assert page.locator("#candidates tbody tr").count() == 0
    assert page.locator("#others tbody tr").count() > 0  # withdrawn candidates still listed
    assert problems == []
    page.close()


@pytest.mark.browser
def test_hostile_values_from_the_database_are_inert(sample_db: Path, tmp_path: Path,
                                                    browser: Any) -> None:
    url = _copy(sample_db, tmp_path)
    engine = make_engine(url)
    with engine.begin() as conn:
        row = conn.execute(select(coincidences.c.coincidence_id, coincidences.c.payload)
                           .where(coincidences.c.rank == 1)).one()
        payload = {**row.payload, "object_id": EVIL, "flags": [EVIL],
                   "classes": {EVIL: {"class": EVIL}}, "peak_band": EVIL}
        conn.execute(update(coincidences).where(
            coincidences.c.coincidence_id == row.coincidence_id).values(payload=payload))
    engine.dispose()
    page, problems = _open(browser, _write(url, "S261120ab", tmp_path / "pages"))
    assert problems == []  # no dialog, no script error
    assert page.evaluate("typeof window.__xss") == "undefined"
    first = page.locator("#candidates tbody tr").first
    assert first.locator("td").nth(1).inner_text() == EVIL
    assert EVIL in first.locator("td").nth(7).inner_text()
    assert page.locator("img[src=x]").count() == 0
    page.close()


@pytest.mark.browser
def test_index_links_to_the_pages_of_active_events(sample_db: Path, tmp_path: Path,
                                                  browser: Any) -> None:
    url = f"sqlite:///{sample_db}"
    out = tmp_path / "pages"
    _write(url, "S261120ab", out)
    engine = make_engine(url)
    # Two days after the sample's events: S261120ab's window is open, S261121cd retracted.
    index = write_index(engine, out, now=datetime(2026, 11, 22, tzinfo=UTC))
    engine.dispose()
    page, problems = _open(browser, index)
    assert page.locator("#events tbody tr").count() == 1
    page.click("#events tbody a")
    page.wait_for_load_state("load")
    assert page.inner_text("#event-id") == "S261120ab"
    assert problems == []
    page.close()


def _config(tmp_path: Path, **env: str) -> Config:
    return load_config(environ={"MMA_PATHS__STATE_DIR": str(tmp_path / "state"), **env},
                       system_file=tmp_path / "absent.toml")


@pytest.mark.slow
def test_page_job_rewrites_only_changed_events(sample_db: Path, tmp_path: Path) -> None:
    url = _copy(sample_db, tmp_path)
    engine = make_engine(url)
    config = _config(tmp_path)
    job = PageJob(engine, lambda: config, instance="t", overlap=timedelta(0))
    pages = tmp_path / "state" / "pages"
    assert job.run() == []  # no window open by the clock: only the index
    assert (pages / "index.html").is_file() and not (pages / "events").exists()
    with engine.begin() as conn:
        conn.execute(update(coincidences).where(coincidences.c.rank == 1)
                     .values(updated_at=datetime.now(UTC) + timedelta(seconds=1)))
    job.last_run = datetime.now(UTC)
    assert job.run(datetime.now(UTC) + timedelta(seconds=2)) == ["S261120ab"]
    assert (pages / "events" / "S261120ab" / "index.html").is_file()
    assert job.run(datetime.now(UTC) + timedelta(seconds=3)) == []  # nothing changed since
    job.failed = {"S261120ab"}  # written again in place: no temporary directory is left
    assert job.run() == ["S261120ab"]
    assert sorted(p.name for p in (pages / "events").iterdir()) == ["S261120ab"]
    assert sorted(p.name for p in pages.iterdir()) == [".cache", "events", "index.html"]
    engine.dispose()


@pytest.mark.slow
def test_a_page_written_again_draws_only_what_changed(
        sample_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pictures come from the cache when what they show is unchanged: a second page
    of the same event draws nothing, and shows the same pictures."""
    import mma.emitters.lightcurve
    import mma.emitters.picture
    import mma.emitters.stamps

    url = f"sqlite:///{sample_db}"
    first = _write(url, "S261120ab", tmp_path / "pages")
    pictures = sorted(p.name for p in first.parent.glob("*.png"))
    assert "sky.png" in pictures and any(p.startswith("lc-") for p in pictures)
    before = {p: (first.parent / p).read_bytes() for p in pictures}

    def refuse(*_a: Any, **_k: Any) -> bytes:
        raise AssertionError("drawn again although unchanged")

    for module, name in ((mma.emitters.lightcurve, "render_light_curve_png"),
                         (mma.emitters.stamps, "render_stamps_png"),
                         (mma.emitters.picture, "render_region_png")):
        monkeypatch.setattr(module, name, refuse)
    again = _write(url, "S261120ab", tmp_path / "pages")
    assert {p.name: p.read_bytes() for p in again.parent.glob("*.png")} == before


@pytest.mark.slow
def test_page_job_failure_is_logged_with_the_event_and_retried(
        sample_db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = _copy(sample_db, tmp_path)
    engine = make_engine(url)
    out = tmp_path / "pages"
    out.mkdir()
    (out / "events").write_text("not a directory")  # every event page fails to be written
    config = _config(tmp_path, MMA_PAGES__DIR=str(out))
    job = PageJob(engine, lambda: config, instance="t")
    job.last_run = datetime(2026, 1, 1, tzinfo=UTC)  # every event changed since
    with caplog.at_level(logging.ERROR, logger="mma.service.pages"):
        assert job.run() == []
    assert "event S261120ab: page not written" in caplog.text
    assert job.failed == {"S261120ab", "S261121cd"}
    assert (out / "index.html").is_file()  # the index does not depend on the pages
    (out / "events").unlink()
    assert job.run() == ["S261120ab", "S261121cd"]  # due again, though unchanged
    engine.dispose()


def test_page_command_refuses_an_unknown_event_and_a_missing_database(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    assert main(["db", "upgrade", "--db", empty]) == 0
    assert main(["page", "S000000zz", "--db", empty, "-o", str(tmp_path)]) == 1
    assert main(["page", "S261120ab", "--db", f"sqlite:///{tmp_path / 'absent.sqlite'}",
                 "-o", str(tmp_path)]) == 1
    assert not (tmp_path / "absent.sqlite").exists()
    assert "no event 'S000000zz'" in capsys.readouterr().err
    assert main(["pages", "--db", empty, "-o", str(tmp_path / "pages")]) == 0
    index = tmp_path / "pages" / "index.html"
    assert capsys.readouterr().out.strip() == str(index)
    assert "0 events whose window is open" in index.read_text()


@pytest.mark.slow
def test_page_of_the_sample_on_both_databases(db_url: str, tmp_path: Path) -> None:
    assert main(["replay", str(SAMPLE), "--db", db_url,
                 "--output", str(tmp_path / "out.jsonl")]) == 0
    out = tmp_path / "pages"
    assert main(["page", "S261120ab", "--db", db_url, "-o", str(out)]) == 0
    text = (out / "events" / "S261120ab" / "index.html").read_text()
    table = text.split('id="candidates"')[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + _live_ranked(db_url, "S261120ab")
    assert "RETRACTED" not in text and "Revision history" in text and "v2 (current)" in text
    assert main(["page", "S261121cd", "--db", db_url, "-o", str(out)]) == 0
    assert 'id="retracted"' in (out / "events" / "S261121cd" / "index.html").read_text()
    engine = make_engine(db_url)
    index = write_index(engine, out, now=datetime(2026, 11, 22, tzinfo=UTC)).read_text()
    engine.dispose()
    assert 'href="events/S261120ab/index.html"' in index and "S261121cd" not in index


@pytest.mark.daemon
@pytest.mark.slow
def test_daemon_writes_the_pages_of_the_events_it_changes(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    for path in SAMPLE.iterdir():
        (spool / path.name).write_bytes(path.read_bytes())
    env = {**os.environ, "MMA_DATABASE__URL": f"sqlite:///{tmp_path / 'd.sqlite'}",
           "MMA_PATHS__STATE_DIR": str(tmp_path), "MMA_PATHS__CACHE_DIR": str(tmp_path),
           "MMA_LOGGING__LEVEL": "WARNING", "MMA_KAFKA__NOTICE_TOPICS": json.dumps([]),
           "MMA_KAFKA__ALERT_TOPICS": json.dumps([]), "MMA_SKYMAPS__FETCH": "false",
           "MMA_DAEMON__SPOOL_DIR": str(spool), "MMA_DAEMON__SPOOL_INTERVAL_SECONDS": "0.5",
           "MMA_PAGES__MIN_INTERVAL_SECONDS": "1"}
    run = subprocess.run([MMA, "run", "--idle-exit", "12"], env=env, capture_output=True,
                         text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    pages = tmp_path / "pages"
    assert (pages / "index.html").is_file()
    retracted = (pages / "events" / "S261121cd" / "index.html").read_text()
    assert 'id="retracted"' in retracted
    assert (pages / "events" / "S261120ab" / "sky.png").stat().st_size > 0
    assert "page not written" not in run.stderr


def test_pages_of_both_events_of_a_pair_list_it(sample_db: Path, tmp_path: Path) -> None:
    """GW170817 x GRB 170817A stored as an event x event row: both events' pages have the
    "Coincident events" section (Δt from each) and do not count it as a candidate; an
    unpaired event's page has no such section."""
    from tests.test_joint_message import store_pair

    url = _copy(sample_db, tmp_path)
    engine = make_engine(url)
    store_pair(engine)
    engine.dispose()
    gw = _write(url, "G298048", tmp_path / "pages").read_text(encoding="utf-8")
    assert 'class="cand"' not in gw and "0 live ranked, 0 in all" in gw  # not a candidate
    grb = _write(url, "FermiGBM-524666471", tmp_path / "pages").read_text(encoding="utf-8")
    for text, other, dt in ((gw, "FermiGBM-524666471", "+2.0"), (grb, "G298048", "-2.0")):
        section = text[text.index("<h2>Coincident events</h2>"):text.index("<h2>Sky map")]
        assert f"<tr><td>{other}</td><td>GW x GRB</td>" in section
        assert f">{dt}</td>" in section
        assert "3.7e-22 Hz (1 per 8.56e+13 yr)" in section
    other = _write(url, "S261120ab", tmp_path / "pages").read_text(encoding="utf-8")
    assert "Coincident events" not in other
