"""mma.skymaps.shapes.ellipse_map and box_map against closed forms and astropy geometry.

"Inside the ellipse" and "inside the box" are decided here independently of the
code under test: astropy's separation and position angle (east of north) give
the point's place relative to the centre, and the box uses plain RA/Dec offsets.
"""

from __future__ import annotations

import functools

import healpy as hp
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from ligo.skymap import moc
from scipy.special import erfinv

from mma.errors import InvalidValue
from mma.skymaps.region import build_region
from mma.skymaps.shapes import box_map, circle_map, ellipse_map, ellipse_sigmas, fisher_kappa

# (ra, dec, a, b, pa, containment, max_tile_prob)
ELLIPSES = [
    (10.0, 20.0, 2.0, 0.5, 30.0, 0.9, 5e-5),
    (359.9, 0.0, 3.0, 1.0, 90.0, 0.9, 5e-5),     # across RA 0
    (45.0, 88.0, 2.0, 1.0, 0.0, 0.9, 5e-5),      # near the north pole
    (0.0, -90.0, 1.0, 0.2, 45.0, 0.5, 5e-5),     # on the south pole
    (50.0, 50.0, 3 / 3600, 1 / 3600, 10.0, 0.9, 5e-5),  # arcseconds
    (100.0, -30.0, 40.0, 10.0, 120.0, 0.9, 2e-5),  # wide: finer tiles for 1e-3
]
ELLIPSE_IDS = ["2x0.5", "ra-wrap", "dec88", "south-pole", "arcsec", "40x10"]

# (ra, dec, ra+, ra-, dec+, dec-, containment)
BOXES = [
    (77.43, 5.72, 0.95, 0.65, 0.50, 0.30, 0.9),   # IceCube-170922A-like
    (359.5, -10.0, 1.5, 0.7, 0.8, 1.2, 0.9),      # across RA 0
    (0.3, 88.0, 20.0, 10.0, 1.0, 1.5, 0.9),       # near the pole, across RA 0
    (200.0, -45.0, 10.0, 15.0, 8.0, 6.0, 0.9),    # wide
]
BOX_IDS = ["ic170922a", "ra-wrap", "dec88", "wide"]


@functools.cache
def ellipse(case):
    return ellipse_map(*case[:6], max_tile_prob=case[6])


@functools.cache
def box(case):
    return box_map(*case)


def tile_centres(table):
    order, ipix = moc.uniq2nest(table["UNIQ"])
    ra, dec = hp.pix2ang(1 << order.astype(np.int64), ipix, nest=True, lonlat=True)
    prob = np.asarray(table["PROBDENSITY"]) * moc.uniq2pixarea(table["UNIQ"])
    return ra, dec, prob


def ellipse_coordinates(ra, dec, case):
    """Offsets along the major and minor axes in units of the stated semi-axes (astropy)."""
    ra0, dec0, a, b, pa = case[:5]
    centre = SkyCoord(ra0 * u.deg, dec0 * u.deg)
    points = SkyCoord(np.atleast_1d(ra) * u.deg, np.atleast_1d(dec) * u.deg)
    theta = centre.separation(points).rad
    angle = centre.position_angle(points).rad - np.radians(pa)
    r = 2 * np.sin(theta / 2)  # equal-area radius: the stated convention
    return (r * np.cos(angle) / (2 * np.sin(np.radians(a) / 2)),
            r * np.sin(angle) / (2 * np.sin(np.radians(b) / 2)))


def offset(ra0, dec0, north_deg, east_deg):
    """Position reached from (ra0, dec0) by a small north then east offset [deg]."""
    c = SkyCoord(ra0 * u.deg, dec0 * u.deg)
    moved = c.directional_offset_by(np.arctan2(east_deg, north_deg) * u.rad,
                                    np.hypot(north_deg, east_deg) * u.deg)
    return moved.ra.deg, moved.dec.deg


