"""Closed-form checks of the score components."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mma.config import load_config
from mma.match import scoring
from mma.match.finite import LN_FLOOR

RULES = load_config(environ={}).section("vetting.ztf")


def test_b_sky_is_one_for_a_uniform_map_over_an_even_background() -> None:
    # A map uniform over the sky carries no information: ln B_sky = 0 when the
    # background is even too (density = total / 4 pi).
    even = (100.0 / (4.0 * math.pi), 100.0)
    assert scoring.ln_b_sky(1.0 / (4.0 * math.pi), *even) == pytest.approx(0.0, abs=1e-15)
    # A map concentrated in 1 % of the sky: density 100x uniform.
    assert scoring.ln_b_sky(100.0 / (4.0 * math.pi), *even) == pytest.approx(math.log(100.0))
    # Where the map says 0 (or not a number): the floor, never -inf.
    for rho in (0.0, -1.0, math.nan, math.inf):
        assert scoring.ln_b_sky(rho, *even) == LN_FLOOR


def test_b_sky_is_against_the_local_background_density() -> None:
    """Where the survey sees 10x its mean density, a map density buys 10x less."""
    rho, total = 50.0, 1000.0
    mean = total / (4.0 * math.pi)
    assert scoring.ln_b_sky(rho, 10 * mean, total) == pytest.approx(
        scoring.ln_b_sky(rho, mean, total) - math.log(10.0))
    # Nothing expected there: never +inf, the even-sky value instead.
    assert scoring.ln_b_sky(rho, 0.0, total) == pytest.approx(math.log(rho * 4 * math.pi))


def test_b_time_uniform_inside_window_only() -> None:
    assert scoring.ln_b_time_uniform(0.5, (-1.0, 14.0)) == 0.0
    assert scoring.ln_b_time_uniform(-1.0, (-1.0, 14.0)) == 0.0
    assert scoring.ln_b_time_uniform(14.5, (-1.0, 14.0)) == LN_FLOOR


def test_chance_probability_is_poisson() -> None:
    assert scoring.chance_probability(1.2) == pytest.approx(1.0 - math.exp(-1.2))
    assert scoring.chance_probability(1e-9) == pytest.approx(1e-9, rel=1e-8)  # no cancellation
    assert scoring.chance_probability(0.0) == 0.0
    assert scoring.chance_probability(-1.0) == 0.0


def test_score_match_composes_components() -> None:
    density = 50.0 / (4.0 * math.pi)
    s = scoring.score_match(prob_density_sr=density, credible_level=0.4,
                            searched_area_deg2=100.0, dt_days=0.5, window=(-1.0, 14.0),
                            n_background=1.0, n_background_err=0.1,
                            background_density_sr=10.0 / (4 * math.pi),
                            background_sky_total=10.0, background_unmeasured=False,
                            ln_b_t=0.3, ln_b_d=0.7, ln_prior=-0.2, p_astro=math.exp(-0.2))
    assert s.ln_b_sky == pytest.approx(math.log(50.0))
    assert s.log_bayes_factor == pytest.approx(math.log(50.0) + 0.3 + 0.7 - 0.2)
    assert s.p_chance == pytest.approx(-np.expm1(-1.0))
    assert s.window_days == 15.0
    odds = math.exp(s.log_bayes_factor) / 10.0
    assert s.p_association == pytest.approx(odds / (1 + odds))
    assert set(s.components()) >= {"ln_B_sky", "ln_B_t", "ln_B_D", "ln_prior", "p_astro",
                                   "n_background", "n_background_err"}


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
