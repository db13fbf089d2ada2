"""End to end: ``mma replay`` of a real IceCube notice and the real circular about it,
and of circulars about events never stored (attach-only: nothing is created)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mma.cli import main
from mma.config import load_config
from mma.db.engine import make_engine, upgrade
from mma.db.schema import dead_letters, event_aliases, events, notices
from mma.handlers import circulars, icecube
from mma.ingest import Pipeline
from tests.conftest import CORPUS

CIRCULARS = Path(__file__).resolve().parent / "data" / "circulars"
# IceCube-230416A, run 137840 event 57034692 (Bronze track, 2023-04-16T05:22:26Z).
ICECUBE = (CORPUS / "gcn-json/gcn-schema/icecube/"
           "single_neutrino_alerts.gold_bronze_track_alerts.example.json")


def _replay(tmp_path: Path, *paths: Path) -> dict[str, Any]:
    url = f"sqlite:///{tmp_path / 'replay.sqlite'}"
    assert main(["replay", *map(str, paths), "--db", url,
                 "--output", str(tmp_path / "out.jsonl")]) == 0
    engine = make_engine(url)
    with engine.connect() as conn:
        state = {
            "events": {r.event_id: r for r in conn.execute(select(events))},
            "aliases": sorted(tuple(r) for r in conn.execute(
                select(events.c.event_id, event_aliases.c.alias)
                .join(events, events.c.id == event_aliases.c.event_pk))),
            "notices": [(r.event_id, r.handler, r.notice_type, sorted(r.flags or ()))
                        for r in conn.execute(
                            select(events.c.event_id, notices.c.handler, notices.c.notice_type,
                                   notices.c.flags)
                            .join(events, events.c.id == notices.c.event_pk)
                            .order_by(notices.c.issued_time))],
            "dead_letters": conn.execute(select(func.count()).select_from(
                dead_letters)).scalar_one(),
        }
    engine.dispose()
    return state


def test_circular_attaches_to_the_real_icecube_event(tmp_path: Path) -> None:
    """Circular 33633 names IceCube-230416A and the run/event of its AMON alert: it is
    stored under the neutrino's event and changes neither its time nor its status."""
    alone = _replay(tmp_path / "a", ICECUBE)
    both = _replay(tmp_path / "b", ICECUBE, CIRCULARS / "33633.json")
    [event_id] = both["events"]
    assert event_id == "IceCube-137840_57034692" and list(alone["events"]) == [event_id]
    event, before = both["events"][event_id], alone["events"][event_id]
    assert (event.event_time, event.status, event.event_class) == (
        before.event_time, before.status, before.event_class) and event.status != "retracted"
    assert both["aliases"] == [(event_id, "IceCube-137840_57034692"),
                               (event_id, "IceCube-230416A")]
    assert [n[:2] for n in both["notices"]] == [(event_id, "icecube"), (event_id, "circulars")]
    _event, _handler, notice_type, flags = both["notices"][1]
    assert notice_type == "CIRCULAR" and {"attach_only", "no_event_time"} <= set(flags)
    assert both["dead_letters"] == 0


@pytest.mark.parametrize("name", ["34599.json", "28892.json"])
def test_circular_about_an_unknown_event_stores_nothing(
        tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The retractions of S230830b and of IceCube alert 134701_49508272, with neither
    event known: no event is created or retracted, nothing is dead-lettered."""
    state = _replay(tmp_path, CIRCULARS / name)
    assert state["events"] == {} and state["notices"] == [] and state["dead_letters"] == 0
    summary = capsys.readouterr().err
    assert "dead letters: 0" in summary and "ignored (of no interest): 1" in summary


def test_circular_naming_a_gw_and_a_gbm_trigger_merges_nothing(tmp_path: Path) -> None:
    """GCN 21506 ("LIGO/Virgo G298048: Fermi GBM trigger 170817.529 and LIGO single IFO
    trigger") after the real GW170817 and GRB 170817A notices: it is stored under the GW
    event, and the GRB stays an event of its own."""
    gw = CORPUS / "voevent/gw/G298048-1-Initial_GW170817.xml"
    grb = CORPUS / "voevent/fermi-gbm/GRB170817A_GBM_Gnd_Pos_524666471.xml"
    before = _replay(tmp_path / "a", gw, grb)
    state = _replay(tmp_path / "b", gw, grb, CIRCULARS / "21506.json")
    assert set(state["events"]) == set(before["events"]) == {"G298048", "FermiGBM-524666471"}
    assert state["aliases"] == before["aliases"]
    assert sorted(n[:2] for n in state["notices"]) == [
        ("FermiGBM-524666471", "fermi_gbm"), ("G298048", "circulars"),
        ("G298048", "lvk_voevent")]
    assert state["events"]["G298048"].event_time == before["events"]["G298048"].event_time
    assert state["dead_letters"] == 0


def test_an_icecube_retraction_circular_withdraws_the_event(tmp_path: Path) -> None:
    """GCN 28892 retracts IceCube alert 134701_49508272. Its own notice is not in the
    corpus, so a real IceCube notice (IceCube-230416A's) is stored under that alert's
    name and time; the circular then retracts the event, as a retraction notice does."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    upgrade(engine)
    config = load_config(environ={"MMA_PATHS__STATE_DIR": str(tmp_path)},
                         system_file=tmp_path / "absent.toml")
    p = Pipeline(engine, config)
    raw = (CIRCULARS / "28892.json").read_bytes()
    circular = circulars.parse(raw, topic="gcn.circulars")
    notice = icecube.parse(ICECUBE.read_bytes(), topic="")
    renamed = dataclasses.replace(notice, event_id=circular.event_id,
                                  event_time=circular.event_time - timedelta(hours=2),
                                  issued_time=circular.event_time - timedelta(hours=2))
    assert p.process(icecube, b"the alert", origin="alert", item=renamed).kind == "notice"
    assert p.process(circulars, raw, origin="gcn.circulars:0:1").kind == "notice"
    with engine.connect() as conn:
        (status,) = conn.execute(select(events.c.status)).scalars()
        flags = conn.execute(select(notices.c.flags).order_by(notices.c.id)).scalars().all()
    engine.dispose()
    assert status == "retracted"
    assert "retraction" in flags[-1] and "attach_only" in flags[-1]