@pytest.mark.parametrize("case", ELLIPSES, ids=ELLIPSE_IDS)
def test_ellipse_holds_the_containment(case):
    table = ellipse(case)
    ra, dec, prob = tile_centres(table)
    assert abs(prob.sum() - 1) < 1e-12
    x, y = ellipse_coordinates(ra, dec, case)
    inside = x**2 + y**2 <= 1
    assert abs(prob[inside].sum() - case[5]) < 1e-3
    assert prob.max() <= case[6] * 1.01


@pytest.mark.parametrize("case", ELLIPSES, ids=ELLIPSE_IDS)
def test_ellipse_edge_has_one_credible_level(case):
    """Points on the stated ellipse all sit at about the containment credible level."""
    region = build_region(ellipse(case))
    ra0, dec0, a, b, pa, p, _ = case
    phi = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    centre = SkyCoord(ra0 * u.deg, dec0 * u.deg)
    # Along the direction phi from the major axis, the projected ellipse is reached at
    # projected radius rho, i.e. angular distance 2 asin(rho / 2).
    big_a, big_b = 2 * np.sin(np.radians(a) / 2), 2 * np.sin(np.radians(b) / 2)
    rho = 1 / np.hypot(np.cos(phi) / big_a, np.sin(phi) / big_b)
    edge = centre.directional_offset_by((np.radians(pa) + phi) * u.rad,
                                        2 * np.arcsin(rho / 2) * u.rad)
    cl = region.credible_level[region.locate(edge.ra.deg, edge.dec.deg)]
    assert abs(cl.mean() - p) < 5e-3
    assert np.abs(cl - p).max() < 3e-2


def test_position_angle_is_east_of_north():
    """PA 0: major axis north-south; PA 90: east-west (2 x 0.5 deg at 90 %)."""
    ra0, dec0 = 150.0, 40.0
    north = offset(ra0, dec0, 1.5, 0.0)
    east = offset(ra0, dec0, 0.0, 1.5)
    for pa, inside, outside in ((0.0, north, east), (90.0, east, north)):
        region = build_region(ellipse_map(ra0, dec0, 2.0, 0.5, pa, 0.9))
        cl_in = region.credible_level[region.locate(*inside)]
        cl_out = region.credible_level[region.locate(*outside)]
        assert cl_in < 0.9 < cl_out, (pa, cl_in, cl_out)
    # PA 45 and PA 225 are the same ellipse; PA 45 puts the major axis north-east.
    a = build_region(ellipse_map(ra0, dec0, 2.0, 0.5, 45.0))
    b = build_region(ellipse_map(ra0, dec0, 2.0, 0.5, 225.0))
    ne, nw = offset(ra0, dec0, 1.0, 1.0), offset(ra0, dec0, 1.0, -1.0)
    assert a.credible_level[a.locate(*ne)] < 0.9 < a.credible_level[a.locate(*nw)]
    assert b.credible_level[b.locate(*ne)] == pytest.approx(a.credible_level[a.locate(*ne)],
                                                            abs=2e-2)


def test_ellipse_across_ra_zero_is_symmetric():
    region = build_region(ellipse(ELLIPSES[1]))  # centre 359.9, major axis east-west
    west, east = offset(359.9, 0.0, 0.0, -2.0), offset(359.9, 0.0, 0.0, 2.0)
    assert east[0] < 10 and west[0] > 350
    assert region.credible_level[region.locate(*west)] == pytest.approx(
        region.credible_level[region.locate(*east)], abs=1e-2)


@pytest.mark.parametrize(("radius", "containment"), [(1.0, 0.9), (30.0, 0.9), (90.0, 0.6)])
def test_round_ellipse_is_the_fisher_circle(radius, containment):
    sigma_a, sigma_b, _ = ellipse_sigmas(radius, radius, containment)
    assert sigma_a == sigma_b
    assert 1 / sigma_a**2 == pytest.approx(fisher_kappa(radius, containment), rel=1e-10)
    if radius == 1.0:
        e = ellipse_map(20.0, 10.0, radius, radius, 33.0, containment)
        c = circle_map(20.0, 10.0, radius, containment)
        common = np.intersect1d(e["UNIQ"], c["UNIQ"])
        assert len(common) > 0.9 * len(c)
        np.testing.assert_allclose(e["PROBDENSITY"][np.searchsorted(e["UNIQ"], common)],
                                   c["PROBDENSITY"][np.searchsorted(c["UNIQ"], common)],
                                   rtol=1e-6)


