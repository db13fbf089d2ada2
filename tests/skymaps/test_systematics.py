"""mma.skymaps.systematics: the Fermi GBM core + tail model as RAVEN applies it."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from mma.errors import InvalidValue
from mma.skymaps.region import build_region
from mma.skymaps.shapes import fisher_cdf, fisher_pdf
from mma.skymaps.systematics import (
    MIN_STAT_RADIUS_DEG,
    MODELS,
    SystematicModel,
    component_kappas,
    stat_radius_68,
    systematic_map,
)

# GRB 170817A, GBM ground position (GCN 21506 / Goldstein et al. 2017), 1-sigma radius.
GRB170817A = (186.62, -48.84, 17.45)
AT2017GFO = (197.450374, -23.381495)


@functools.cache
def grb170817a():
    table = systematic_map(*GRB170817A, "fermi_gbm_gnd")
    return table, build_region(table)


def test_models_are_the_design_table():
    assert {name: (m.core_weight, m.core_deg, m.tail_deg) for name, m in MODELS.items()} == {
        "fermi_gbm_flt": (0.897, 7.52, 55.6),
        "fermi_gbm_gnd": (0.804, 3.72, 13.7),
        "fermi_gbm_fin": (0.900, 3.71, 14.3),
    }
    for model in MODELS.values():
        assert sum(model.weights) == pytest.approx(1.0, abs=1e-15)


def test_kappa_is_ravens_quadrature_sum():
    """kappa = 1 / (0.4356 (r_stat^2 + r_sys^2)), radii in radians (gwcelery's _fisher)."""
    core, tail = component_kappas(MODELS["fermi_gbm_gnd"], 17.45)
    assert core == pytest.approx(1 / (0.4356 * np.radians(np.hypot(17.45, 3.72)) ** 2), rel=1e-12)
    assert tail == pytest.approx(1 / (0.4356 * np.radians(np.hypot(17.45, 13.7)) ** 2), rel=1e-12)
    # 0.66 turns a 68 % radius into a Gaussian width: P(< sigma_total) ~ 68 % for the core
    # (exactly 1 - exp(-1 / (2 * 0.4356)) = 0.683 in the flat limit; 0.680 at 17.8 deg).
    assert fisher_cdf(np.hypot(17.45, 3.72), core) == pytest.approx(0.683, abs=5e-3)
    small, _ = component_kappas(SystematicModel("small", 1.0, 0.5, 0.5), 0.5)
    assert fisher_cdf(np.hypot(0.5, 0.5), small) == pytest.approx(
        1 - np.exp(-1 / (2 * 0.4356)), abs=1e-5)


def test_grb170817a_gives_at2017gfo_a_finite_density_and_a_level_below_one():
    table, region = grb170817a()
    centre = SkyCoord(GRB170817A[0] * u.deg, GRB170817A[1] * u.deg)
    theta = centre.separation(SkyCoord(AT2017GFO[0] * u.deg, AT2017GFO[1] * u.deg)).deg
    assert theta == pytest.approx(26.9, abs=0.05)
    idx = region.locate(*AT2017GFO)
    kappas, weights = table.meta["kappas"], table.meta["weights"]
    expected_cl = sum(w * fisher_cdf(theta, k) for k, w in zip(kappas, weights, strict=True))
    expected_rho = sum(w * fisher_pdf(theta, k) for k, w in zip(kappas, weights, strict=True))
    assert 0.5 < expected_cl < 0.99
    assert region.credible_level[idx] == pytest.approx(expected_cl, abs=1.5e-2)
    assert np.isfinite(region.probdensity[idx])
    assert region.probdensity[idx] == pytest.approx(expected_rho, rel=2e-2)
    assert region.credible_level[idx] < 1.0


def test_one_component_alone_matches_the_fisher_closed_form():
    """The core of the GND model, by itself, has P(< theta) = fisher_cdf at every theta."""
    (core, _), ra0, dec0 = component_kappas(MODELS["fermi_gbm_fin"], 2.0), 40.0, 10.0
    from mma.skymaps.shapes import fisher_mixture_map

    region = build_region(fisher_mixture_map(ra0, dec0, [core], [1.0]))
    centre = SkyCoord(ra0 * u.deg, dec0 * u.deg)
    for theta in (1.0, 3.0, 6.0, 10.0):
        ring = centre.directional_offset_by(np.linspace(0, 2 * np.pi, 500) * u.rad, theta * u.deg)
        cl = region.credible_level[region.locate(ring.ra.deg, ring.dec.deg)]
        assert cl.mean() == pytest.approx(fisher_cdf(theta, core), abs=2e-3)


def test_statistical_radius_floor_and_containment_rescaling():
    assert stat_radius_68(0.01) == MIN_STAT_RADIUS_DEG
    assert stat_radius_68(5.0, 0.68) == 5.0
    assert stat_radius_68(5.0, 0.3935) == 5.0
    # A 90 % radius is 2.146 sigma; the 68 % radius is 1.510 sigma.
    assert stat_radius_68(5.0, 0.9) == pytest.approx(5.0 * 1.5096 / 2.1460, rel=1e-3)
    table = systematic_map(10.0, 10.0, 0.0, "fermi_gbm_flt")
    assert table.meta["stat_radius_deg"] == MIN_STAT_RADIUS_DEG


def test_flight_tail_spreads_far():
    """FLT_POS tail (55.6 deg): 10 % of the probability lies beyond ~60 deg."""
    table = systematic_map(0.0, 0.0, 5.0, "fermi_gbm_flt")
    kappas, weights = table.meta["kappas"], table.meta["weights"]
    beyond = 1 - sum(w * fisher_cdf(60.0, k) for k, w in zip(kappas, weights, strict=True))
    assert 0.03 < beyond < 0.1
    assert math.isclose(sum(weights), 1.0)


@pytest.mark.parametrize("name", ["fermi_gbm", "FERMI_GBM_GND", ""])
def test_unknown_model_is_invalid(name):
    with pytest.raises(InvalidValue):
        systematic_map(10.0, 10.0, 3.0, name)
