"""The distance term of the score (mma.match.distance) against independent oracles."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.cosmology import Planck18, z_at_value
from ligo.skymap import distance as ansatz
from scipy.integrate import quad
from scipy.optimize import brentq
from scipy.stats import norm

from mma.config import Config, load_config
from mma.errors import ConfigError
from mma.match.distance import (
    DistanceSettings,
    distance_quantile_mpc,
    host_association_probability,
    ln_b_distance,
    ln_p_background_distance,
    redshift_at_distance,
)
from mma.match.finite import LN_CEILING, LN_FLOOR
from mma.skymaps.decode import read_multiorder
from mma.skymaps.region import MAX_ORDER, Region, build_region

REAL_MAPS = ("GW190814_PublicationSamples.multiorder.fits", "MS181101ab_bayestar.multiorder.fits")
HOSTILE = (0.0, -1.0, math.inf, -math.inf, math.nan)


def _real_region(corpus: Path, name: str) -> Region:
    return build_region(read_multiorder((corpus / "skymaps/gw" / name).read_bytes()))


# --- the reach: quantile of the marginal distance posterior -------------------------------

@pytest.mark.parametrize("name", REAL_MAPS)
def test_quantile_matches_ligo_marginal_ppf_on_real_map(corpus: Path, name: str) -> None:
    region = _real_region(corpus, name)
    ok, old_reach = region.distance_support()
    assert ok is not None and old_reach is not None
    prob = (region.probdensity * region.area_sr)[ok]
    assert region.distmu is not None and region.distsigma is not None \
        and region.distnorm is not None
    mu, sigma, dnorm = region.distmu[ok], region.distsigma[ok], region.distnorm[ok]
    for q in (0.5, 0.9, 0.99):
        oracle = float(ansatz.marginal_ppf(q, prob / prob.sum(), mu, sigma, dnorm))
        assert distance_quantile_mpc(region, q) == pytest.approx(oracle, rel=1e-4)
    # Monte Carlo from the ansatz: tiles by probability, distances by inverse CDF.
    rng = np.random.default_rng(1)
    tiles = rng.choice(len(prob), 400_000, p=prob / prob.sum())
    draws = ansatz.conditional_ppf(rng.uniform(size=tiles.size), mu[tiles], sigma[tiles],
                                   dnorm[tiles])
    q99 = distance_quantile_mpc(region)
    assert q99 == pytest.approx(float(np.quantile(draws, 0.99)), rel=0.01)
    assert q99 is not None and q99 < old_reach  # tighter than DISTMU + 4 DISTSIGMA


def _ansatz_cdf(d: float, mu: float, sigma: float) -> float:
    """Closed-form CDF of p(r) ∝ r^2 N(r; mu, sigma) on r >= 0."""
    def g(t: float) -> float:
        return (mu**2 + sigma**2) * norm.cdf(t) - sigma * (2 * mu + sigma * t) * norm.pdf(t)
    t0 = -mu / sigma
    return (g((d - mu) / sigma) - g(t0)) / (mu**2 + sigma**2 - g(t0))


def _whole_sky(mu: list[float], sigma: list[float]) -> Region:
    """The 12 order-0 tiles, uniform on the sky, with the given distance layers."""
    step = 1 << (2 * MAX_ORDER)
    lo = np.arange(12, dtype=np.int64) * step
    mu_a, sigma_a = np.array(mu), np.array(sigma)
    finite = np.isfinite(mu_a)
    dnorm = np.zeros(12)
    for i in np.flatnonzero(finite):
        t0 = -mu_a[i] / sigma_a[i]
        g0 = ((mu_a[i]**2 + sigma_a[i]**2) * norm.cdf(t0)
              - sigma_a[i] * (2 * mu_a[i] + sigma_a[i] * t0) * norm.pdf(t0))
        dnorm[i] = 1.0 / (mu_a[i]**2 + sigma_a[i]**2 - g0)
    return Region.from_tiles(lo, lo + step, np.full(12, 1 / (4 * math.pi)),
                             mu_a, sigma_a, dnorm)


def test_quantile_single_gaussian_closed_form() -> None:
    region = _whole_sky([100.0] * 12, [15.0] * 12)
    for q in (0.05, 0.5, 0.99):
        want = brentq(lambda d, q: _ansatz_cdf(d, 100.0, 15.0) - q, 0.0, 1000.0, args=(q,),
                      xtol=1e-10)
        assert distance_quantile_mpc(region, q) == pytest.approx(want, rel=1e-7)


def test_quantile_weights_tiles_and_skips_uninformative() -> None:
    # 6 tiles near, 5 far, 1 without distance information (DISTMU = +inf): excluded.
    region = _whole_sky([40.0] * 6 + [300.0] * 5 + [math.inf], [8.0] * 6 + [60.0] * 5 + [1.0])

    def mixture(d: float) -> float:
        return (6 * _ansatz_cdf(d, 40.0, 8.0) + 5 * _ansatz_cdf(d, 300.0, 60.0)) / 11

    for q in (0.3, 0.6, 0.99):
        want = brentq(lambda d, q: mixture(d) - q, 0.0, 5000.0, args=(q,), xtol=1e-10)
        assert distance_quantile_mpc(region, q) == pytest.approx(want, rel=1e-7)


def test_quantile_none_without_distance_and_bad_q() -> None:
    region = _whole_sky([100.0] * 12, [15.0] * 12)
    assert distance_quantile_mpc(region.without_distance()) is None
    assert distance_quantile_mpc(_whole_sky([math.inf] * 12, [1.0] * 12)) is None
    for q in (0.0, 1.0, -0.5, math.nan):
        with pytest.raises(ValueError):
            distance_quantile_mpc(region, q)


# --- the comoving-volume background -----------------------------------------------------

@pytest.mark.parametrize("reach", [5.0, 200.0, 3000.0, 30000.0])
def test_background_integrates_to_one(reach: float) -> None:
    total, _ = quad(lambda d: math.exp(ln_p_background_distance(d, reach)), 0.0, reach,
                    limit=200, points=[reach * 1e-3, reach * 0.1])
    assert total == pytest.approx(1.0, abs=1e-5)


def test_background_euclidean_limit() -> None:
    for d, reach in ((0.01, 0.1), (0.1, 1.0), (0.5, 1.0)):
        assert math.exp(ln_p_background_distance(d, reach)) == pytest.approx(
            3 * d**2 / reach**3, rel=1e-3)
    # At cosmological distances the rate grows slower than D^2: less weight at the reach.
    assert math.exp(ln_p_background_distance(4000.0, 4000.0)) < 0.9 * 3 / 4000.0


def test_background_matches_astropy_oracle() -> None:
    """p_bg(D) = (dVc/dz)/(1+z) / (dD_L/dz) / integral to z(R), all by astropy."""
    for d, reach in ((500.0, 1000.0), (3000.0, 8000.0)):
        z_d = z_at_value(Planck18.luminosity_distance, d * u.Mpc).value
        z_r = z_at_value(Planck18.luminosity_distance, reach * u.Mpc).value

        def dn_dz(z: float) -> float:
            return float(Planck18.differential_comoving_volume(z).value) / (1 + z)

        total, _ = quad(dn_dz, 0.0, z_r, epsrel=1e-10)
        h = 1e-5
        ddl_dz = float((Planck18.luminosity_distance(z_d + h)
                        - Planck18.luminosity_distance(z_d - h)).value) / (2 * h)
        want = dn_dz(z_d) / ddl_dz / total
        assert math.exp(ln_p_background_distance(d, reach)) == pytest.approx(want, rel=1e-5)
        assert redshift_at_distance(d) == pytest.approx(z_d, rel=1e-6)


def test_background_reach_extends_to_host() -> None:
    beyond = ln_p_background_distance(500.0, 200.0)
    assert math.isfinite(beyond)
    assert beyond == ln_p_background_distance(500.0, 500.0)
    assert ln_p_background_distance(500.0, None) == beyond
    assert ln_p_background_distance(0.0, 100.0) == -math.inf


# --- host association -------------------------------------------------------------------

def test_host_association_exponential_in_projected_offset() -> None:
    # AT2017gfo: 10.6 arcsec from NGC 4993 at 40 Mpc, about 2 kpc.
    z = z_at_value(Planck18.luminosity_distance, 40.0 * u.Mpc).value
    r_kpc = 10.6 * Planck18.kpc_proper_per_arcmin(z).to_value("kpc / arcmin") / 60.0
    assert host_association_probability(10.6, 40.0) == pytest.approx(
        math.exp(-r_kpc / 20.0), rel=1e-5)
    s = DistanceSettings()
    assert host_association_probability(0.0, 40.0) == s.host_probability_max
    assert host_association_probability(1e5, 40.0) == s.host_probability_min
    assert host_association_probability(math.inf, 40.0) == s.host_probability_min
    seps = [0.5, 2.0, 10.0, 30.0, 100.0]
    probs = [host_association_probability(x, 100.0) for x in seps]
    assert probs == sorted(probs, reverse=True) and len(set(probs)) == len(probs)
    # The same angle is a larger offset farther away.
    assert host_association_probability(10.0, 400.0) < host_association_probability(10.0, 40.0)
    wide = DistanceSettings(host_offset_scale_kpc=60.0)
    assert host_association_probability(30.0, 100.0, settings=wide) > probs[3]


def test_host_association_without_offset_or_distance() -> None:
    s = DistanceSettings(host_probability_no_offset=0.3)
    for sep, d in ((None, 40.0), (math.nan, 40.0), (-1.0, 40.0), (5.0, None), (5.0, 0.0),
                   (5.0, math.nan), (5.0, -3.0), (5.0, math.inf)):
        assert host_association_probability(sep, d, settings=s) == 0.3


# --- the distance Bayes factor ----------------------------------------------------------

def test_b_d_tends_to_one_without_host_association() -> None:
    for p_host in (0.0, 1e-12):
        assert ln_b_distance(0.02, 40.0, 120.0, p_host) == pytest.approx(0.0, abs=1e-9)
    assert ln_b_distance(0.02, None, 120.0, 0.9) == 0.0
    strong = ln_b_distance(0.02, 40.0, 120.0, 0.99)
    weak = ln_b_distance(0.02, 40.0, 120.0, 0.2)
    assert strong > weak > 0.0
    assert ln_b_distance(0.0, 40.0, 120.0, 0.3) == pytest.approx(math.log(0.7))
    # Full association: the plain density ratio.
    want = math.log(0.02) - ln_p_background_distance(40.0, 120.0)
    assert ln_b_distance(0.02, 40.0, 120.0, 1.0) == pytest.approx(want)


def test_host_far_outside_the_distance_layers_is_evidence_against_not_minus_infinity(
        corpus: Path) -> None:
    """A host 40 sigma beyond the tile's distance: its density underflows to 0."""
    region = _real_region(corpus, REAL_MAPS[0])
    reach = distance_quantile_mpc(region)
    tile = int(region.density_order[0])
    assert region.distmu is not None and region.distsigma is not None
    far = float(region.distmu[tile] + 40.0 * region.distsigma[tile])
    pdf = float(region.distance_pdf(tile, far))
    assert pdf == 0.0
    # The catalogued galaxy is then a chance neighbour: ln(1 - P_host), P_host < 1.
    assert ln_b_distance(pdf, far, reach, 0.5) == pytest.approx(math.log(0.5))
    # A certain host (only by a direct call): the floor, the strongest evidence against.
    assert ln_b_distance(pdf, far, reach, 1.0) == LN_FLOOR
    # Just inside what a double holds (~37 sigma): as strong, still finite and ordered.
    near = float(region.distmu[tile] + 37.0 * region.distsigma[tile])
    assert LN_FLOOR <= ln_b_distance(float(region.distance_pdf(tile, near)), near, reach,
                                     1.0) < -600.0


