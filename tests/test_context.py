"""A candidate's context: cutouts stored with its alerts, its light curve and stamps read back.

The round trip replays the bundled sample (ZTF-like packets, the sources placed in the
regions carrying stamps) with ``mma replay`` on SQLite and on the real PostgreSQL
server, and checks what :func:`mma.db.context.candidate_context` returns against the
packets themselves, decoded here with fastavro.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import fastavro
import pytest
from sqlalchemy import Engine, func, select

from mma.cli import main
from mma.config import Config, load_config
from mma.db import alert_store
from mma.db.bulk import add_cutouts
from mma.db.context import LIGHT_CURVE_CAP, Stamp, candidate_context, object_context
from mma.db.engine import make_engine
from mma.db.schema import alerts, coincidences, cutouts, events
from mma.emitters.stamps import render_stamps_png
from mma.handlers import rubin, ztf
from mma.ingest.alerts import Vetters
from mma.models import Alert

SAMPLE = Path(__file__).resolve().parents[1] / "mma" / "data" / "sample"
PNG = b"\x89PNG\r\n\x1a\n"
T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def _packets() -> dict[str, dict[str, Any]]:
    """The sample's packets by candid (as the alert id), decoded independently of mma."""
    with (SAMPLE / "ztf-sample-alerts.avro").open("rb") as fh:
        return {str(p["candid"]): p for p in cast(Iterator[dict[str, Any]],
                                                  fastavro.reader(fh))}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def replayed(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The sample replayed once per database with ``mma replay``."""
    tmp = tmp_path_factory.mktemp("context")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'sample.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    assert main(["replay", str(SAMPLE), "--output", str(tmp / "out.jsonl"), "--db", url]) == 0
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _first_notices() -> dict[str, datetime]:
    """Creation time of each sample event's first notice (when it becomes active), UTC."""
    out = {}
    for name in ("S261120ab", "S261121cd"):
        notice = json.loads((SAMPLE / f"{name}-preliminary.json").read_text())
        out[name] = datetime.fromisoformat(notice["time_created"])
    return out


@pytest.mark.slow  # the sample replayed once per database (~15 s)
def test_candidates_get_their_objects_light_curve_and_newest_stamps(replayed: Engine) -> None:
    packets, active_from = _packets(), _first_notices()
    with replayed.connect() as conn:
        rows = conn.execute(select(coincidences.c.coincidence_id, coincidences.c.object_pk,
                                   events.c.event_id).join_from(
            coincidences, events, events.c.id == coincidences.c.event_pk)).all()
        assert len(rows) >= 8
        with_stamps = 0
        for cid, object_pk, event_id in rows:
            context = candidate_context(conn, cid)
            assert context is not None and context.object_pk == object_pk
            stored = conn.execute(select(alerts.c.alert_id, alerts.c.time).where(
                alerts.c.object_pk == object_pk).order_by(alerts.c.time)).all()
            assert [p.alert_id for p in context.light] == [r.alert_id for r in stored]
            times = [p.time for p in context.light]
            assert times == sorted(times) and all(t.utcoffset() == timedelta(0) for t in times)
            for point in context.light:
                cand = packets[point.alert_id]["candidate"]
                assert point.magnitude == pytest.approx(cand["magpsf"], abs=1e-4)
                assert point.band == {1: "g", 2: "r"}[cand["fid"]]
            # Stamps are kept for vetted alerts of objects that are candidates when the
            # alert arrives: those after the event's first notice (others were back-matched).
            kept = [p for p in context.light if p.vetted and p.time > active_from[event_id]
                    and packets[p.alert_id]["cutoutScience"]]
            if not kept:
                assert context.stamps == {} and context.stamps_alert_id is None
                continue
            with_stamps += 1
            assert context.stamps_alert_id == kept[-1].alert_id
            packet = packets[kept[-1].alert_id]
            assert list(context.stamps) == ["science", "template", "difference"]
            for kind, stamp in context.stamps.items():
                assert stamp.format == "fits.gz"
                assert stamp.data == packet[f"cutout{kind.title()}"]["stampData"]
            png = render_stamps_png(context.stamps, title=cid)
            assert png is not None and png.startswith(PNG)
        assert with_stamps >= 5  # the sources placed in S261120ab after its merger
        assert candidate_context(conn, "no-such-candidate") is None


@pytest.mark.slow
def test_alerts_failing_vetting_store_no_cutouts(replayed: Engine) -> None:
    packets = _packets()
    with replayed.connect() as conn:
        failed = conn.execute(select(alerts.c.alert_id).where(
            alerts.c.passes_vetting.is_(False))).scalars().all()
        # The sample's bogus, asteroid and star sources carry stamps in their packets...
        assert sum(1 for a in failed if packets[a]["cutoutScience"]) >= 3
        # ...that are not stored.
        assert conn.execute(select(func.count()).select_from(cutouts.join(
            alerts, alerts.c.id == cutouts.c.alert_pk)).where(
            alerts.c.passes_vetting.is_(False))).scalar_one() == 0
        kept = conn.execute(select(func.count()).select_from(cutouts)).scalar_one()
        assert kept > 0 and kept % 3 == 0


def test_only_vetted_alerts_of_candidates_keep_their_stamps(db_url: str, tmp_path: Path) -> None:
    """Four sample packets with stamps, one notice: only the vetted ones that match keep them.

    601 and 602 (one object, in S261120ab after t0, vetted), 610 (in the region, fails
    vetting: rb 0.2), 613 (vetted, but in S261121cd, whose notice is not replayed).
    """
    with (SAMPLE / "ztf-sample-alerts.avro").open("rb") as fh:
        reader = fastavro.reader(fh)
        schema = reader.writer_schema
        chosen = [p for p in cast(Iterator[dict[str, Any]], reader)
                  if str(p["candid"])[-3:] in ("601", "602", "610", "613")]
    assert len(chosen) == 4 and all(p["cutoutScience"] for p in chosen)
    folder = tmp_path / "in"
    folder.mkdir()
    with (folder / "alerts.avro").open("wb") as fh:
        fastavro.writer(fh, schema, chosen)
    notice = SAMPLE / "S261120ab-preliminary.json"
    (folder / notice.name).write_bytes(notice.read_bytes())
    assert main(["replay", str(folder), "--output", str(tmp_path / "out.jsonl"),
                 "--db", db_url]) == 0
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            kept = conn.execute(select(alerts.c.alert_id, func.count()).join_from(
                cutouts, alerts, alerts.c.id == cutouts.c.alert_pk).group_by(
                alerts.c.alert_id)).all()
            n_alerts = conn.execute(select(func.count()).select_from(alerts)).scalar_one()
    finally:
        engine.dispose()
    assert n_alerts == 4
    assert sorted((a[-3:], n) for a, n in kept) == [("601", 3), ("602", 3)]


def _alert(alert_id: str, hours: float, *, cutouts: dict[str, tuple[str, bytes]] | None = None,
           magnitude: float | None = 19.0, object_id: str = "ZTF26aaaaaaa") -> Alert:
    return Alert(alert_id=alert_id, object_id=object_id, survey="ZTF", ra_deg=150.0,
                 dec_deg=25.0, time=T0 + timedelta(hours=hours), band="g",
                 magnitude=magnitude, magnitude_err=0.1, cutouts=cutouts or {})


def _store(engine: Engine, batch: list[Alert], vetoes: list[list[str]] | None = None,
           max_bytes: int = 2**18) -> list[int]:
    """Store *batch* and the cutouts of its vetted alerts; their alerts.id."""
    vetoes = vetoes or [[] for _ in batch]
    with engine.begin() as conn:
        stored = alert_store.add_alerts(conn, batch, hpx29=[0] * len(batch), vetoes=vetoes)
        pks = [s.alert_pk for s in stored if s is not None]
        add_cutouts(conn, [(pk, a) for pk, a, why in zip(pks, batch, vetoes, strict=True)
                           if not why], max_bytes=max_bytes)
    return pks


def test_a_stamp_above_the_cap_is_not_stored(engine: Engine,
                                             caplog: pytest.LogCaptureFixture) -> None:
    small, large = b"\x1f\x8b" + bytes(98), b"SIMPLE  =" + bytes(4991)
    alert = _alert("1", 1, cutouts={"science": ("fits.gz", small), "template": ("fits", large)})
    with caplog.at_level(logging.WARNING, logger="mma.db.bulk"):
        [pk] = _store(engine, [alert], max_bytes=1000)
    with engine.connect() as conn:
        rows = conn.execute(select(cutouts.c.kind, cutouts.c.format, cutouts.c.data).where(
            cutouts.c.alert_pk == pk)).all()
    assert [(r.kind, r.format, bytes(r.data)) for r in rows] == [("science", "fits.gz", small)]
    assert "ZTF 1: template cutout of 5000 bytes is above the cap of 1000" in caplog.text


def test_the_cap_is_read_from_the_configuration(tmp_path: Path, config: Config) -> None:
    assert Vetters(config).max_cutout_bytes == 262144
    custom = load_config(environ={"MMA_PATHS__STATE_DIR": str(tmp_path),
                                  "MMA_LIMITS__MAX_CUTOUT_BYTES": "1000"},
                         system_file=tmp_path / "absent.toml")
    assert Vetters(custom).max_cutout_bytes == 1000


def test_light_curve_is_the_newest_alerts_oldest_first(engine: Engine) -> None:
    stamps = {"science": ("fits", b"SIMPLE  = old")}
    batch = [_alert(str(i), hours=i, cutouts=stamps if i == 2 else None,
                    magnitude=None if i == 3 else 18.0 + i) for i in range(6)]
    vetoes = [["rb"] if i == 4 else [] for i in range(6)]
    _store(engine, batch, vetoes)
    with engine.connect() as conn:
        object_pk = conn.execute(select(alerts.c.object_pk)).scalars().first()
        assert object_pk is not None
        full = object_context(conn, object_pk)
        capped = object_context(conn, object_pk, cap=3)
    assert [p.alert_id for p in full.light] == ["0", "1", "2", "3", "4", "5"]
    assert [p.alert_id for p in capped.light] == ["3", "4", "5"]
    assert [p.vetted for p in full.light] == [True, True, True, True, False, True]
    assert full.light[3].magnitude is None and full.light[5].magnitude == 23.0
    # Alert 2 is the newest with stamps (5 and 4 carry none).
    assert full.stamps_alert_id == "2"
    assert full.stamps == {"science": Stamp("science", "fits", b"SIMPLE  = old")}
    assert LIGHT_CURVE_CAP >= 1000


def test_an_object_without_stamps_has_an_empty_mapping(engine: Engine) -> None:
    _store(engine, [_alert("1", 1), _alert("2", 2, cutouts={"science": ("fits", b"x")})],
           [[], ["rb"]])
    with engine.connect() as conn:
        object_pk = conn.execute(select(alerts.c.object_pk)).scalars().first()
        assert object_pk is not None
        context = object_context(conn, object_pk)
    assert context.stamps == {} and context.stamps_alert_id is None
    assert len(context.light) == 2


def test_handlers_keep_the_packets_stamps(corpus: Path) -> None:
    path = corpus / "alerts/ztf/avro/ZTF18abudxnw_2695378462115010012.avro"
    raw = path.read_bytes()
    with path.open("rb") as fh:
        packet = cast(dict[str, Any], next(fastavro.reader(fh)))
    alert = ztf.parse(raw, topic="ztf")
    assert {k: v[0] for k, v in alert.cutouts.items()} == {
        "science": "fits.gz", "template": "fits.gz", "difference": "fits.gz"}
    assert alert.cutouts["difference"][1] == packet["cutoutDifference"]["stampData"]
    frame = corpus / "alerts/rubin/avro/lsst_v9_0_7912941781254298.confluent.avro"
    lsst = rubin.parse(frame.read_bytes(), topic="lsst-alerts-v9")
    assert sorted(lsst.cutouts) == ["difference", "science", "template"]
    assert all(fmt == "fits" and data.startswith(b"SIMPLE  =")
               for fmt, data in lsst.cutouts.values())
    # Stamps are not part of an alert's identity, nor of its repr.
    assert alert == ztf.alert_from_packet({**packet, "cutoutScience": None})
    assert "stampData" not in repr(alert) and "SIMPLE" not in repr(lsst)
