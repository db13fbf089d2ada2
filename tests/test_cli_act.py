"""The acting commands on the bundled sample, ingested for real: mute and unmute (and their
effect on mma.outbox.enqueue), resend, check and picture; and the whole set on PostgreSQL."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine, select, update

from mma.channels import enabled_channels
from mma.cli import main
from mma.config import load_config
from mma.db.engine import make_engine
from mma.db.schema import coincidences, events, outbox
from mma.delivery import region_loader
from mma.emitters.picture import render_region_png
from mma.outbox import enqueue
from tests.test_cli_look import db, ingest_sample, ingested, jsonl, run

__all__ = ("db", "ingested")  # fixtures shared with tests.test_cli_look

EVENT = "S261120ab"


def best(dbx: tuple[list[str], Engine], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The event's rank-1 candidate as ``mma candidates --json`` gives it."""
    return jsonl(run(dbx, capsys, "candidates", EVENT, "--json"))[0]


def deliveries(engine: Engine, event_id: str = EVENT) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(
            select(outbox.c.id, outbox.c.coincidence_id, outbox.c.channel, outbox.c.status,
                   outbox.c.last_error, outbox.c.revision, outbox.c.payload["kind"].as_string()
                   .label("kind"))
            .join(coincidences, coincidences.c.coincidence_id == outbox.c.coincidence_id)
            .join(events, events.c.id == coincidences.c.event_pk)
            .where(events.c.event_id == event_id).order_by(outbox.c.id)))


def channels_of(dbx: tuple[list[str], Engine]) -> dict[str, Any]:
    return enabled_channels(load_config(dbx[0][1]))


def test_mute_parks_and_stops_human_deliveries_but_not_retractions(
        db: tuple[list[str], Engine], capsys: pytest.CaptureFixture[str]) -> None:
    engine = db[1]
    before = deliveries(engine)
    slack = [r for r in before if r.channel == "slack" and r.status == "pending"]
    waiting = [r.id for r in slack if r.kind != "retraction"]
    retractions = [r.id for r in slack if r.kind == "retraction"]
    kafka = [(r.id, r.status) for r in before if r.channel == "kafka"]
    assert waiting and retractions and kafka
    out = run(db, capsys, "mute", EVENT)
    assert f"{len(waiting)} waiting deliveries to people parked" in out
    after = {r.id: r for r in deliveries(engine)}
    assert all(after[i].status == "parked" and after[i].last_error == "muted" for i in waiting)
    assert all(after[i].status == "pending" for i in retractions)  # still told
    assert [(i, after[i].status) for i, _ in kafka] == kafka  # the machines still get it
    assert [e["muted_at"] is not None for e in jsonl(run(db, capsys, "events", "--json"))
            if e["event_id"] == EVENT] == [True]
    cid = best(db, capsys)["coincidence_id"]
    channels = channels_of(db)
    now = datetime.now(UTC)
    with engine.begin() as conn:  # a new revision while muted: Kafka only
        enqueue(conn, channels, [cid], now)
    new = [r for r in deliveries(engine) if r.id not in after]
    assert [(r.channel, r.coincidence_id) for r in new] == [("kafka", cid)]
    # A retraction of what Slack was told still reaches Slack.
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == waiting[0]).values(status="sent"))
        told = conn.execute(select(outbox.c.coincidence_id)
                            .where(outbox.c.id == waiting[0])).scalar_one()
        conn.execute(update(coincidences).where(coincidences.c.coincidence_id == told)
                     .values(status="retracted"))
        enqueue(conn, channels, [told], now)
    latest = [r for r in deliveries(engine) if r.coincidence_id == told][-2:]
    assert {r.channel for r in latest} == {"kafka", "slack"}
    assert all(r.status == "pending" for r in latest)
    assert "unmuted" in run(db, capsys, "unmute", EVENT)
    assert "was not muted" in run(db, capsys, "unmute", EVENT)
    with engine.begin() as conn:
        enqueue(conn, channels, [cid], now)
    assert {r.channel for r in deliveries(engine)[-2:]} == {"kafka", "slack"}


