"""P_chance is calibrated on skies with real structure (tests/calibration.py).

Every test rotates a whole survey *as a block* to random RAs against the real O4
LVK regions of the corpus: the survey keeps its fields, cadence, seasons, lost
nights, Galactic plane, multi-night transients and recurring variables, which is
the same as placing each region at a random RA on the real sky. Under this null
hypothesis the best match's P_chance must be uniform (KS p > 0.01), both the
final value and the value of the first message about each candidate, which is
what people act on. A test of the test shows that a background without the
survey's structure fails the same check.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import healpy
import numpy as np
import pytest
from scipy.stats import kstest

from mma.config import load_config
from mma.db.background import Cells, merge_cells
from mma.handlers import fink, lvk
from mma.match.background import NFIELD, SkyBackground, cells_of, night_of
from mma.match.scorer import Backgrounds
from mma.models import Alert, Notice
from mma.registry import Registry
from mma.skymaps.decode import read_multiorder
from mma.skymaps.region import Region, build_region, hpx29
from tests.calibration import (
    SURVEY,
    Detections,
    NightlyBackgrounds,
    Trial,
    best_match,
    candidates,
    counters,
    p_values,
    utc,
)
from tests.synthetic_survey import generate_survey, rotate

pytestmark = pytest.mark.slow  # ~30 s: hundreds of regions against rotated surveys

CONFIG = load_config(environ={})
WINDOW = CONFIG.window_days("gw.cbc")
MAX_CL = float(CONFIG.section("scoring")["max_credible_level"])
PRIOR = Backgrounds(CONFIG).prior("ZTF")
UNIX_MJD = 40587.0
N_ROTATIONS = 8  # x 15 O4 regions = 120 trials
FIRST_NIGHT, LAST_NIGHT = 40, 70  # t0 range: a month of history before, the window after


@pytest.fixture(scope="module")
def regions(corpus: Path) -> list[Region]:
    """The final region of each O4 superevent of the corpus."""
    latest: dict[str, Notice] = {}
    for path in sorted((corpus / "gcn-json/igwn-gwalert/O4-2024-01").glob("*.json")):
        notice = lvk.parse(path.read_bytes(), topic="igwn.gwalert")
        if (notice.event_id not in latest
                or notice.issued_time > latest[notice.event_id].issued_time):
            latest[notice.event_id] = notice
    out = []
    for notice in latest.values():
        assert notice.region is not None and notice.region.skymap is not None
        out.append(build_region(read_multiorder(notice.region.skymap)))
    assert len(out) == 15
    return out


def synthetic(delta_ra_deg: float, seed: int = 20240115) -> Detections:
    """The synthetic survey (same seed: the same sky) rotated by *delta_ra_deg*."""
    survey = rotate(generate_survey(np.random.default_rng(seed)), delta_ra_deg)
    variable = ~survey.object_is_transient[survey.object_id]
    return Detections(survey.object_id, survey.ra_deg, survey.dec_deg,
                      (survey.time - UNIX_MJD) * 86400.0, survey.first_of_object & ~variable,
                      variable)


def trials(regions: list[Region], rng: np.random.Generator,
           d: Detections) -> Iterator[Trial]:
    """Each region at a random t0 within the survey's nights."""
    start = d.unix.min()
    for region in regions:
        t0 = start + rng.uniform(FIRST_NIGHT, LAST_NIGHT) * 86400.0
        yield Trial(region, utc(t0), WINDOW, MAX_CL)


def final_p(trial: Trial, d: Detections, rng: np.random.Generator,
            model: SkyBackground) -> float:
    """The best match's P_chance once the window has closed (*model*: after it)."""
    return best_match(trial, candidates(trial, d), model, rng)


def first_message_p(trial: Trial, d: Detections, rng: np.random.Generator,
                    models: NightlyBackgrounds) -> float:
    """The smallest P_chance any first message about a candidate of *trial* carried.

    Each candidate is scored when its first detection in the window arrives,
    against the background of the nights before (what a live daemon holds).
    """
    cands = candidates(trial, d)
    if not len(cands.tile):
        return final_p(trial, d, rng, models.at(trial.end + timedelta(hours=12)))
    values = []
    by_night = night_of("ZTF", cands.first_unix)
    for night in np.unique(by_night):
        at = utc(float(cands.first_unix[by_night == night].min()))
        mine = by_night == night
        values.append(p_values(trial, cands.take(mine), models.at(at)))
    return float(np.concatenate(values).min())


@pytest.fixture(scope="module")
def synthetic_values(regions: list[Region]) -> dict[str, np.ndarray]:
    """Best-match P_chance, final and first-message, over rotated synthetic skies."""
    rng = np.random.default_rng(1)
    final, first = [], []
    for _ in range(N_ROTATIONS):
        d = synthetic(rng.uniform(0.0, 360.0))
        models = NightlyBackgrounds(d, PRIOR)
        for trial in trials(regions, rng, d):
            final.append(final_p(trial, d, rng, models.at(trial.end + timedelta(hours=12))))
            first.append(first_message_p(trial, d, rng, models))
    return {"final": np.array(final), "first": np.array(first)}


def test_best_match_is_uniform_on_a_structured_survey_rotated_as_a_block(
        synthetic_values: dict[str, np.ndarray]) -> None:
    values = synthetic_values["final"]
    assert len(values) >= 90
    result = kstest(values, "uniform")
    assert result.pvalue > 0.01, (result, np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9]))


