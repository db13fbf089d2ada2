"""mma.skymaps.shapes: Fisher circle maps against the closed-form Fisher distribution."""

from __future__ import annotations

import functools

import healpy as hp
import numpy as np
import pytest
from ligo.skymap import moc

from mma.errors import InvalidValue
from mma.skymaps.region import Region, build_region
from mma.skymaps.shapes import (
    circle_map,
    fisher_cdf,
    fisher_kappa,
    fisher_mixture_map,
    fisher_pdf,
)

# (ra, dec, radius, containment): tiny to wide, a pole, both sides of RA = 0,
# GRB 170817A's GBM 1-sigma circle, an XRT-like 3.5 arcsec circle.
CASES = [
    (10.0, 20.0, 0.1, 0.9),
    (359.99, 0.0, 1.0, 0.9),
    (0.01, 89.9, 5.0, 0.68),
    (100.0, -89.95, 30.0, 0.9),
    (186.62, -48.84, 17.45, 0.3935),
    (50.0, 50.0, 3.5 / 3600, 0.9),
]
IDS = ["0.1deg", "ra-wrap", "north-pole", "south-pole-30deg", "gbm-1sigma", "3.5arcsec"]


@functools.cache
def built(case: tuple[float, float, float, float]):
    table = circle_map(*case)
    return table, build_region(table)


def ring(ra: float, dec: float, theta_deg: float, n: int, rng: np.random.Generator):
    """n positions [deg] at angular distance theta_deg from (ra, dec), random azimuths."""
    centre = hp.ang2vec(ra, dec, lonlat=True)
    east = np.cross([0.0, 0.0, 1.0], centre)
    east = east / np.linalg.norm(east) if np.linalg.norm(east) > 1e-9 else np.array([0, 1.0, 0])
    north = np.cross(centre, east)
    azimuth = rng.uniform(0, 2 * np.pi, n)[:, None]
    theta = np.radians(theta_deg)
    vec = np.cos(theta) * centre + np.sin(theta) * (np.cos(azimuth) * east
                                                    + np.sin(azimuth) * north)
    return hp.vec2ang(vec, lonlat=True)


def theta_at(cl: float, kappa: float) -> float:
    """Inverse of fisher_cdf [deg]."""
    one_minus_cos = -np.log1p(-cl * -np.expm1(-2 * kappa)) / kappa
    return float(np.degrees(2 * np.arcsin(np.sqrt(one_minus_cos / 2))))


def separation_deg(ra, dec, ra0, dec0):
    v, c = hp.ang2vec(ra, dec, lonlat=True), hp.ang2vec(ra0, dec0, lonlat=True)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(v, c), axis=-1), v @ c))


@pytest.mark.parametrize(("radius", "containment"), [
    (0.1, 0.9), (1.0, 0.5), (10.0, 0.9), (30.0, 0.99), (60.0, 0.9), (120.0, 0.9),
    (3.5 / 3600, 0.9), (17.45, 0.3935),
])
def test_kappa_gives_the_requested_containment(radius, containment):
    kappa = fisher_kappa(radius, containment)
    assert fisher_cdf(radius, kappa) == pytest.approx(containment, abs=1e-12)


def test_small_circles_reduce_to_the_gaussian_sigma():
    # 90 % radius r of a 2-D Gaussian: sigma = r / 2.146
    sigma = np.radians(1.0) / np.sqrt(-2 * np.log(1 - 0.9))
    assert fisher_kappa(1.0, 0.9) == pytest.approx(1 / sigma**2, rel=1e-4)


@pytest.mark.parametrize(("radius", "containment"), [(170.0, 0.9), (90.0, 0.5), (0.0, 0.9),
                                                     (1.0, 1.0), (1.0, 0.0), (200.0, 0.9)])
def test_impossible_circles_are_invalid(radius, containment):
    with pytest.raises(InvalidValue):
        fisher_kappa(radius, containment)


