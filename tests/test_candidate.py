"""The candidate's summary of its object, and when a re-score is material (pure functions)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from mma.match.candidate import (
    Thresholds,
    coincidence_id,
    count_prior,
    light_curve_rates,
    material_changes,
    mean_position,
    payload_of,
    summarise,
)
from mma.match.scoring import score_match
from mma.models import Detection, StoredEvent, StoredObject

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def det(i: int, hours: float, ra: float = 10.0, dec: float = 20.0, *, band: str = "r",
        mag: float | None = 19.0, vetoes: tuple[str, ...] = (),
        history: tuple[datetime, ...] = (), source: str | None = None) -> Detection:
    return Detection(alert_pk=i, alert_id=str(i), time=T0 + timedelta(hours=hours),
                     ra_deg=ra, dec_deg=dec, hpx29=0, band=band, magnitude=mag,
                     magnitude_err=0.1, vetoes=vetoes, history=history,
                     history_source=source)


def obj(*detections: Detection, first: datetime | None = None) -> StoredObject:
    times = [d.time for d in detections]
    return StoredObject(1, "ZTF", "ZTF25abc", first or min(times),
                        tuple(sorted(detections, key=lambda d: d.time)))


def test_id_is_per_object_not_per_alert() -> None:
    assert coincidence_id("S1", "ZTF", "ZTF25abc") == coincidence_id("S1", "ZTF", "ZTF25abc")
    assert coincidence_id("S1", "ZTF", "ZTF25abc") != coincidence_id("S1", "ZTF", "ZTF25abd")
    assert coincidence_id("S1", "ZTF", "x") != coincidence_id("S2", "ZTF", "x")


def test_mean_position_across_ra_zero_and_its_scatter() -> None:
    # Two detections 0.2 deg apart astride RA 0: the mean is at RA 0, not 180.
    ra, dec, scatter = mean_position([det(1, 1, ra=359.9, dec=0.0), det(2, 2, ra=0.1, dec=0.0)])
    assert min(ra, 360 - ra) == pytest.approx(0.0, abs=1e-9) and dec == pytest.approx(0.0)
    assert scatter == pytest.approx(0.1 * 3600, rel=1e-6)
    # Near the pole, a plain average of RA would be meaningless; unit vectors are not.
    ra, dec, _ = mean_position([det(1, 1, ra=0.0, dec=89.9), det(2, 2, ra=180.0, dec=89.9)])
    assert dec == pytest.approx(90.0, abs=1e-6)


def test_summary_of_an_object_in_the_window() -> None:
    detections = [det(1, -30), det(2, -2, mag=19.5), det(3, 5, mag=18.0),
                  det(4, 30, mag=18.5, band="g"), det(5, 31, vetoes=("rb=0.1<0.5",)),
                  det(6, 60, mag=19.2)]
    start, end = T0 - timedelta(days=1), T0 + timedelta(days=14)
    s = summarise(obj(*detections), T0, start, end)
    assert s is not None
    assert [d.alert_id for d in s.detections] == ["2", "3", "4", "6"]  # -30 h is outside
    assert s.n_vetoed == 1 and not s.vetoed
    assert s.first_after_t0 == T0 + timedelta(hours=5)
    assert s.reference_time == s.first_after_t0
    assert s.last_detection == T0 + timedelta(hours=60)
    assert s.first_detection == T0 - timedelta(hours=30)
    assert s.peak_magnitude == 18.0 and s.peak_band == "r"
    # r band: 19.5 -> 18.0 in 7 h (rise 1.5 / (7/24) mag/day), 18.0 -> 19.2 in 55 h.
    assert s.rise_rate == pytest.approx(1.5 / (7 / 24))
    assert s.fade_rate == pytest.approx(1.2 / (55 / 24))
    # Vetted stored detections before t0 - 60 s: the ones at -30 h and -2 h.
    assert s.n_prior == 2 and s.history_source == "stored_alerts"
    assert s.latest_alert_pk == 6


def test_all_vetoed_is_a_vetoed_candidate_and_no_detection_is_none() -> None:
    s = summarise(obj(det(1, 2, vetoes=("negative",)), det(2, 3, vetoes=("withdrawn",))),
                  T0, T0 - timedelta(days=1), T0 + timedelta(days=14))
    assert s is not None and s.vetoed and s.vetoes == ("negative", "withdrawn")
    assert s.detections == () and s.reference_time == T0 + timedelta(hours=2)
    assert summarise(obj(det(1, 400)), T0, T0 - timedelta(days=1),
                     T0 + timedelta(days=14)) is None


def test_prior_detections_unite_packet_history_and_stored_alerts() -> None:
    before = [T0 - timedelta(days=d) for d in (10, 5, 2)]
    # The packet of the alert at +5 h lists three earlier detections; the one 2 days
    # before t0 is also a stored alert (counted once), and one just before t0 is within
    # the 60 s margin (not counted).
    detections = [det(1, -48, source="ztf.prv_candidates"),
                  det(2, 5, history=(*before, T0 - timedelta(seconds=30)),
                      source="ztf.prv_candidates")]
    assert count_prior(detections, T0 - timedelta(seconds=60)) == 3
    s = summarise(obj(*detections), T0, T0 - timedelta(days=1), T0 + timedelta(days=14))
    assert s is not None and s.n_prior == 3 and s.history_source == "ztf.prv_candidates"


def test_rates_need_two_points_an_hour_apart() -> None:
    assert light_curve_rates([det(1, 1)]) == (None, None)
    assert light_curve_rates([det(1, 1, mag=19.0), det(2, 1.5, mag=18.0)]) == (None, None)
    rise, fade = light_curve_rates([det(1, 0, mag=19.0), det(2, 24, mag=18.0)])
    assert rise == pytest.approx(1.0) and fade is None


def record(**values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "flags": [], "detections": [{"alert_id": "1"}], "n_detections": 1,
        "n_vetoed_detections": 0, "credible_level": 0.5, "log_bayes_factor": 3.0,
        "p_chance": 0.2, "region_version": 1}
    base.update(values)
    return base


@pytest.mark.parametrize(("new", "expected"), [
    (record(), []),
    (record(credible_level=0.509, log_bayes_factor=3.09, p_chance=0.21), []),
    (record(credible_level=0.52), ["credible_level"]),
    (record(log_bayes_factor=2.8), ["log_bayes_factor"]),
    (record(p_chance=0.23), ["p_chance"]),
    (record(flags=["pre_existing"]), ["flags"]),
    (record(detections=[{"alert_id": "1"}, {"alert_id": "2"}], n_detections=2),
     ["detections"]),
    (record(n_vetoed_detections=3), []),  # a bogus subtraction beside it is no news
    (record(region_version=2, credible_level=0.7), ["credible_level", "region"]),
    (record(region_version=2), ["region"]),  # always: the record names its map
    (record(log_bayes_factor=-math.inf), ["log_bayes_factor"]),
])
def test_material_changes(new: dict[str, object], expected: list[str]) -> None:
    assert material_changes(record(), new, Thresholds()) == expected


def test_crossing_a_channel_threshold_is_material_however_small() -> None:
    th = Thresholds(p_chance_cuts=(0.1,), credible_level_cuts=(0.9,),
                    log_bayes_factor_cuts=(2.0,))
    assert material_changes(record(p_chance=0.1005), record(p_chance=0.0999), th) == [
        "p_chance"]
    assert material_changes(record(credible_level=0.899), record(credible_level=0.901),
                            th) == ["credible_level"]
    assert material_changes(record(log_bayes_factor=2.01), record(log_bayes_factor=1.99),
                            th) == ["log_bayes_factor"]


@pytest.mark.parametrize(("old", "new", "top", "expected"), [
    (1, 2, 10, True), (11, 12, 10, False), (10, 11, 10, True), (None, 30, 10, True),
    (30, 31, 0, True), (3, 3, 10, False)])
def test_rank_materiality(old: int | None, new: int | None, top: int, expected: bool) -> None:
    assert Thresholds(rank_top=top).rank_is_material(old, new) is expected


def test_position_is_finite_for_identical_detections() -> None:
    ra, dec, scatter = mean_position([det(1, 1), det(2, 2), det(3, 3)])
    assert (ra, dec) == pytest.approx((10.0, 20.0)) and np.isfinite(scatter)
    assert scatter == pytest.approx(0.0, abs=1e-3)


def test_magnitudes_that_are_not_numbers_are_not_measured() -> None:
    """NaN and inf magnitudes (a Rubin flux near 0) count as none: not the peak, no rate,
    and ``null`` in the record, which is otherwise finite (checked where it is built)."""
    detections = [det(1, 1, mag=math.inf), det(2, 30, mag=19.0), det(3, 60, mag=math.nan),
                  det(4, 90, mag=18.0)]
    detections[1] = Detection(**{**detections[1].__dict__, "magnitude_err": math.inf})
    s = summarise(obj(*detections), T0, T0 - timedelta(days=1), T0 + timedelta(days=14))
    assert s is not None and s.peak_magnitude == 18.0
    assert s.rise_rate == pytest.approx(1.0 / (60 / 24)) and s.fade_rate is None
    event = StoredEvent(pk=1, event_id="S250301x", messenger="gw", event_class="gw.cbc",
                        instrument="LVK", event_time=T0, status="active", test=False,
                        aliases=("S250301x",), properties={}, flags=())
    score = score_match(prob_density_sr=10.0, credible_level=0.5, searched_area_deg2=100.0,
                        dt_days=0.04, window=(-1.0, 14.0), n_background=0.5,
                        n_background_err=0.1, background_density_sr=1.0,
                        background_sky_total=10.0, background_unmeasured=False)
    payload = payload_of("c", event, 1, obj(*detections), s, score)
    assert [(d["magnitude"], d["magnitude_err"]) for d in payload["detections"]] == [
        (None, 0.1), (19.0, None), (None, 0.1), (18.0, 0.1)]
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload
