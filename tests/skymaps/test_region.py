"""mma.skymaps.region against ligo.skymap's crossmatch, healpy and mocpy on real maps."""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import zlib
from pathlib import Path

import astropy.units as u
import healpy as hp
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table
from ligo.skymap import distance, moc
from ligo.skymap.postprocess.crossmatch import crossmatch
from mocpy import MOC

from mma.errors import BadSkymap, InvalidValue
from mma.skymaps.decode import read_multiorder
from mma.skymaps.region import Region, build_region, hpx29, tile_ranges

CORPUS = Path("/work/shared/corpus")
GWALERT = CORPUS / "gcn-json" / "igwn-gwalert"
FILES = {
    "G1028259": "skymaps/gw/G1028259_cwb_rrt_small_area.multiorder.fits",
    "GW190814": "skymaps/gw/GW190814_PublicationSamples.multiorder.fits",
    "M403699": "skymaps/gw/M403699_bayestar.multiorder.fits",
    "MS181101ab": "skymaps/gw/MS181101ab_bayestar.multiorder.fits",
    "MS220722v": "skymaps/gw/MS220722v_M252714_bayestar.multiorder.fits",
    "GW190425-flat": "skymaps/gw/GW190425_bayestar_G330561.fits.gz",
    "GW170817-flat": "skymaps/gw/GW170817_skymap.fits.gz",
    "swift-guano": "skymaps/grb/swift_bat_guano_742338069.multiorder.fits",
}
ALERTS = {
    "S240114aj": "O4-2024-01/S240114aj-preliminary-1.json",
    "S240112e": "O4-2024-01/S240112e-preliminary-1.json",
    "S230518h": "S230518h-initial.json",
}
MULTIORDER = ["G1028259", "GW190814", "M403699", "MS181101ab", "MS220722v", "swift-guano",
              "S240114aj", "S240112e", "S230518h"]
ALL_MAPS = [*MULTIORDER, "GW190425-flat", "GW170817-flat"]
AT2017GFO = (197.450374, -23.381495)



def sky_2d(table: Table) -> Table:
    """The 2-D columns only: crossmatch's 3-D volume integrals take seconds per map."""
    return table[["UNIQ", "PROBDENSITY"]]


@functools.cache
def load(name: str) -> tuple[Table, Region]:
    """Decoded table and Region, cached for the session (GW170817 takes ~8 s)."""
    if name in ALERTS:
        alert = json.loads((GWALERT / ALERTS[name]).read_text())
        raw = base64.b64decode(alert["event"]["skymap"])
    else:
        raw = (CORPUS / FILES[name]).read_bytes()
    table = read_multiorder(raw, max_bytes=2**29)  # GW170817 inflates to 403 MB
    return table, build_region(table)


def sample_points(region: Region, rng: np.random.Generator, n: int = 150):
    """n uniform positions, n drawn from the map (so CLs span 0-1), and the map maximum."""
    ra_u = rng.uniform(0, 360, n)
    dec_u = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    prob = region.probdensity * region.area_sr
    tiles = rng.choice(region.n_tiles, n, p=prob / prob.sum())
    ipix = region.lo[tiles] + rng.integers(0, region.hi[tiles] - region.lo[tiles])
    ra_m, dec_m = hp.pix2ang(1 << 29, ipix, nest=True, lonlat=True)
    top = int(np.argmax(region.probdensity))
    span = int(region.hi[top] - region.lo[top])
    nside = 1 << (29 - (span.bit_length() - 1) // 2)
    ra_x, dec_x = hp.pix2ang(nside, int(region.lo[top]) // span, nest=True, lonlat=True)
    return np.concatenate([ra_u, ra_m, [ra_x]]), np.concatenate([dec_u, dec_m, [dec_x]])


def region_uniq(region: Region) -> np.ndarray:
    order = 29 - np.log2(region.hi - region.lo).astype(np.int64) // 2
    return moc.nest2uniq(order.astype(np.int8), region.lo >> (2 * (29 - order)))


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n == "GW170817-flat" else n for n in ALL_MAPS])
def test_credible_level_area_and_density_match_crossmatch(name):
    table, region = load(name)
    ra, dec = sample_points(region, np.random.default_rng(zlib.crc32(name.encode())))
    idx = region.locate(ra, dec)
    assert np.all(idx >= 0)
    expected = crossmatch(sky_2d(table), SkyCoord(ra * u.deg, dec * u.deg), contours=(0.5, 0.9))
    cl = region.credible_level[idx]
    assert cl.min() < 0.05 and cl.max() > 0.5  # the sample spans the map
    np.testing.assert_allclose(cl, expected.searched_prob, rtol=0, atol=1e-6)
    np.testing.assert_allclose(region.searched_area_deg2[idx], expected.searched_area,
                               rtol=1e-6)
    np.testing.assert_allclose(region.probdensity[idx], expected.probdensity, rtol=1e-6)
    np.testing.assert_allclose([region.area_deg2(0.5), region.area_deg2(0.9)],
                               expected.contour_areas, rtol=1e-6)


