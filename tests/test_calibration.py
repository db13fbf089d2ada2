"""P_chance is calibrated: on skies scrambled in RA it is uniform.

The real O4 LVK regions of the corpus (final version per superevent) against the
real ZTF night of 2024-01-15 with each vetted object moved to a random RA (Dec
and times kept, so the survey's footprint and cadence stay real). Under this
null hypothesis the P_chance of the best match in each region must be uniform.
A region with no match inside its 90 % area contributes a value drawn
uniformly from the gap its chance of having one leaves, [P_90, 1] (the
randomised probability integral transform of the discrete remainder).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kstest

from mma.config import load_config
from mma.handlers import fink, lvk
from mma.match.rates import Background, background_cdf, background_from_objects, tile_dec
from mma.match.scoring import chance_probability, vet_ztf
from mma.models import Alert, Notice
from mma.registry import Registry
from mma.skymaps.decode import read_multiorder
from mma.skymaps.region import Region, build_region, hpx29

CONFIG = load_config(environ={})
SCORING = CONFIG.section("scoring")
WINDOW = CONFIG.window_days("gw.cbc")
MAX_CL = SCORING["max_credible_level"]
N_SCRAMBLES = 40


def _alerts(corpus: Path) -> Iterator[Alert]:
    registry = Registry()
    for path in sorted((corpus / "alerts/ztf/fink-2024-01-15").glob("*.parquet")):
        for handler, payload in registry.iter_file(path.read_bytes(), path):
            assert handler is fink
            yield fink.parse(payload, topic="")


@pytest.fixture(scope="module")
def objects(corpus: Path) -> dict[str, np.ndarray]:
    """One row per vetted object: Dec [deg] and first/last alert times."""
    rules = CONFIG.section("vetting.ztf")
    first: dict[str, Alert] = {}
    for alert in _alerts(corpus):
        if vet_ztf(alert.quality, rules):
            continue
        if alert.object_id not in first or alert.time < first[alert.object_id].time:
            first[alert.object_id] = alert
    rows = list(first.values())
    assert len(rows) > 50
    return {"dec": np.array([a.dec_deg for a in rows]),
            "time": np.array([a.time for a in rows], dtype=object)}


@pytest.fixture(scope="module")
def regions(corpus: Path) -> list[tuple[Region, np.ndarray, datetime]]:
    """Final region of each O4 superevent with its tile Decs and event time."""
    latest: dict[str, Notice] = {}
    for path in sorted((corpus / "gcn-json/igwn-gwalert/O4-2024-01").glob("*.json")):
        notice = lvk.parse(path.read_bytes(), topic="igwn.gwalert")
        if (notice.event_id not in latest
                or notice.issued_time > latest[notice.event_id].issued_time):
            latest[notice.event_id] = notice
    out = []
    for notice in latest.values():
        assert notice.region is not None and notice.region.skymap is not None
        region = build_region(read_multiorder(notice.region.skymap))
        out.append((region, tile_dec(region), notice.event_time))
    assert len(out) == 15  # 17 notices, two of them second PRELIMINARYs
    return out


def _best_p_chance(region: Region, dec_tiles: np.ndarray, t0: datetime, background: Background,
                   ra: np.ndarray, dec: np.ndarray, rng: np.random.Generator) -> float:
    start = t0 + timedelta(days=WINDOW[0])
    end = t0 + timedelta(days=WINDOW[1])
    covered = background.covered_days(start, end, SCORING["rate_min_span_days"])
    cdf = background_cdf(region, dec_tiles, background)
    tiles = region.lookup(hpx29(ra, dec))
    inside = tiles[tiles >= 0]
    inside = inside[region.credible_level[inside] <= MAX_CL]
    if len(inside):
        return chance_probability(background.rate_per_day, float(cdf[inside].min()),
                                  covered)[0]
    p90 = chance_probability(background.rate_per_day,
                             float(cdf[region.credible_level <= MAX_CL].max()), covered)[0]
    return float(rng.uniform(p90, 1.0))


def _scrambled_p_values(objects: dict[str, np.ndarray], regions: list, *,
                        uniform_sky: bool) -> np.ndarray:
    rng = np.random.default_rng(20240115)
    dec = objects["dec"]
    times = objects["time"]
    background = background_from_objects(
        "ZTF", dec, min(times), max(times), min_span_days=SCORING["rate_min_span_days"],
        floor_per_sr_per_day=SCORING["background_rate_floor_per_sr_per_day"])
    if uniform_sky:  # the naive model: background uniform over 4 pi sr
        background = Background("ZTF", background.n_objects, background.rate_per_day,
                                np.full_like(background.band_density_sr, 1 / (4 * np.pi)),
                                background.start, background.end, 0)
    values = []
    for _ in range(N_SCRAMBLES):
        ra = rng.uniform(0.0, 360.0, size=len(dec))
        for region, dec_tiles, t0 in regions:
            values.append(_best_p_chance(region, dec_tiles, t0, background, ra, dec, rng))
    return np.array(values)


def test_best_match_p_chance_is_uniform_on_scrambled_skies(objects, regions) -> None:
    values = _scrambled_p_values(objects, regions, uniform_sky=False)
    assert len(values) == N_SCRAMBLES * 15
    result = kstest(values, "uniform")
    assert result.pvalue > 0.01, (result, np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9]))


def test_the_calibration_test_has_power(objects, regions) -> None:
    """Ignoring the survey footprint (a 4 pi uniform background) is miscalibrated."""
    values = _scrambled_p_values(objects, regions, uniform_sky=True)
    assert kstest(values, "uniform").pvalue < 0.01
