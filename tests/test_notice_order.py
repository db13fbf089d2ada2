"""The final state does not depend on the order in which an event's notices arrive.

Real notices: Fermi GBM 726773850's flight, ground and final positions (2024-01-12),
and the sample's S261121cd PRELIMINARY and RETRACTION plus an UPDATE issued an hour
after the retraction. Every permutation is processed into a fresh database, on SQLite
and on PostgreSQL, with the same optical alerts stored first; the final states must
be equal: the event, its regions in notice order, and the live candidates.

What legitimately depends on the order is what was *announced* on the way (a
candidate published under an early region and later withdrawn, revision counts): the
comparison leaves those out and says so.
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from mma.config import Config
from mma.db.engine import make_engine, upgrade
from mma.db.schema import coincidences, events, notices, regions
from mma.ingest import Parsed, Pipeline
from mma.models import Alert, Notice
from mma.registry import Registry

GBM = "voevent/gcn-2024-01-fink-mm"
GBM_FILES = ("GBM_Flt_Pos_2024-01-12T173725.12_726773850_43-264.xml",
             "GBM_Gnd_Pos_2024-01-12T173725.12_726773850_57-268.xml",
             "GBM_Fin_Pos2024-01-12T173725.12_726773850_0-315.xml")
SAMPLE = Path(__file__).resolve().parents[1] / "mma" / "data" / "sample"


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_engine(request: pytest.FixtureRequest,
                 tmp_path: Path) -> Iterator[Callable[[], Engine]]:
    """A factory of fresh, migrated databases of one backend."""
    made: list[Engine] = []

    def make() -> Engine:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / f'db{len(made)}.sqlite'}"
        else:
            url = request.getfixturevalue("postgres_server").create_database()
        engine = make_engine(url)
        upgrade(engine)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispose()


def parse(raw: bytes, origin: str) -> Notice:
    ((handler, payload),) = list(Registry().iter_file(raw, origin))
    item = handler.parse(payload, topic="")
    assert isinstance(item, Notice)
    return item


def ztf(name: str, ra: float, dec: float, when: datetime) -> Alert:
    return Alert(alert_id=str(zlib.crc32(name.encode())), object_id=f"ZTF24{name}",
                 survey="ZTF", ra_deg=ra, dec_deg=dec, time=when,
                 quality={"rb": 0.9, "drb": 0.99, "isdiffpos": True})


def final_state(engine: Engine) -> dict[str, Any]:
    """Event, regions in version order, live candidates: what must not depend on order."""
    with engine.connect() as conn:
        event = conn.execute(select(events.c.event_id, events.c.event_time, events.c.status,
                                    events.c.event_class, events.c.properties)).all()
        versions = conn.execute(
            select(regions.c.version, regions.c.status, notices.c.notice_type,
                   notices.c.issued_time)
            .join(notices, notices.c.id == regions.c.notice_pk)
            .order_by(regions.c.version)).all()
        live = {}
        for row in conn.execute(select(coincidences).where(
                coincidences.c.status != "retracted")):
            record = {k: v for k, v in row.payload.items()
                      if k not in ("changes", "p_chance", "components")}
            live[row.coincidence_id] = {**record, "rank": row.rank, "vetoed": row.vetoed}
    return {"event": [tuple(r) for r in event], "regions": [tuple(r) for r in versions],
            "live": live}


def run(engine: Engine, config: Config, alerts: list[Alert],
        order: tuple[tuple[bytes, Notice], ...]) -> dict[str, Any]:
    pipeline = Pipeline(engine, config)
    pipeline.process_alerts([Parsed(_Handler, repr(a).encode(), f"alert:{i}", item=a)
                             for i, a in enumerate(alerts)])
    for raw, item in order:
        pipeline.process(_Handler, raw, origin=item.notice_type, item=item,
                         now=item.issued_time)
    return final_state(engine)


class _Handler:
    NAME = "test"
    KIND = "notice"

    @staticmethod
    def parse(raw: bytes, *, topic: str) -> Notice:
        raise AssertionError("items are given parsed")


@pytest.mark.slow  # every order of five notices, each a fresh database
def test_gbm_positions_in_any_order(fresh_engine: Callable[[], Engine], config: Config,
                                    corpus: Path) -> None:
    given = [((corpus / GBM / name).read_bytes(), name) for name in GBM_FILES]
    parsed = [(raw, parse(raw, name)) for raw, name in given]
    flt, gnd, fin = (n for _, n in parsed)
    assert flt.issued_time < gnd.issued_time < fin.issued_time
    t0 = fin.event_time
    alerts = []
    for i, n in enumerate((flt, gnd, fin)):  # one object at each centre, and one offset
        assert n.region is not None and n.region.ra_deg is not None
        ra, dec = n.region.ra_deg, n.region.dec_deg
        assert dec is not None
        alerts.append(ztf(f"c{i}", ra, dec, t0 + timedelta(hours=2 + i)))
        alerts.append(ztf(f"o{i}", (ra + 3.0) % 360, dec, t0 + timedelta(hours=5 + i)))
    states = [run(fresh_engine(), config, alerts, order)
              for order in itertools.permutations(parsed)]
    assert all(state == states[0] for state in states[1:])
    final = states[0]
    assert [(v, s, t) for v, s, t, _ in final["regions"]] == [
        (1, "superseded", "GBM_Flt_Pos"), (2, "superseded", "GBM_Gnd_Pos"),
        (3, "active", "GBM_Fin_Pos")]
    assert final["live"] and all(r["region_version"] == 3 for r in final["live"].values())


def _lvk(name: str, **changes: Any) -> bytes:
    data = json.loads((SAMPLE / name).read_bytes())
    data.update(changes)
    return json.dumps(data).encode()


def test_retraction_sticks_in_any_order(fresh_engine: Callable[[], Engine],
                                        config: Config) -> None:
    prelim = _lvk("S261121cd-preliminary.json")
    retraction = _lvk("S261121cd-retraction.json")
    later = datetime(2026, 11, 21, 9, 40, 2, 500000, tzinfo=UTC)  # an hour after it
    update = _lvk("S261121cd-preliminary.json", alert_type="UPDATE",
                  time_created=later.isoformat().replace("+00:00", "Z"))
    parsed = [(raw, parse(raw, "lvk.json")) for raw in (prelim, retraction, update)]
    t0 = parsed[0][1].event_time
    region = parsed[0][1].region
    assert region is not None
    alerts = [ztf(f"s{i}", ra, dec, t0 + timedelta(hours=3 + i))
              for i, (ra, dec) in enumerate(_densest_points(parsed[0][1], 5))]
    states = [run(fresh_engine(), config, alerts, order)
              for order in itertools.permutations(parsed)]
    assert all(state == states[0] for state in states[1:])
    final = states[0]
    assert [status for _, _, status, _, _ in final["event"]] == ["retracted"]
    assert final["live"] == {}
    assert all(status != "active" for _, status, _, _ in final["regions"]), final["regions"]


def test_notice_after_a_retraction_is_stored_flagged_and_inert(engine: Engine,
                                                                config: Config) -> None:
    prelim = _lvk("S261121cd-preliminary.json")
    retraction = _lvk("S261121cd-retraction.json")
    update = _lvk("S261121cd-preliminary.json", alert_type="UPDATE",
                  time_created="2026-11-21T09:40:02.500000Z")
    pipeline = Pipeline(engine, config)
    for raw in (prelim, retraction, update):
        item = parse(raw, "lvk.json")
        pipeline.process(_Handler, raw, origin=item.notice_type, item=item,
                         now=item.issued_time)
    with engine.connect() as conn:
        flags = dict(conn.execute(select(notices.c.notice_type, notices.c.flags)).all())
        active = conn.execute(select(regions.c.id).where(regions.c.status == "active")).all()
    assert "after_retraction" in flags["UPDATE"]
    assert active == []


def _densest_points(notice: Notice, n: int) -> list[tuple[float, float]]:
    """Centres of the *n* densest tiles of the notice's map (inside any sensible cut)."""
    import numpy as np

    from mma.skymaps.region import build_region
    from mma.skymaps.spec import region_table

    assert notice.region is not None
    table = region_table(notice.region, max_bytes=10**9)
    assert table is not None
    region = build_region(table)
    import healpy

    best = np.argsort(region.probdensity)[::-1][:n]
    centre = region.lo[best] + (region.hi[best] - region.lo[best]) // 2
    ra, dec = healpy.pix2ang(2**29, centre, nest=True, lonlat=True)
    return list(zip(ra.tolist(), dec.tolist(), strict=True))