def test_small_ellipse_uses_the_gaussian_sigma():
    sigma_a, sigma_b, norm = ellipse_sigmas(1.0, 0.3, 0.9)
    assert norm == pytest.approx(1.0, abs=1e-15)
    k = np.sqrt(-2 * np.log(0.1))  # 90 % radius r of a 2-D Gaussian: sigma = r / 2.146
    assert sigma_a == pytest.approx(2 * np.sin(np.radians(0.5)) / k, rel=1e-12)
    assert sigma_b == pytest.approx(2 * np.sin(np.radians(0.15)) / k, rel=1e-12)


@pytest.mark.parametrize("args", [(1.0, 2.0, 0.9), (0.0, 0.0, 0.9), (1.0, 0.5, 1.0),
                                  (180.0, 170.0, 0.5), (np.nan, 1.0, 0.9)])
def test_impossible_ellipses_are_invalid(args):
    with pytest.raises(InvalidValue):
        ellipse_sigmas(*args)


@pytest.mark.parametrize("case", BOXES, ids=BOX_IDS)
def test_box_holds_the_containment(case):
    ra0, dec0, ra_plus, ra_minus, dec_plus, dec_minus, p = case
    ra, dec, prob = tile_centres(box(case))
    assert abs(prob.sum() - 1) < 1e-12
    dra = (ra - ra0 + 180) % 360 - 180
    inside = (dra <= ra_plus) & (dra >= -ra_minus) & (dec <= dec0 + dec_plus) \
        & (dec >= dec0 - dec_minus)
    assert abs(prob[inside].sum() - p) < 1.5e-3


def test_box_width_factor_matches_the_closed_form_away_from_the_poles():
    table = box(BOXES[0])
    assert table.meta["width_factor"] == pytest.approx(np.sqrt(2) * erfinv(np.sqrt(0.9)),
                                                       rel=1e-4)


def test_box_is_asymmetric_and_scales_ra_with_cos_dec():
    """At the stated +RA edge and at the stated -RA edge the credible level is the same
    (the split normal's sides are scaled to their errors); in RA degrees, not arc."""
    for case in BOXES[:3]:
        region = build_region(box(case))
        ra0, dec0, ra_plus, ra_minus = case[:4]
        # On the Dec of the centre, the RA marginal quantile at the edge is the same
        # on both sides, so the credible levels match.
        plus = region.credible_level[region.locate((ra0 + ra_plus) % 360, dec0)]
        minus = region.credible_level[region.locate((ra0 - ra_minus) % 360, dec0)]
        assert plus == pytest.approx(minus, abs=2e-2), case
    # Dec 88, RA +20 deg: on the sky only 20 cos(88) = 0.7 deg away, inside.
    region = build_region(box(BOXES[2]))
    assert region.credible_level[region.locate(0.3 + 15, 88.0)] < 0.9
    assert region.credible_level[region.locate(0.3 + 60, 88.0)] > 0.9


def test_box_across_ra_zero_puts_probability_on_both_sides():
    _, _, prob = tile_centres(box(BOXES[1]))
    ra, _, _ = tile_centres(box(BOXES[1]))
    assert prob[ra < 5].sum() > 0.2 and prob[(ra > 355)].sum() > 0.2


@pytest.mark.parametrize("args", [(10.0, 0.0, 1.0, 1.0, 1.0), (10.0, 1.0, 1.0, 1.0, 200.0),
                                  (10.0, 180.0, 180.0, 90.0, 90.0)])
def test_impossible_boxes_are_invalid(args):
    with pytest.raises(InvalidValue):
        dec, ra_plus, ra_minus, dec_plus, dec_minus = args
        box_map(30.0, dec, ra_plus, ra_minus, dec_plus, dec_minus, 0.9)
