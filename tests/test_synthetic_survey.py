"""The synthetic survey generator has the structure of a real survey (tests/synthetic_survey.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from tests.synthetic_survey import (
    Survey,
    SurveyParams,
    counts_in_circle,
    generate_survey,
    iter_nights,
    mjd_to_datetimes,
    observed_nights_at,
    rotate,
    separation_deg,
)

SEED = 20240115


@pytest.fixture(scope="module")
def survey() -> Survey:
    return generate_survey(np.random.default_rng(SEED))


def _galactic_b(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    return np.asarray(SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").galactic.b.deg)


def _often_observed_fields(survey: Survey, min_nights: int = 15) -> np.ndarray:
    """Fields observed on at least ``min_nights`` nights, whose whole 3° circle is north."""
    grid = survey.fields
    ok = (survey.observed.sum(axis=0) >= min_nights) & (grid.dec_deg > survey.params.dec_limit_deg
                                                        + 3.0)
    return np.flatnonzero(ok)


def _wrap180(deg: np.ndarray) -> np.ndarray:
    return np.mod(deg + 180.0, 360.0) - 180.0


def test_deterministic_for_a_seed(survey: Survey) -> None:
    again = generate_survey(np.random.default_rng(SEED))
    for name in ("object_id", "ra_deg", "dec_deg", "time", "night", "new", "first_of_object",
                 "observed", "lost"):
        np.testing.assert_array_equal(getattr(again, name), getattr(survey, name), err_msg=name)
    other = generate_survey(np.random.default_rng(SEED + 1))
    assert other.n_detections != survey.n_detections or not np.array_equal(other.time, survey.time)


def test_scale_and_generation_time() -> None:
    start = time.perf_counter()
    survey = generate_survey(np.random.default_rng(1))
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0
    assert survey.n_nights == 90
    assert 10_000 < survey.n_detections < 200_000
    assert survey.object_id.dtype == np.int64 and survey.night.dtype == np.int64


def test_no_detection_south_of_the_limit(survey: Survey) -> None:
    assert survey.dec_deg.min() >= survey.params.dec_limit_deg
    north = generate_survey(np.random.default_rng(3), SurveyParams(n_nights=20, dec_limit_deg=10.0))
    assert north.n_detections > 0
    assert north.dec_deg.min() >= 10.0


def test_detections_in_observed_visible_fields_within_the_night(survey: Survey) -> None:
    fid = survey.field_of(survey.ra_deg, survey.dec_deg)
    np.testing.assert_array_equal(fid, survey.field)
    assert survey.observed[survey.night, fid].all()
    centre_ra = survey.fields.ra_deg[fid]
    offset = _wrap180(centre_ra - survey.visible_center_deg[survey.night])
    assert np.abs(offset).max() <= survey.params.visible_width_deg / 2
    start, end = survey.params.night_window
    frac = survey.time - survey.params.mjd0 - survey.night
    assert frac.min() >= start - 1e-9 and frac.max() <= end + 1e-9
    assert np.all(np.diff(survey.time) >= 0)


def test_about_half_the_visible_fields_observed(survey: Survey) -> None:
    centre = survey.visible_center_deg[:, None]
    offset = _wrap180(survey.fields.ra_deg[None, :] - centre)
    visible = np.abs(offset) <= survey.params.visible_width_deg / 2
    clear = ~survey.lost
    frac = survey.observed[clear].sum() / visible[clear].sum()
    assert 0.45 < frac < 0.55


def test_visible_range_moves_about_one_degree_per_day(survey: Survey) -> None:
    np.testing.assert_allclose(_wrap180(np.diff(survey.visible_center_deg)), 360 / 365.25)
    nights, means = [], []
    for night in np.flatnonzero(survey.observed.any(axis=1)):
        ra = np.radians(survey.fields.ra_deg[survey.observed[night]])
        means.append(np.degrees(np.arctan2(np.sin(ra).mean(), np.cos(ra).mean())))
        nights.append(night)
    slope = np.polyfit(nights, np.degrees(np.unwrap(np.radians(means))), 1)[0]
    assert slope == pytest.approx(0.986, abs=0.15)


def test_lost_nights_have_no_detections(survey: Survey) -> None:
    lost = np.flatnonzero(survey.lost)
    assert 0.05 < len(lost) / survey.n_nights < 0.35
    assert not np.isin(survey.night, lost).any()
    assert not survey.observed[lost].any()
    assert np.all(np.bincount(survey.night, minlength=survey.n_nights)[~survey.lost] > 0)


def test_lost_nights_come_in_runs() -> None:
    params = SurveyParams(n_nights=400, p_lost_night=0.0, p_lost_run=0.03, lost_run_nights=(3, 6),
                          transient_rate_per_deg2=1e-4)
    lost = generate_survey(np.random.default_rng(7), params).lost.astype(int)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], lost, [0]])))
    starts, ends = edges[::2], edges[1::2]
    interior = (starts > 0) & (ends < len(lost))
    assert interior.sum() >= 3
    assert np.all(ends[interior] - starts[interior] >= 3)


def test_galactic_plane_is_denser(survey: Survey) -> None:
    fields = _often_observed_fields(survey)
    ra, dec = survey.fields.ra_deg[fields], survey.fields.dec_deg[fields]
    b = np.abs(_galactic_b(ra, dec))
    mean = {}
    for name, sel in (("plane", b < 5), ("high", b > 40)):
        assert sel.sum() >= 3, name
        per_circle = [counts_in_circle(survey, r, d)[observed_nights_at(survey, r, d)].mean()
                      for r, d in zip(ra[sel], dec[sel], strict=True)]
        mean[name] = np.mean(per_circle)
    assert mean["plane"] > 2.5 * mean["high"]
    assert 0.5 < mean["high"] < 3.0


def test_counts_in_circles_are_over_dispersed(survey: Survey) -> None:
    fields = _often_observed_fields(survey)
    ra, dec = survey.fields.ra_deg[fields], survey.fields.dec_deg[fields]
    high = np.abs(_galactic_b(ra, dec)) > 30
    ratios, distinct = [], []
    for r, d in zip(ra[high], dec[high], strict=True):
        counts = counts_in_circle(survey, r, d)
        if counts.sum() > 0:
            ratios.append(counts.var() / counts.mean())
        observed = observed_nights_at(survey, r, d)
        distinct.append(counts_in_circle(survey, r, d, distinct=True)[observed].mean())
    assert len(ratios) >= 10
    assert np.median(ratios) > 1.5
    assert 0.6 < np.mean(distinct) < 1.6  # ≈ 1 object per observed night at high latitude


def test_variables_alert_on_many_nights(survey: Survey) -> None:
    var = ~survey.new
    assert 0.28 < var.mean() < 0.42
    assert not survey.first_of_object[var].any()
    pairs = np.unique(np.stack([survey.object_id[var], survey.night[var]]), axis=1)
    nights_per_variable = np.bincount(pairs[0])[np.unique(pairs[0])]
    assert np.mean(nights_per_variable) > 2.5
    assert nights_per_variable.max() >= 8
    assert not survey.object_is_transient[survey.object_id[var]].any()


def test_transients_discovered_once_then_detected_on_later_nights(survey: Survey) -> None:
    tr = np.flatnonzero(survey.new)
    obj, night, first = survey.object_id[tr], survey.night[tr], survey.first_of_object[tr]
    discovered = obj[first]
    assert len(np.unique(discovered)) == len(discovered)
    first_row = np.unique(obj, return_index=True)  # rows are in time order
    is_first = np.zeros(len(tr), dtype=bool)
    is_first[first_row[1]] = True
    assert not (first & ~is_first).any()
    pairs = np.unique(np.stack([obj, night]), axis=1)
    nights_per_object = np.bincount(pairs[0])[np.unique(pairs[0])]
    assert 1.5 < nights_per_object.mean() < 10
    assert 0.5 < len(discovered) / len(np.unique(obj)) < 1.0  # the rest: found during burn-in


def test_same_object_twice_in_a_night(survey: Survey) -> None:
    key = survey.object_id * 1000 + survey.night
    _, counts = np.unique(key, return_counts=True)
    assert (counts >= 2).mean() > 0.1
    pairs = np.stack([survey.object_id, survey.time])
    assert np.unique(pairs, axis=1).shape[1] == survey.n_detections


def test_rotate_keeps_structure_and_moves_ra(survey: Survey) -> None:
    delta = 123.4
    rotated = rotate(survey, delta)
    for name in ("object_id", "dec_deg", "time", "night", "field", "new", "first_of_object",
                 "observed", "lost"):
        np.testing.assert_array_equal(getattr(rotated, name), getattr(survey, name), err_msg=name)
    np.testing.assert_allclose(_wrap180(rotated.ra_deg - survey.ra_deg - delta), 0.0, atol=1e-9)
    assert rotated.ra_deg.min() >= 0 and rotated.ra_deg.max() < 360
    np.testing.assert_array_equal(rotated.field_of(rotated.ra_deg, rotated.dec_deg), survey.field)
    np.testing.assert_allclose(
        _wrap180(rotated.visible_center_deg - survey.visible_center_deg - delta), 0.0, atol=1e-9)
    back = rotate(rotated, -delta)
    np.testing.assert_allclose(_wrap180(back.ra_deg - survey.ra_deg), 0.0, atol=1e-9)
    np.testing.assert_array_equal(back.field_of(survey.ra_deg, survey.dec_deg), survey.field)


def _objects_per_observed_night(survey: Survey, ra: float, dec: float) -> float:
    """Distinct objects detected in a 3° circle over the run, per night its field was observed."""
    inside = separation_deg(survey.ra_deg, survey.dec_deg, ra, dec) <= 3.0
    return len(np.unique(survey.object_id[inside])) / observed_nights_at(survey, ra, dec).sum()


def test_rotation_moves_the_galactic_plane_off_a_fixed_region(survey: Survey) -> None:
    ra, dec = 86.4, 28.9  # the Galactic anticentre (l = 180°, b = 0°)
    moved = rotate(survey, -40.0)  # the visible range moves too: keep the region visible
    here = _objects_per_observed_night(survey, ra, dec)
    assert here > 2 * _objects_per_observed_night(moved, ra, dec)


def test_iter_nights_streams_every_row_in_time_order(survey: Survey) -> None:
    seen = list(iter_nights(survey))
    assert [night for night, _ in seen] == list(range(survey.n_nights))
    rows = np.concatenate([idx for _, idx in seen])
    np.testing.assert_array_equal(rows, np.arange(survey.n_detections))
    for night, idx in seen:
        assert np.all(survey.night[idx] == night)
        assert len(idx) == 0 or not survey.lost[night]


def test_times_convert_to_utc_datetimes(survey: Survey) -> None:
    assert mjd_to_datetimes(np.array([60310.25])) == [datetime(2024, 1, 1, 6, tzinfo=UTC)]
    stamps = survey.datetimes()
    assert len(stamps) == survey.n_detections
    assert all(s.tzinfo is UTC for s in stamps[:10])
    assert stamps == sorted(stamps)


def test_arrays_are_read_only(survey: Survey) -> None:
    with pytest.raises(ValueError, match="read-only"):
        survey.ra_deg[0] = 0.0