def test_resend_queues_the_latest_revision(db: tuple[list[str], Engine],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    engine = db[1]
    cid, revision = best(db, capsys)["coincidence_id"], best(db, capsys)["revision"]
    opts, url = db[0], str(engine.url)
    assert main([*opts, "resend", cid, "--db", url]) == 1  # nothing was sent yet
    assert "name one with --channel" in capsys.readouterr().err
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.coincidence_id == cid,
                                          outbox.c.channel == "kafka")
                     .values(status="sent"))
    [queued] = jsonl(run(db, capsys, "resend", cid[:12], "--json"))
    assert (queued["channel"], queued["revision"], queued["coincidence_id"]) == (
        "kafka", revision, cid)
    with engine.connect() as conn:
        row = conn.execute(select(outbox).where(outbox.c.id == queued["outbox_id"])).one()
        sent = conn.execute(select(outbox.c.payload).where(
            outbox.c.coincidence_id == cid, outbox.c.revision == revision,
            outbox.c.status == "sent")).scalars().first()
    assert row.status == "pending" and row.attempts == 0 and row.payload == sent
    slack_before = [r for r in deliveries(engine) if r.coincidence_id == cid
                    and r.channel == "slack" and r.status == "pending"]
    out = run(db, capsys, "resend", cid, "--channel", "slack")
    assert " slack" in out.splitlines()[1] and cid in out
    slack_after = [r for r in deliveries(engine) if r.coincidence_id == cid
                   and r.channel == "slack" and r.status == "pending"]
    assert len(slack_after) == 1 and slack_after[0].id not in {r.id for r in slack_before}
    assert main([*opts, "resend", cid, "--channel", "email", "--db", url]) == 1
    assert "not enabled" in capsys.readouterr().err