def test_pdf_integrates_to_one():
    kappa = fisher_kappa(7.0, 0.9)
    theta = np.linspace(0, 180, 200001)
    integrand = fisher_pdf(theta, kappa) * 2 * np.pi * np.sin(np.radians(theta))
    assert np.trapezoid(integrand, np.radians(theta)) == pytest.approx(1, abs=1e-8)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_circle_map_is_a_normalised_multiorder_map(case):
    table, region = built(case)
    assert 10_000 < region.n_tiles <= 60_000
    assert abs(np.sum(table["PROBDENSITY"] * moc.uniq2pixarea(table["UNIQ"])) - 1) < 1e-12
    assert np.sum(region.area_sr) == pytest.approx(4 * np.pi, rel=1e-12)  # whole sky
    assert len(np.unique(moc.uniq2order(table["UNIQ"]))) > 5  # refined, not flat
    assert table.meta["kappa"] == fisher_kappa(case[2], case[3])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_credible_level_at_angular_distance_matches_closed_form(case):
    """At each distance theta, CL averaged over azimuth equals P(< theta) to 1e-3, and no
    single point is off by more than the ~1e-2 a tile's annulus spans."""
    ra0, dec0, _, containment = case
    table, region = built(case)
    kappa = table.meta["kappa"]
    rng = np.random.default_rng(8)
    for target in [0.01, 0.05, *np.linspace(0.1, 0.9, 9), containment, 0.95, 0.99]:
        theta = theta_at(target, kappa)
        ra, dec = ring(ra0, dec0, theta, 1000, rng)
        cl = region.credible_level[region.locate(ra, dec)]
        assert abs(cl.mean() - target) < 1e-3, (theta, cl.mean(), target)
        assert np.abs(cl - target).max() < 1.5e-2


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_tile_centres_and_densities_follow_the_fisher_profile(case):
    ra0, dec0, _, _ = case
    table, region = built(case)
    kappa = table.meta["kappa"]
    order, ipix = moc.uniq2nest(table["UNIQ"])
    ra, dec = hp.pix2ang(1 << order.astype(np.int64), ipix, nest=True, lonlat=True)
    theta = separation_deg(ra, dec, ra0, dec0)
    near = theta < theta_at(0.999, kappa)
    idx = region.locate(ra[near], dec[near])
    assert np.abs(region.credible_level[idx] - fisher_cdf(theta[near], kappa)).max() < 5e-3
    # Tile means of the density inside the 90 % region: within 0.2 % of the density at the
    # tile centre (further out tiles are coarser and the density falls steeply across them).
    core = theta < theta_at(0.9, kappa)
    idx = region.locate(ra[core], dec[core])
    np.testing.assert_allclose(region.probdensity[idx], fisher_pdf(theta[core], kappa),
                               rtol=2e-3)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_area_of_the_containment_region_is_the_cap(case):
    _, _, radius, containment = case
    _, region = built(case)
    cap_deg2 = 2 * np.pi * (1 - np.cos(np.radians(radius))) * np.square(180 / np.pi)
    assert region.area_deg2(containment) == pytest.approx(cap_deg2, rel=1e-3)


def test_ra_wrap_circle_is_symmetric_across_zero():
    """Points on either side of RA = 0 (the circle is centred at RA 359.99) score alike."""
    table, region = built(CASES[1])
    target = 0.5
    ra, dec = ring(359.99, 0.0, theta_at(target, table.meta["kappa"]), 4000,
                   np.random.default_rng(6))
    cl = region.credible_level[region.locate(ra, dec)]
    west, east = ra > 180, ra < 180
    assert west.sum() > 1000 and east.sum() > 1000
    assert abs(cl[west].mean() - target) < 1.5e-3
    assert abs(cl[east].mean() - target) < 1.5e-3


def test_mixture_map_credible_levels_match_the_weighted_cdf():
    """GBM-style core + tail systematic model (GND_POS weights)."""
    kappas = [fisher_kappa(3.72, 0.3935), fisher_kappa(13.7, 0.3935)]
    weights = [0.804, 0.196]
    table = fisher_mixture_map(120.0, -30.0, kappas, weights)
    region: Region = build_region(table)
    rng = np.random.default_rng(1)
    for theta in (1.0, 4.0, 10.0, 25.0):
        ra, dec = ring(120.0, -30.0, theta, 1000, rng)
        cl = region.credible_level[region.locate(ra, dec)]
        expected = sum(w * fisher_cdf(theta, k) for w, k in zip(weights, kappas, strict=True))
        assert abs(cl.mean() - expected) < 1e-3


def test_bad_centre_is_invalid():
    with pytest.raises(InvalidValue):
        circle_map(10.0, 95.0, 1.0)
    with pytest.raises(InvalidValue):
        fisher_mixture_map(10.0, 0.0, [10.0], [-1.0])