def test_first_messages_are_calibrated(synthetic_values: dict[str, np.ndarray]) -> None:
    """What people act on: the P_chance of each candidate's first message."""
    values = synthetic_values["first"]
    result = kstest(values, "uniform")
    assert result.pvalue > 0.01, (result, np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9]))
    # A false alarm at 0.05 about as often as 5 % of null regions (3 sigma of 120 trials).
    fraction = float(np.mean(values < 0.05))
    assert fraction < 0.05 + 3 * np.sqrt(0.05 * 0.95 / len(values)), fraction


def uniform_sky(model: SkyBackground) -> SkyBackground:
    """The same survey's background spread evenly over the sky, every night observed."""
    nights = len(model.nights)
    rate = {k: np.full_like(v, v.sum() / len(v)) * model.exposure.sum() / NFIELD / nights
            for k, v in model.rate.items()}
    return dataclasses.replace(model, rate=rate, observed=np.ones_like(model.observed),
                               exposure=np.full_like(model.exposure, nights),
                               recent=np.ones_like(model.recent))


def test_the_calibration_test_has_power(regions: list[Region]) -> None:
    """A background without the survey's footprint, seasons and plane fails the test."""
    rng = np.random.default_rng(1)
    values = []
    for _ in range(N_ROTATIONS):
        d = synthetic(rng.uniform(0.0, 360.0))
        models = NightlyBackgrounds(d, PRIOR)
        for trial in trials(regions, rng, d):
            model = models.at(trial.end + timedelta(hours=12))
            values.append(final_p(trial, d, rng, uniform_sky(model)))
    assert kstest(values, "uniform").pvalue < 0.01


def fink_night(corpus: Path) -> tuple[Detections, np.ndarray, np.ndarray]:
    """The real ZTF night of 2024-01-15 (Fink): a detection per alert, with the packets'
    first detections, and the time and position of every alert (the exposure).

    Every alert counts, vetted or not: vetting leaves 26 objects, too few to
    measure a local density out of sample. The 48 alerts a test harness moved
    onto GCN positions are left out: they are not the real sky.
    """
    registry = Registry()
    with (corpus / "alerts/ztf/fink-2024-01-15_candidates.csv").open() as f:
        injected = {r["candid"] for r in csv.DictReader(f) if r["position_injected"] == "True"}
    rows: list[Alert] = []
    for path in sorted((corpus / "alerts/ztf/fink-2024-01-15").glob("*.parquet")):
        for handler, payload in registry.iter_file(path.read_bytes(), path):
            assert handler is fink
            alert = fink.parse(payload, topic="")
            if alert.alert_id not in injected:
                rows.append(alert)
    assert len(injected) == 48 and len(rows) > 700
    ids = {oid: i for i, oid in enumerate(sorted({a.object_id for a in rows}))}
    unix = np.array([a.time.timestamp() for a in rows])
    first = np.array([(a.first_detection or a.time).timestamp() for a in rows])
    obj = np.array([ids[a.object_id] for a in rows])
    earliest = {o: unix[obj == o].min() for o in ids.values()}
    new = np.array([first[i] >= unix[i] - 60 and unix[i] == earliest[obj[i]]
                    for i in range(len(rows))])
    ra, dec = np.array([a.ra_deg for a in rows]), np.array([a.dec_deg for a in rows])
    return (Detections(obj, ra, dec, unix, new, first < unix.min() - 60), unix,
            hpx29(ra, dec))


def test_real_fink_night_rotated_as_a_block_is_calibrated_or_quiet(
        corpus: Path, regions: list[Region]) -> None:
    """The real night, its objects split in two halves: each half is matched against
    the background measured from the other (out of sample: with one night, an
    in-sample background would be the objects themselves) and every alert's
    exposure; the window is that night, the survey's own counts trusted at once.

    Real alerts cluster below the background's 1.8 deg resolution, which a
    Poisson chance makes conservative (a region is empty more often than its
    mean says), never the reverse: the test asserts that P_chance is not too
    small (one-sided KS) and that false alarms at 0.05 are no more frequent
    than 5 %. docs/statistic.md gives the two-sided figure.
    """
    night, unix, ipix = fink_night(corpus)
    objects = np.unique(night.object_id)
    prior = dataclasses.replace(PRIOR, min_nights=1, min_field_nights=1)
    t0 = utc(float(unix.min()) - 3600.0)
    rng = np.random.default_rng(2)
    values = []
    for _ in range(20):
        delta = rng.uniform(0, 360)
        d = dataclasses.replace(night, ra_deg=np.mod(night.ra_deg + delta, 360))
        exposure = exposure_counters(unix, hpx29(*_rotated(ipix, delta)))
        half = np.isin(d.object_id, rng.permutation(objects)[: len(objects) // 2])
        for test in (half, ~half):
            model = NightlyBackgrounds(merge_cells([counters(d.select(~test)), exposure]),
                                prior).at(t0 + timedelta(days=1.5))
            for region in regions:
                values.append(final_p(Trial(region, t0, (0.0, 1.0), MAX_CL), d.select(test),
                                      rng, model))
    assert len(values) == 600
    # alternative="greater": the empirical CDF above the uniform one (too many small P).
    result = kstest(values, "uniform", alternative="greater")
    assert result.pvalue > 0.01, (result, np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9]))
    assert np.mean(np.array(values) < 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / len(values))


def exposure_counters(unix: np.ndarray, ipix: np.ndarray) -> Cells:
    """Counters of alerts that count only towards the exposure."""
    none = np.zeros(len(unix), bool)
    return cells_of(SURVEY, unix, ipix, none, none, none)


def _rotated(ipix: np.ndarray, delta_ra_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions of level-29 pixels moved by *delta_ra_deg* in RA [deg]."""
    ra, dec = healpy.pix2ang(1 << 29, ipix, nest=True, lonlat=True)
    return np.mod(ra + delta_ra_deg, 360.0), dec
