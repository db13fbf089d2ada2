"""One event per burst: the corpus's two GRBs seen by two missions each, on both databases.

2024-01-12: Swift BAT trigger 1208389 (then XRT and UVOT) and Fermi GBM 726773850,
0.15 s apart, the GBM circle 6.3 deg from the BAT position. 2024-01-15: Fermi GBM
727029942 and INTEGRAL IBAS 10472, 17.5 s apart (IBAS's image trigger), the IBAS
position inside the GBM circle. Each ends as one event with both missions' names,
each mission's regions kept, and the product of their newest regions active;
whatever order the notices come in. A burst elsewhere on the sky stays its own
event (and pairs with the first as GRB x GRB).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from mma.config import Config
from mma.db.schema import coincidences, event_aliases, events, notices, regions
from mma.handlers import fermi_gbm, integral, swift
from mma.ingest import Pipeline
from mma.models import Notice

# What does not depend on the database runs on SQLite only (the suite's time budget).
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

pytestmark = pytest.mark.slow  # GBM circles with systematics: ~5 s a feed

DIR = "voevent/gcn-2024-01-fink-mm"
JAN12 = [(swift, "BAT_GRB_Pos_1208389-262.xml"),
         (fermi_gbm, "GBM_Flt_Pos_2024-01-12T173725.12_726773850_43-264.xml"),
         (fermi_gbm, "GBM_Gnd_Pos_2024-01-12T173725.12_726773850_57-268.xml"),
         (swift, "XRT_Pos_1208389-303.xml"),
         (fermi_gbm, "GBM_Fin_Pos2024-01-12T173725.12_726773850_0-315.xml")]
JAN15 = [(fermi_gbm, "GBM_Flt_Pos_2024-01-15T164537.62_727029942_45-920.xml"),
         (fermi_gbm, "GBM_Gnd_Pos_2024-01-15T164537.62_727029942_57-923.xml"),
         (integral, "Wakeup_Pos_010472-0-924.xml"),
         (integral, "Refined_Pos_010472-1-937.xml")]


def _events(engine: Engine) -> dict[str, set[str]]:
    with engine.connect() as conn:
        rows = conn.execute(select(events.c.event_id, event_aliases.c.alias)
                            .join(event_aliases, event_aliases.c.event_pk == events.c.id))
        out: dict[str, set[str]] = {}
        for event_id, alias in rows:
            out.setdefault(event_id, set()).add(alias)
        return out


def _active(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(
            select(events.c.event_id, regions.c.kind, regions.c.area90_deg2)
            .join(events, events.c.id == regions.c.event_pk)
            .where(regions.c.status == "active").order_by(events.c.event_id)))


def _feed(engine: Engine, config: Config, corpus: Path, files: list[Any]) -> Pipeline:
    p = Pipeline(engine, config)
    for handler, name in files:
        assert p.process(handler, (corpus / DIR / name).read_bytes(),
                         origin=name).kind == "notice"
    return p


def _interleave(files: list[Any], seed: int) -> list[Any]:
    """The missions' notices interleaved at random, each mission's in its own order
    (an XRT position never precedes its BAT trigger; either mission may come first)."""
    rng = random.Random(seed)
    queues: dict[str, list[Any]] = {}
    for handler, name in files:
        queues.setdefault(handler.NAME, []).append((handler, name))
    out = []
    while any(queues.values()):
        out.append(queues[rng.choice([k for k, q in queues.items() if q])].pop(0))
    return out


def test_each_burst_is_one_event(engine: Engine, config: Config, corpus: Path) -> None:
    _check_one_event_each(engine, config, corpus, list(JAN12) + list(JAN15))


@SQLITE_ONLY
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_burst_is_one_event_in_any_order(engine: Engine, config: Config, corpus: Path,
                                              seed: int) -> None:
    _check_one_event_each(engine, config, corpus,
                          _interleave(list(JAN12), seed) + _interleave(list(JAN15), seed))


def _check_one_event_each(engine: Engine, config: Config, corpus: Path,
                          files: list[Any]) -> None:
    _feed(engine, config, corpus, files)
    found = _events(engine)
    assert sorted(map(sorted, found.values())) == [
        ["FermiGBM-726773850", "Swift-1208389"], ["FermiGBM-727029942", "INTEGRAL-10472"]]
    with engine.connect() as conn:
        kept = conn.execute(select(notices.c.handler, regions.c.kind)
                            .join(regions, regions.c.notice_pk == notices.c.id)).all()
    # Every mission's own regions are kept for audit.
    assert {h for h, kind in kept if kind != "combined"} == {"swift", "fermi_gbm", "integral"}
    active = _active(engine)
    assert [r.kind for r in active] == ["combined", "combined"]
    # The product is as small as the finest position: XRT's arcsec, IBAS's arcmin.
    assert all(r.area90_deg2 < 0.01 for r in active), active


@SQLITE_ONLY
def test_a_burst_elsewhere_is_its_own_event(engine: Engine, config: Config,
                                            corpus: Path) -> None:
    p = _feed(engine, config, corpus, JAN12[:1])
    gbm = fermi_gbm.parse((corpus / DIR / JAN12[2][1]).read_bytes(), topic="")
    assert gbm.region is not None
    # The same GBM notice, its circle moved to the opposite sky.
    far: Notice = dataclasses.replace(gbm, region=dataclasses.replace(
        gbm.region, ra_deg=((gbm.region.ra_deg or 0.0) + 180.0) % 360.0,
        dec_deg=-(gbm.region.dec_deg or 0.0)))
    assert p.process(fermi_gbm, b"moved", origin="moved", item=far).kind == "notice"
    assert set(_events(engine)) == {"Swift-1208389", "FermiGBM-726773850"}
    with engine.connect() as conn:
        (pair,) = conn.execute(select(coincidences.c.payload).where(
            coincidences.c.other_event_pk.is_not(None))).scalars()
    assert pair["window_s"] == [-30.0, 30.0]
    assert pair["overlap_integral"] is not None and pair["overlap_integral"] < 1.0


@SQLITE_ONLY
def test_the_event_keeps_its_first_missions_time(engine: Engine, config: Config,
                                                 corpus: Path) -> None:
    _feed(engine, config, corpus, JAN15)
    with engine.connect() as conn:
        (t0,) = conn.execute(select(events.c.event_time)).scalars()
    assert t0.isoformat().startswith("2024-01-15T16:45:37.62")  # GBM's, not IBAS's