def test_check_scores_a_position_as_the_scorer_does(db: tuple[list[str], Engine],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    record = json.loads(run(db, capsys, "show", best(db, capsys)["coincidence_id"],
                            "--json"))["record"]
    assert record["n_prior_detections"] == 0  # a new object: what check assumes
    doc = json.loads(run(db, capsys, "check", EVENT, str(record["ra"]), str(record["dec"]),
                         record["first_detection_after_t0"], "--json"))
    assert doc["prob_density_sr"] == pytest.approx(record["prob_density_sr"], rel=1e-6)
    assert doc["credible_level"] == pytest.approx(record["credible_level"], abs=1e-6)
    assert doc["inside"] and doc["in_window"] and doc["in_map"]
    assert doc["log_bayes_factor"] == pytest.approx(record["log_bayes_factor"], abs=1e-6)
    assert doc["p_chance"] == pytest.approx(record["p_chance"], abs=1e-9)
    far = json.loads(run(db, capsys, "check", EVENT, str(record["ra"] + 180.0), "-60",
                         "2027-03-01T00:00:00Z", "--json"))
    assert not far["inside"] and not far["in_window"]
    assert far["log_bayes_factor"] < record["log_bayes_factor"] - 100
    table = run(db, capsys, "check", EVENT, str(record["ra"]), str(record["dec"]))
    assert "credible level" in table and "ln B (new object)" in table
    assert main([*db[0], "check", EVENT, "10", "95", "--db", str(db[1].url)]) == 1


def yellow(png: bytes) -> int:
    """Pixels of the marks' colour (#ffd000, give or take antialiasing)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(np.sum((rgb[..., 0] > 230) & (rgb[..., 1] > 190) & (rgb[..., 1] < 225)
                      & (rgb[..., 2] < 40)))


def test_picture_marks_the_ranked_candidates(db: tuple[list[str], Engine], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    ranked = [c for c in jsonl(run(db, capsys, "candidates", EVENT, "--json")) if c["rank"]]
    out = tmp_path / "region.png"
    assert f"{len(ranked)} candidates marked" in run(db, capsys, "picture", EVENT, "-o", str(out))
    assert yellow(out.read_bytes()) > 50
    top = ranked[0]["coincidence_id"]
    run(db, capsys, "picture", EVENT, "--candidate", top[:8], "-o", str(out))
    assert Image.open(out).size == (600, 640)
    # marks= draws; without it the picture is the one emails always had.
    with db[1].connect() as conn:
        pk = conn.execute(select(coincidences.c.region_pk)
                          .where(coincidences.c.coincidence_id == top)).scalar_one()
    region = region_loader(db[1])(pk)
    assert region is not None
    plain = render_region_png(region, ra_deg=ranked[0]["ra_deg"], dec_deg=ranked[0]["dec_deg"],
                              title="t")
    assert plain == render_region_png(region, ra_deg=ranked[0]["ra_deg"],
                                      dec_deg=ranked[0]["dec_deg"], title="t", marks=())
    assert yellow(plain) == 0
    assert main([*db[0], "picture", "S261121cd", "--candidate", top, "-o", str(out),
                 "--db", str(db[1].url)]) == 1
    assert "not a candidate of S261121cd" in capsys.readouterr().err
    retracted = next(c["coincidence_id"] for c in jsonl(run(db, capsys, "candidates", EVENT,
                                                             "--json"))
                     if c["status"] == "retracted")
    assert f"{len(ranked)} candidates marked" in run(
        db, capsys, "picture", EVENT, "--candidate", retracted, "-o", str(out))


def test_commands_on_postgresql(postgres_url: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    conf, _ = ingest_sample(tmp_path, postgres_url)
    engine = make_engine(postgres_url)
    try:
        pg = (["-c", conf], engine)
        names = [e["event_id"] for e in jsonl(run(pg, capsys, "events", "--json"))]
        assert names == ["S261121cd", EVENT]
        top = best(pg, capsys)
        assert top["rank"] == 1
        shown = json.loads(run(pg, capsys, "show", top["coincidence_id"][:8], "--json"))
        assert shown["candidate"]["coincidence_id"] == top["coincidence_id"]
        assert len(shown["revisions"]) >= 1 and shown["outbox"]
        parked = [r.id for r in deliveries(engine) if r.channel == "slack"
                  and r.status == "pending" and r.kind != "retraction"]
        assert f"{len(parked)} waiting" in run(pg, capsys, "mute", EVENT)
        assert {r.status for r in deliveries(engine) if r.id in parked} == {"parked"}
        [queued] = jsonl(run(pg, capsys, "resend", top["coincidence_id"], "--channel",
                             "slack", "--json"))
        assert queued["revision"] == top["revision"]
        status = json.loads(run(pg, capsys, "status", "--json"))
        slack = next(c for c in status["outbox"] if c["channel"] == "slack")
        assert slack["parked"] == len(parked) and slack["last_error"] == "muted"
        assert status["alerts"][0]["count"] > 0 and status["notices"][0]["count"] == 4
    finally:
        engine.dispose()


def test_mute_waits_for_a_batch_writing_the_event_and_parks_what_it_queued(
        postgres_url: str, tmp_path: Path) -> None:
    """A mute while an alert batch is writing the event's candidates (it holds the event's
    lock) waits for the batch to commit, then parks the deliveries the batch queued: no
    person hears of the event after the mute returned."""
    from mma.db import locks
    from mma.db.actions import mute

    ingest_sample(tmp_path, postgres_url)
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            pk, cid = conn.execute(
                select(events.c.id, coincidences.c.coincidence_id)
                .join(coincidences, coincidences.c.event_pk == events.c.id)
                .where(events.c.event_id == EVENT).limit(1)).one()
        done = threading.Event()
        batch = engine.connect()
        txn = batch.begin()
        locks.share_regions(batch)
        locks.lock_events(batch, [pk])  # a batch in flight on the event

        def muter() -> None:
            with engine.begin() as conn:
                mute(conn, pk, datetime.now(UTC))
            done.set()

        thread = threading.Thread(target=muter)
        thread.start()
        assert not done.wait(1.0), "mute did not wait for the event's writer"
        queued = batch.execute(outbox.insert().values(
            coincidence_id=cid, revision=1, channel="slack", status="pending", attempts=0,
            payload={"kind": "update"}, next_attempt_at=datetime.now(UTC),
            created_at=datetime.now(UTC)).returning(outbox.c.id)).scalar_one()
        txn.commit()
        batch.close()
        thread.join(30)
        assert done.is_set()
        assert {r.id: (r.status, r.last_error) for r in deliveries(engine)}[queued] == (
            "parked", "muted")
    finally:
        engine.dispose()
