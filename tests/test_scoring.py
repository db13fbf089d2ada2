"""Closed-form checks of the score components."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mma.config import load_config
from mma.match import scoring

RULES = load_config(environ={}).section("vetting.ztf")


def test_b_sky_is_one_for_a_uniform_map() -> None:
    # A map uniform over the sky carries no information: ln B_sky = 0.
    assert scoring.ln_b_sky(1.0 / (4.0 * math.pi)) == pytest.approx(0.0, abs=1e-15)
    # A map concentrated in 1 % of the sky: density 100x uniform.
    assert scoring.ln_b_sky(100.0 / (4.0 * math.pi)) == pytest.approx(math.log(100.0))
    assert scoring.ln_b_sky(0.0) == -math.inf


def test_b_time_uniform_inside_window_only() -> None:
    assert scoring.ln_b_time_uniform(0.5, (-1.0, 14.0)) == 0.0
    assert scoring.ln_b_time_uniform(-1.0, (-1.0, 14.0)) == 0.0
    assert scoring.ln_b_time_uniform(14.5, (-1.0, 14.0)) == -math.inf


def test_chance_probability_is_poisson() -> None:
    # 40 unrelated sources a day over the sky, 1 % of them expected in the searched
    # part of the region, 3 days covered: N = 1.2.
    p, n = scoring.chance_probability(rate_per_day=40.0, background_fraction=0.01,
                                      covered_days=3.0)
    assert n == pytest.approx(1.2)
    assert p == pytest.approx(1.0 - math.exp(-1.2))
    p_small, n_small = scoring.chance_probability(1e-3, 1e-6, 1.0)
    assert p_small == pytest.approx(n_small, rel=1e-8)  # no cancellation for tiny N
    assert scoring.chance_probability(0.0, 0.5, 1.0) == (0.0, 0.0)
    assert scoring.chance_probability(10.0, 2.0, 1.0)[1] == pytest.approx(10.0)  # F <= 1


def test_uniform_sky_reduces_to_rate_area_time() -> None:
    """For a whole-sky uniform survey, N = R[/sr/day] * A[sr] * T[days]."""
    rate_sr_day, area_sr, days = 3.0, 0.02, 15.0
    _, n = scoring.chance_probability(rate_sr_day * 4 * math.pi, area_sr / (4 * math.pi), days)
    assert n == pytest.approx(rate_sr_day * area_sr * days)


def test_distance_factor_against_volume_background() -> None:
    d_max = 400.0
    for distance in (40.0, 150.0, 390.0):
        p_bg = 3.0 * distance**2 / d_max**3
        # A signal density equal to the background density gives ln B_D = 0 ...
        assert scoring.ln_b_distance(p_bg, distance, d_max) == pytest.approx(0.0, abs=1e-12)
        # ... and ten times it gives ln 10.
        assert scoring.ln_b_distance(10 * p_bg, distance, d_max) == pytest.approx(math.log(10))
    # Beyond the range the background extends to the host, never to zero density.
    assert math.isfinite(scoring.ln_b_distance(1e-3, 800.0, d_max))
    assert scoring.ln_b_distance(0.0, 100.0, d_max) == -math.inf


def test_score_match_composes_components() -> None:
    density = 50.0 / (4.0 * math.pi)
    s = scoring.score_match(prob_density_sr=density, credible_level=0.4,
                            searched_area_deg2=100.0, dt_days=0.5, window=(-1.0, 14.0),
                            rate_per_day=200.0, background_fraction=0.002, covered_days=2.5,
                            ln_b_d=0.7)
    assert s.ln_b_sky == pytest.approx(math.log(50.0))
    assert s.log_bayes_factor == pytest.approx(math.log(50.0) + 0.7)
    assert s.n_background == pytest.approx(200.0 * 0.002 * 2.5)
    assert s.p_chance == pytest.approx(-np.expm1(-1.0))
    assert s.window_days == 15.0
    assert set(s.components()) >= {"ln_B_sky", "ln_B_t", "ln_B_D", "ln_prior",
                                   "n_background", "covered_days"}


@pytest.mark.parametrize(("quality", "reasons"), [
    ({"rb": 0.9, "drb": 0.99, "isdiffpos": True}, []),
    ({"rb": 0.3, "drb": 0.99, "isdiffpos": True}, ["rb=0.30<0.5"]),
    ({"rb": 0.9, "drb": 0.1, "isdiffpos": False}, ["drb=0.10<0.5", "negative_subtraction"]),
    ({"rb": 0.9, "ssdistnr": 3.0, "ssmagnr": 19.0}, ["known_solar_system_object"]),
    ({"rb": 0.9, "ssdistnr": 3.0, "ssmagnr": 22.0}, []),  # too faint to be the asteroid
    ({"rb": 0.9, "ssdistnr": None}, []),
    ({"sgscore1": 0.98, "distpsnr1": 0.5}, ["ps1_star"]),
    ({"sgscore1": 0.98, "distpsnr1": 5.0}, []),  # star too far away to be the source
    ({}, []),  # missing fields never veto
])
def test_ztf_vetting(quality: dict, reasons: list[str]) -> None:
    assert scoring.vet_ztf(quality, RULES) == reasons