@pytest.mark.parametrize("name", ALL_MAPS)
def test_normalised_sorted_disjoint_tiles(name):
    table, region = load(name)
    assert region.n_tiles == len(table)
    assert abs(region.total_probability - 1) < 1e-6
    assert abs(np.sum(region.probdensity * region.area_sr) - 1) < 1e-6
    assert np.all(region.lo[1:] >= region.hi[:-1])  # sorted and disjoint
    assert np.all(region.hi > region.lo)
    np.testing.assert_array_equal(np.sort(region_uniq(region)), np.sort(table["UNIQ"]))
    np.testing.assert_allclose(region.area_sr, moc.uniq2pixarea(region_uniq(region)),
                               rtol=1e-14)


@pytest.mark.parametrize("name", MULTIORDER)
def test_area90_agrees_with_mocpy(name):
    table, region = load(name)
    uniq = np.asarray(table["UNIQ"])
    prob = np.asarray(table["PROBDENSITY"]) * moc.uniq2pixarea(uniq)
    depth = int(moc.uniq2order(uniq).max())
    full_sky = 4 * 180**2 / np.pi

    def mocpy_area(**kwargs) -> float:
        cover = MOC.from_valued_healpix_cells(uniq.astype(np.uint64), prob, cumul_to=0.9,
                                              **kwargs)
        return float(cover.sky_fraction * full_sky)

    ours = region.area_deg2(0.9)
    # Cells straddling 90 % left out / put in bracket the interpolated area...
    assert mocpy_area(max_depth=depth) <= ours <= mocpy_area(max_depth=depth, strict=False)
    # ...and splitting them finely converges on it.
    split = mocpy_area(max_depth=min(depth + 4, 29), no_split=False)
    assert split == pytest.approx(ours, rel=0.01)


def test_gw170817_at2017gfo():
    table, region = load("GW170817-flat")
    tile = region.locate(*AT2017GFO)
    expected = crossmatch(sky_2d(table), SkyCoord(AT2017GFO[0] * u.deg, AT2017GFO[1] * u.deg))
    assert region.credible_level[tile] == pytest.approx(0.38, abs=0.005)
    assert region.credible_level[tile] == pytest.approx(expected.searched_prob, abs=1e-6)
    assert region.searched_area_deg2[tile] == pytest.approx(expected.searched_area, rel=1e-6)
    assert region.area_deg2(0.9) == pytest.approx(16, abs=0.5)  # GWTC-1: 16 deg^2
    # NGC 4993 is at ~40 Mpc: the conditional distance density peaks near there.
    pdf = region.distance_pdf(tile, np.array([20.0, 40.0, 80.0]))
    assert pdf[1] > 10 * max(pdf[0], pdf[2])