def test_host_at_peak_beats_host_at_three_times(corpus: Path) -> None:
    region = _real_region(corpus, REAL_MAPS[0])
    reach = distance_quantile_mpc(region)
    tile = int(region.density_order[0])
    grid = np.linspace(1.0, 3000.0, 30000)
    pdf = region.distance_pdf(np.full(grid.size, tile), grid)
    peak = float(grid[np.argmax(pdf)])
    p_host = host_association_probability(2.0, peak)
    at_peak = ln_b_distance(float(region.distance_pdf(tile, peak)), peak, reach, p_host)
    far = ln_b_distance(float(region.distance_pdf(tile, 3 * peak)), 3 * peak, reach, p_host)
    assert at_peak > 0.0 and at_peak > far
    assert far < 0.0


def test_always_finite_on_hostile_inputs() -> None:
    values = (*HOSTILE, 0.5, 100.0, 1e-320, 1e300)
    for p_sig, d, reach, p_host in itertools.product(values, (*values, None),
                                                     (*values, None), (*HOSTILE, 0.5, 1.0)):
        got = ln_b_distance(p_sig, d, reach, p_host)
        assert LN_FLOOR <= got <= LN_CEILING, (p_sig, d, reach, p_host)
    for d, reach in itertools.product(values, (*values, None)):
        assert not math.isnan(ln_p_background_distance(d, reach))
    for sep, d in itertools.product((*HOSTILE, None, 3.0), (*HOSTILE, None, 50.0)):
        assert 0.0 < host_association_probability(sep, d) < 1.0


# --- configuration ----------------------------------------------------------------------

def test_defaults_match_config(config: Config) -> None:
    assert DistanceSettings.from_section(config.section("distance")) == DistanceSettings()


def test_config_override_and_bad_values(tmp_path: Path) -> None:
    cfg = load_config(environ={"MMA_DISTANCE__REACH_QUANTILE": "0.95",
                               "MMA_DISTANCE__HOST_OFFSET_SCALE_KPC": "10"},
                      system_file=tmp_path / "absent.toml")
    s = DistanceSettings.from_section(cfg.section("distance"))
    assert s.reach_quantile == 0.95 and s.host_offset_scale_kpc == 10.0
    for bad in ({"reach_quantile": 1.0}, {"host_offset_scale_kpc": 0.0},
                {"host_probability_min": 0.0}, {"host_probability_max": 1.0},
                {"host_probability_no_offset": 0.999}):
        with pytest.raises(ConfigError):
            DistanceSettings.from_section(bad)
