"""The background counters in the database: on SQLite and PostgreSQL, the model the
daemon reads is the one the calibration tests check; a restart keeps it; the alert
path counts each alert once."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import healpy
import numpy as np
import pytest
from sqlalchemy import Engine, func, select

from mma.config import Config
from mma.db.background import Cells, add_cells, load_cells
from mma.db.schema import background_cells
from mma.ingest import Pipeline
from mma.match.background import local_background, night_of
from mma.match.scorer import Backgrounds, chance_of
from mma.skymaps.region import Region, hpx29
from tests.calibration import SURVEY, NightlyBackgrounds, counters, utc
from tests.test_calibration import synthetic
from tests.test_correlator import alert, feed

NIGHTS = 50


def _split(cells: Cells, parts: int) -> list[Cells]:
    """The counters in *parts* batches (as successive alert batches would add them)."""
    return [cells.select(slice(i, None, parts)) for i in range(parts)]


def _circle(ra: float, dec: float, radius_deg: float) -> Region:
    """A uniform circle as a region, of order-10 tiles."""
    order = 10
    nside = 1 << order
    pix = healpy.query_disc(nside, healpy.ang2vec(ra, dec, lonlat=True), np.radians(radius_deg),
                            nest=True, inclusive=False)
    shift = 2 * (29 - order)
    lo = np.sort(pix).astype(np.int64) << shift
    area = len(pix) * healpy.nside2pixarea(nside)
    return Region.from_tiles(lo, lo + (1 << shift), np.full(len(pix), 1.0 / area))


@pytest.fixture(scope="module")
def survey_cells():
    d = synthetic(123.0)
    keep = d.unix < d.unix.min() + NIGHTS * 86400.0
    return d, counters(d.select(keep))


def test_the_database_holds_the_model_the_calibration_checks(
        engine: Engine, config: Config, survey_cells) -> None:
    d, cells = survey_cells
    with engine.begin() as conn:
        for part in _split(cells, 7):  # overlapping batches add up
            add_cells(conn, SURVEY, part)
    at = utc(float(d.unix.min()) + (NIGHTS + 0.3) * 86400.0)
    with engine.connect() as conn:
        stored = load_cells(conn, SURVEY, 0, 10**7)
        from_db = Backgrounds(config).get(conn, SURVEY, at)
    assert int(stored.n_new.sum()) == int(cells.n_new.sum()) > 0
    assert int(stored.n_alerts.sum()) == int(cells.n_alerts.sum()) and len(stored) == len(cells)
    in_memory = NightlyBackgrounds(cells, Backgrounds(config).prior(SURVEY)).at(at)
    for kind in ("new", "all"):
        np.testing.assert_allclose(from_db.rate[kind], in_memory.rate[kind], rtol=1e-12)
    np.testing.assert_array_equal(from_db.observed, in_memory.observed)
    np.testing.assert_allclose(from_db.recent, in_memory.recent)


def test_a_restart_keeps_p_chance_within_its_stated_error(
        engine: Engine, config: Config, survey_cells) -> None:
    """A daemon measures, is restarted an hour and a night of counters later, and
    scores the same candidate: P_chance moves by less than its own stated error."""
    d, cells = survey_cells
    last = int(cells.night.max())
    with engine.begin() as conn:
        add_cells(conn, SURVEY, cells.select(cells.night < last))
    start = float(d.unix.min())
    at = utc(start + (NIGHTS - 1.2) * 86400.0)
    t0 = at - timedelta(days=2)
    # The densest observed spot of the survey, where a 3 deg circle holds objects.
    pixel = int(np.bincount(cells.pixel, weights=cells.n_new).argmax())
    ra, dec = healpy.pix2ang(32, pixel, nest=True, lonlat=True)
    region = _circle(float(ra), float(dec), 3.0)
    tile = int(region.lookup(hpx29(ra, dec)))

    def n_background(model) -> tuple[float, float]:
        def local(kind, begin, new_field):
            return local_background(region, model, kind, begin, t0 + timedelta(days=14),
                                    new_field=new_field)

        c = chance_of(local, tile=tile, credible_level=region.credible_level, max_cl=0.99,
                      t0=t0, start=t0 - timedelta(days=1), ranks_new_first=True,
                      seen_before=False)
        return c.n_background, c.n_background_err

    with engine.connect() as conn:
        before, err = n_background(Backgrounds(config).get(conn, SURVEY, at))
    with engine.begin() as conn:  # the stream goes on while the daemon is down
        add_cells(conn, SURVEY, cells.select(cells.night == last))
    with engine.connect() as conn:  # a new process: nothing cached
        after, _ = n_background(Backgrounds(config).get(conn, SURVEY, at + timedelta(hours=25)))
    assert before > 0.5  # a real measurement, not the floor
    assert abs(np.expm1(-after) - np.expm1(-before)) <= np.exp(-min(before, after)) * err


def test_the_alert_path_counts_each_alert_once(engine: Engine, config: Config) -> None:
    pipeline = Pipeline(engine, config)
    stream = [alert("1", pixel=0, hours=1), alert("2", pixel=0, hours=2),
              alert("3", pixel=5, hours=30), alert("4", pixel=5, hours=31, rb=0.1),
              # Object 1 again, a little later and a day later.
              dataclasses.replace(alert("1b", pixel=0, hours=3), object_id="ZTF25obj1"),
              dataclasses.replace(alert("1c", pixel=0, hours=27), object_id="ZTF25obj1")]
    for item in stream + stream[:2]:  # redelivered alerts are stored and counted once
        feed(pipeline, item)
    with engine.connect() as conn:
        totals = conn.execute(select(func.sum(background_cells.c.n_new),
                                     func.sum(background_cells.c.n_all),
                                     func.sum(background_cells.c.n_alerts))).one()
    vetted = [a for a in stream if a.quality["rb"] >= 0.5]
    nights = {(a.object_id, int(night_of(SURVEY, a.time.timestamp()))) for a in vetted}
    # New: objects 1, 2 and 3 (4 is vetoed); all: an object once a night; alerts: each.
    assert tuple(totals) == (3, len(nights), len(stream))
    assert len(nights) >= 4