def test_lookup_matches_healpy_tile_search():
    _, region = load("MS181101ab")
    rng = np.random.default_rng(5)
    n = 20000
    ra = np.concatenate([rng.uniform(0, 360, n), [0.0, 359.9999999, 0.0, 180.0]])
    dec = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, n))), [0.0, 0.0, 90.0, -90.0]])
    coords = SkyCoord(ra * u.deg, dec * u.deg)
    theta, phi = 0.5 * np.pi - coords.dec.rad, coords.ra.rad
    uniq = region_uniq(region)
    by_uniq = np.argsort(uniq)
    expected = np.full(len(ra), -1)
    for order in np.unique(moc.uniq2order(uniq)):
        candidate = moc.nest2uniq(np.int8(order), hp.ang2pix(1 << int(order), theta, phi,
                                                             nest=True))
        pos = np.searchsorted(uniq[by_uniq], candidate).clip(0, len(uniq) - 1)
        hit = uniq[by_uniq][pos] == candidate
        assert np.all(expected[hit] == -1)  # exactly one order holds each point
        expected[hit] = by_uniq[pos[hit]]
    assert np.all(expected >= 0)
    np.testing.assert_array_equal(region.lookup(hpx29(ra, dec)), expected)


def test_lookup_outside_a_partial_map_is_minus_one():
    _, region = load("MS181101ab")
    keep = np.random.default_rng(2).random(region.n_tiles) < 0.7
    prob_kept = np.sum((region.probdensity * region.area_sr)[keep])
    part = Region.from_tiles(region.lo[keep], region.hi[keep],
                             region.probdensity[keep] / prob_kept)
    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(0, 360, 5000), np.degrees(np.arcsin(rng.uniform(-1, 1, 5000)))
    full_idx, part_idx = region.locate(ra, dec), part.locate(ra, dec)
    assert np.all((part_idx == -1) == ~keep[full_idx])
    inside = part_idx >= 0
    np.testing.assert_array_equal(part.lo[part_idx[inside]], region.lo[full_idx[inside]])


def test_points_on_tile_boundaries_nest_consistently():
    """hpx29 >> 2*(29-o) is healpy's own pixel at order o, even on edges and corners."""
    points = [(0.0, 0.0), (90.0, 0.0), (45.0, 41.8103148957786), (0.0, 90.0), (0.0, -90.0),
              (359.99999999, -41.8103148957786), (180.0, 19.47122063449069)]
    for order in (1, 4, 9):
        nside = 1 << order
        corners = hp.boundaries(nside, np.arange(0, 12 * nside**2, 7 * order + 1), step=2,
                                nest=True)
        lon, lat = hp.vec2ang(np.moveaxis(corners, 1, 2).reshape(-1, 3), lonlat=True)
        points += list(zip(lon, lat, strict=True))
    ra, dec = np.array(points).T
    coords = SkyCoord(ra * u.deg, dec * u.deg)  # crossmatch's conversion
    theta, phi = 0.5 * np.pi - coords.dec.rad, coords.ra.rad
    ipix29 = hpx29(ra, dec)
    for order in range(30):
        np.testing.assert_array_equal(ipix29 >> (2 * (29 - order)),
                                      hp.ang2pix(1 << order, theta, phi, nest=True))


def test_ties_are_ranked_as_crossmatch_ranks_them():
    rng = np.random.default_rng(9)
    uniq = moc.nest2uniq(np.int8(3), np.arange(768))
    density = rng.choice([0.0, 1.0, 2.0, 5.0], 768)
    density /= np.sum(density * moc.uniq2pixarea(uniq))
    table = Table({"UNIQ": uniq, "PROBDENSITY": density})
    region = build_region(table)
    ra, dec = rng.uniform(0, 360, 500), np.degrees(np.arcsin(rng.uniform(-1, 1, 500)))
    idx = region.locate(ra, dec)
    expected = crossmatch(table, SkyCoord(ra * u.deg, dec * u.deg))
    np.testing.assert_allclose(region.credible_level[idx], expected.searched_prob, atol=1e-12)
    np.testing.assert_allclose(region.searched_area_deg2[idx], expected.searched_area,
                               rtol=1e-12)


def test_from_tiles_rebuilds_the_same_region_in_any_order():
    _, region = load("S230518h")
    mu, sigma, norm = region.distmu, region.distsigma, region.distnorm
    assert mu is not None and sigma is not None and norm is not None
    perm = np.random.default_rng(4).permutation(region.n_tiles)
    rebuilt = Region.from_tiles(region.lo[perm], region.hi[perm], region.probdensity[perm],
                                mu[perm], sigma[perm], norm[perm])
    for field in dataclasses.fields(Region):
        np.testing.assert_array_equal(getattr(rebuilt, field.name), getattr(region, field.name))


def test_region_is_immutable_without_freezing_its_inputs():
    table, region = load("MS181101ab")
    with pytest.raises(ValueError, match="read-only"):
        region.probdensity[0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        region.lo = region.hi  # type: ignore[misc]
    assert table["DISTMU"].data.flags.writeable
    lo, hi, density = region.lo.copy(), region.hi.copy(), region.probdensity.copy()
    Region.from_tiles(lo, hi, density)
    assert lo.flags.writeable and hi.flags.writeable and density.flags.writeable


def test_distance_pdf_uses_the_tile_layers():
    _, region = load("MS181101ab")
    assert region.has_distance
    mu, sigma, norm = region.distmu, region.distsigma, region.distnorm
    assert mu is not None and sigma is not None and norm is not None
    tiles = np.array([0, 17, region.n_tiles - 1, -1])
    r = np.array([10.0, 40.0, 100.0, 40.0])
    got = region.distance_pdf(tiles, r)
    want = distance.conditional_pdf(r[:3], mu[tiles[:3]], sigma[tiles[:3]], norm[tiles[:3]])
    np.testing.assert_allclose(got[:3], want, rtol=1e-15)
    assert np.isnan(got[3])
    _, flat2d = load("G1028259")
    assert not flat2d.has_distance
    with pytest.raises(ValueError, match="no distance"):
        flat2d.distance_pdf(0, 40.0)


def test_tile_ranges_follow_the_alchemy_formula():
    order = np.array([0, 3, 29, 10])
    ipix = np.array([11, 700, 12 * 4**29 - 1, 5])
    lo, hi = tile_ranges(moc.nest2uniq(order.astype(np.int8), ipix))
    np.testing.assert_array_equal(lo, ipix << (2 * (29 - order)))
    np.testing.assert_array_equal(hi, (ipix + 1) << (2 * (29 - order)))


@pytest.mark.parametrize(("lo", "hi", "match"), [
    ([0, 4**28], [4**28, 3 * 4**28], "not level-29 HEALPix tiles"),  # span 2 * 4**28
    ([2], [6], "not level-29 HEALPix tiles"),  # span 4 but lo not a multiple of 4
    ([0, 0], [4**29, 4**28], "overlap"),
    ([0], [4**29], "total probability"),  # 1/12 of the sky at density 1/(4 pi)
])
def test_from_tiles_refuses_invalid_tiles(lo, hi, match):
    density = np.full(len(lo), 1 / (4 * np.pi))
    with pytest.raises(BadSkymap, match=match):
        Region.from_tiles(np.array(lo), np.array(hi), density)


def test_from_tiles_needs_all_or_no_distance_layers():
    lo = np.arange(12, dtype=np.int64) << 58
    with pytest.raises(ValueError, match="all of distmu"):
        Region.from_tiles(lo, lo + (1 << 58), np.full(12, 1 / (4 * np.pi)), distmu=np.ones(12))


@pytest.mark.parametrize(("ra", "dec"), [(np.nan, 0.0), (10.0, 90.5), (10.0, -91.0),
                                         (np.inf, 0.0)])
def test_hpx29_refuses_bad_positions(ra, dec):
    with pytest.raises(InvalidValue):
        hpx29([ra], [dec])


def test_distance_support_ignores_uninformative_tiles() -> None:
    """LVK marks tiles without distance information DISTMU=+inf; they never set the reach."""
    lo = np.arange(12, dtype=np.int64) << 58
    hi = lo + (1 << 58)
    density = np.full(12, 1.0 / (4.0 * np.pi))  # uniform over 12 order-0 tiles: total 1
    mu = np.full(12, 100.0)
    mu[3] = np.inf
    sigma = np.full(12, 20.0)
    sigma[4] = 0.0
    norm = np.full(12, 1e-4)
    region = Region.from_tiles(lo, hi, density, distmu=mu, distsigma=sigma, distnorm=norm)
    mask, reach = region.distance_support()
    assert mask is not None and not mask[3] and not mask[4] and mask.sum() == 10
    assert reach == pytest.approx(100.0 + 4 * 20.0)
    assert Region.from_tiles(lo, hi, density).distance_support() == (None, None)
