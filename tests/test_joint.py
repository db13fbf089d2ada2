"""Event x event coincidences (mma.match.joint) against closed forms, a flat-map oracle and RAVEN.

Three kinds of reference:

* closed forms: Fisher densities (``circle_map``) whose overlap and product are
  analytic, uniform maps on sets of HEALPix tiles, disjoint maps;
* an independent oracle for the overlap: both maps flattened to NSIDE 1024 with
  ligo.skymap (the GW map read by ligo.skymap itself, the GBM map rasterised),
  ``I = npix * sum p1 p2``;
* RAVEN itself (``ligo.raven.search``, the LVK's code): its overlap integral on
  the same arrays and its ``coinc_far`` on the same events (skipped only when
  ligo-raven is not installed).

The real pair is GW170817 (the corpus GWTC-1 map, served in place of the LVC
Initial notice's URL, as in tests/test_gw170817.py) and GRB 170817A (Fermi GBM
Gnd notice, region built as the daemon builds it: region_table + build_region
with the default limits).
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
import pytest
from astropy.table import Column, Table
from ligo.skymap import bayestar, moc
from ligo.skymap.io import write_sky_map

from mma.config import load_config
from mma.errors import InvalidValue
from mma.handlers import fermi_gbm, lvk_voevent
from mma.match import joint
from mma.models import Notice, RegionSpec
from mma.skymaps.region import MAX_ORDER, Region, build_region
from mma.skymaps.shapes import circle_map
from mma.skymaps.spec import region_table

GW_MAP = "skymaps/gw/GW170817_skymap.fits.gz"
GBM_NOTICE = "voevent/fermi-gbm/GRB170817A_GBM_Gnd_Pos_524666471.xml"
LVC_NOTICE = "voevent/gw/G298048-1-Initial_GW170817.xml"
AT2017GFO = (197.450374, -23.381495)  # ICRS deg
CBC_WINDOW = joint.DEFAULT_WINDOWS_S["gw_cbc_grb"]


def _uniq(region: Region) -> np.ndarray:
    """NUNIQ index of each tile of a Region (its lo/hi ranges back to HEALPix)."""
    log2_span = np.frexp((region.hi - region.lo).astype(np.float64))[1] - 1
    order = MAX_ORDER - log2_span // 2
    return np.asarray(moc.nest2uniq(order.astype(np.int8), region.lo >> (2 * (MAX_ORDER - order))))


def _fisher(ra: float, dec: float, radius: float) -> tuple[Region, float]:
    table = circle_map(ra, dec, radius, 0.9)
    return build_region(table), float(table.meta["kappa"])


def _uniform(order: int, ipix: np.ndarray) -> Region:
    """A uniform map on the given NESTED tiles of one order."""
    shift = 2 * (MAX_ORDER - order)
    ipix = np.asarray(ipix, dtype=np.int64)
    area = hp.nside2pixarea(1 << order) * len(ipix)
    return Region.from_tiles(ipix << shift, (ipix + 1) << shift, np.full(len(ipix), 1 / area))


def _ln_sinh(x: float) -> float:
    return x + math.log1p(-math.exp(-2 * x)) - math.log(2)


def _fisher_overlap(k1: float, k2: float, n1: np.ndarray, n2: np.ndarray) -> float:
    """Closed form of ``4 pi int f1 f2 dOmega`` for Fisher densities f1, f2.

    ``k1 k2 sinh R / (R sinh k1 sinh k2)`` with ``R = |k1 n1 + k2 n2|`` (in logs: the
    sinh overflow for kappa of thousands).
    """
    r = float(np.linalg.norm(k1 * n1 + k2 * n2))
    return math.exp(math.log(k1 * k2 / r) + _ln_sinh(r) - _ln_sinh(k1) - _ln_sinh(k2))


def _flat(table: Table, order: int) -> np.ndarray:
    """Probability per NESTED pixel of *order* (finer tiles averaged), by ligo.skymap."""
    return np.asarray(bayestar.rasterize(table[["UNIQ", "PROBDENSITY"]], order=order)["PROB"])


def _mean_direction(region: Region) -> np.ndarray:
    centres = np.asarray(hp.pix2vec(1 << MAX_ORDER, (region.lo + region.hi) // 2, nest=True)).T
    m = ((region.probdensity * region.area_sr)[:, None] * centres).sum(axis=0)
    return m / np.linalg.norm(m)


def _deg(u: np.ndarray, v: np.ndarray) -> float:
    return math.degrees(math.acos(min(1.0, float(np.dot(u, v)))))


# --- closed forms --------------------------------------------------------------------------

def test_uniform_all_sky_overlap_is_one() -> None:
    sky = _uniform(0, np.arange(12))
    finer = _uniform(2, np.arange(12 * 16))
    assert joint.overlap_integral(sky, sky) == pytest.approx(1.0, rel=1e-12)
    assert joint.overlap_integral(sky, finer) == pytest.approx(1.0, rel=1e-12)


def test_uniform_multi_order_tiles() -> None:
    # A on base tiles 0-3 (4 pi / 3 sr); B on base tiles 0, 1 and, at order 3, all of
    # base tiles 4 and 5: common area 2 pi / 3, so I = 4 pi (2pi/3) / (4pi/3)^2 = 3/2.
    a = _uniform(0, np.arange(4))
    shift = 2 * MAX_ORDER
    fine = np.arange(4 * 64, 6 * 64, dtype=np.int64) << (2 * (MAX_ORDER - 3))
    lo = np.concatenate([np.array([0, 1]) << shift, fine])
    hi = np.concatenate([np.array([1, 2]) << shift, fine + (1 << (2 * (MAX_ORDER - 3)))])
    b = Region.from_tiles(lo, hi, np.full(len(lo), 3 / (4 * np.pi)))
    assert joint.overlap_integral(a, b) == pytest.approx(1.5, rel=1e-12)
    assert joint.overlap_integral(b, a) == pytest.approx(1.5, rel=1e-12)
    product = joint.product_region(a, b)
    assert product is not None and product.n_tiles == 2
    assert product.probdensity == pytest.approx(np.full(2, 3 / (2 * np.pi)))


def test_concentric_uniform_caps() -> None:
    # Uniform caps of 20 deg (order 8) inside 30 deg (order 6): I = 4 pi / Omega_30 exactly
    # for the pixelised caps, 2 / (1 - cos 30 deg) for true caps.
    centre = hp.ang2vec(40.0, 25.0, lonlat=True)
    small = _uniform(8, hp.query_disc(256, centre, math.radians(20.0), nest=True))
    large_pix = hp.query_disc(64, centre, math.radians(30.0), nest=True)
    large = _uniform(6, large_pix)
    pixel_exact = 4 * np.pi / (len(large_pix) * hp.nside2pixarea(64))
    i = joint.overlap_integral(small, large)
    assert i == pytest.approx(pixel_exact, rel=1e-12)
    assert i == pytest.approx(2 / (1 - math.cos(math.radians(30.0))), rel=2e-2)


@pytest.mark.parametrize("radius", [2.0, 10.0, 40.0])
def test_identical_fisher_discs(radius: float) -> None:
    region, kappa = _fisher(30.0, 20.0, radius)
    expected = kappa / math.tanh(kappa)
    got = joint.overlap_integral(region, region)
    assert got == pytest.approx(expected, rel=1e-4), (radius, got, expected)


def test_offset_fisher_discs_and_their_product() -> None:
    a, k1 = _fisher(30.0, 20.0, 5.0)
    b, k2 = _fisher(36.0, 20.0, 8.0)
    n1, n2 = hp.ang2vec(30.0, 20.0, lonlat=True), hp.ang2vec(36.0, 20.0, lonlat=True)
    expected = _fisher_overlap(k1, k2, n1, n2)
    assert joint.overlap_integral(a, b) == pytest.approx(expected, rel=5e-4)
    # The product of two Fisher densities is a Fisher density centred on k1 n1 + k2 n2:
    # nearer the narrower disc, not at the midpoint.
    product = joint.product_region(a, b)
    assert product is not None
    centre = (k1 * n1 + k2 * n2) / np.linalg.norm(k1 * n1 + k2 * n2)
    midpoint = (n1 + n2) / np.linalg.norm(n1 + n2)
    got = _mean_direction(product)
    assert _deg(got, centre) < 0.05, (_deg(got, centre), _deg(got, midpoint))
    assert _deg(centre, midpoint) > 1.0
    assert product.total_probability == pytest.approx(1.0)


def test_equal_fisher_discs_product_centred_between() -> None:
    a, _ = _fisher(100.0, -10.0, 4.0)
    b, _ = _fisher(100.0, -4.0, 4.0)
    product = joint.product_region(a, b)
    assert product is not None
    assert _deg(_mean_direction(product), hp.ang2vec(100.0, -7.0, lonlat=True)) < 0.05


def test_disjoint_regions() -> None:
    north, south = _uniform(0, np.arange(4)), _uniform(0, np.arange(8, 12))
    assert joint.overlap_integral(north, south) == 0.0
    assert joint.product_region(north, south) is None
    assert joint.point_overlap(north, 10.0, -60.0) == 0.0
    assert joint.point_overlap(north, 10.0, 60.0) == pytest.approx(3.0)  # 4 pi / (4 pi / 3)
    assert joint.space_time_far(1e-9, 0.0) == math.inf
    far = joint.joint_far(CBC_WINDOW, 1e-8, rate_ext_hz=joint.GRB_RATE_HZ,
                          gw_region=north, ext_region=south)
    assert far.overlap == 0.0 and far.space_time_far_hz == math.inf


def test_untargeted_temporal_far() -> None:
    far = joint.temporal_far_untargeted((-1.0, 5.0), 325 / (365 * 86400), 1e-7)
    assert far == pytest.approx(6 * 325 / 31536000 * 1e-7, rel=1e-15)
    assert joint.space_time_far(far, 4.0) == pytest.approx(far / 4)


def test_targeted_temporal_far() -> None:
    window, thresholds = (-1.0, 10.0), joint.TARGETED_THRESHOLDS_HZ["Fermi"]
    z_max = 11.0 * thresholds[0] * thresholds[1]
    # z = z_max: FAR = z; z = z_max / e: FAR = 2 z; below, the CDF of a product of uniforms.
    assert joint.temporal_far_targeted(window, *thresholds, *thresholds) == pytest.approx(z_max)
    ext = thresholds[0] / math.e
    assert joint.temporal_far_targeted(window, ext, thresholds[1], *thresholds) == pytest.approx(
        2 * z_max / math.e)
    assert joint.temporal_far_targeted(window, 0.0, 1e-6, *thresholds) == 0.0
    # Above the thresholds the distribution saturates (RAVEN's formula would fall again).
    assert joint.temporal_far_targeted(window, 1.0, 1.0, *thresholds) == pytest.approx(z_max)
    far = joint.joint_far(window, 1e-7, far_ext_hz=1e-5, far_ext_thresh_hz=thresholds[0],
                          far_gw_thresh_hz=thresholds[1])
    assert far.targeted and far.overlap is None and far.space_time_far_hz is None
    z = 11.0 * 1e-5 * 1e-7
    assert far.temporal_far_hz == pytest.approx(z * (1 - math.log(z / z_max)))


@pytest.mark.parametrize("call", [
    lambda: joint.temporal_far_untargeted((5.0, -1.0), 1e-5, 1e-7),
    lambda: joint.temporal_far_untargeted((-1.0, math.inf), 1e-5, 1e-7),
    lambda: joint.temporal_far_untargeted((-1.0, 5.0), -1e-5, 1e-7),
    lambda: joint.temporal_far_untargeted((-1.0, 5.0), 1e-5, math.nan),
    lambda: joint.temporal_far_targeted((-1.0, 5.0), 1e-5, 1e-7, 0.0, 1e-5),
    lambda: joint.space_time_far(1e-9, -1.0),
    lambda: joint.point_overlap(_uniform(0, np.arange(12)), math.nan, 0.0),
    lambda: joint.point_overlap(_uniform(0, np.arange(12)), 10.0, 91.0),
    lambda: joint.joint_far((-1.0, 5.0), 1e-7),
    lambda: joint.joint_far((-1.0, 5.0), 1e-7, far_ext_thresh_hz=1e-4, far_gw_thresh_hz=1e-5),
    lambda: joint.joint_far((-1.0, 5.0), 1e-7, far_ext_hz=1e-5, far_ext_thresh_hz=1e-4),
])
def test_invalid_inputs(call: Any) -> None:
    with pytest.raises(InvalidValue):
        call()


# --- GW170817 x GRB 170817A -----------------------------------------------------------------

@pytest.fixture(scope="module")
def limits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("config")
    config = load_config(environ={"MMA_PATHS__STATE_DIR": str(tmp / "state"),
                                  "MMA_PATHS__CACHE_DIR": str(tmp / "cache")},
                         system_file=tmp / "absent.toml")
    return dict(config.section("limits"))


@pytest.fixture(scope="module")
def gw_notice(corpus: Path) -> Notice:
    return lvk_voevent.parse((corpus / LVC_NOTICE).read_bytes(),
                             topic="gcn.classic.voevent.LVC_INITIAL")


def _gbm_spec(corpus: Path) -> RegionSpec:
    notice = fermi_gbm.parse((corpus / GBM_NOTICE).read_bytes(),
                             topic="gcn.classic.voevent.FERMI_GBM_GND_POS")
    assert notice.region is not None
    return notice.region


@pytest.fixture(scope="module")
def gbm_table(corpus: Path, limits: dict[str, Any]) -> Table:
    table = region_table(_gbm_spec(corpus), max_bytes=int(limits["max_skymap_inflated_bytes"]),
                         max_tiles=int(limits["max_region_tiles"]))
    assert table is not None
    return table


@pytest.fixture(scope="module")
def gbm(gbm_table: Table, limits: dict[str, Any]) -> Region:
    return build_region(gbm_table, max_tiles=int(limits["max_region_tiles"]))


@pytest.fixture(scope="module")
def gw(corpus: Path, gw_notice: Notice, limits: dict[str, Any]) -> Region:
    assert gw_notice.region is not None
    table = region_table(gw_notice.region, skymap=(corpus / GW_MAP).read_bytes(),
                         max_bytes=int(limits["max_skymap_inflated_bytes"]),
                         max_tiles=int(limits["max_region_tiles"]))
    assert table is not None
    return build_region(table, max_tiles=int(limits["max_region_tiles"]))


@pytest.fixture(scope="module")
def flat_maps(corpus: Path, gbm_table: Table) -> tuple[np.ndarray, np.ndarray]:
    """Both maps as NSIDE-1024 NESTED probabilities per pixel, by healpy and ligo.skymap."""
    gw_flat = hp.read_map(str(corpus / GW_MAP), field=0, nest=True, dtype=None)
    return np.asarray(gw_flat, dtype=np.float64), _flat(gbm_table, 10)


def test_overlap_matches_flat_oracle(gw: Region, gbm: Region,
                                     flat_maps: tuple[np.ndarray, np.ndarray]) -> None:
    # The GW map is flat at NSIDE 1024, so averaging the GBM map over the same pixels
    # loses nothing: the two agree to rounding.
    gw_flat, gbm_flat = flat_maps
    oracle = len(gw_flat) * float(np.dot(gw_flat / gw_flat.sum(), gbm_flat / gbm_flat.sum()))
    got = joint.overlap_integral(gw, gbm)
    assert got == pytest.approx(oracle, rel=1e-9), f"I = {got!r}, flat oracle {oracle!r}"
    assert joint.overlap_integral(gbm, gw) == pytest.approx(got, rel=1e-12)


@pytest.mark.parametrize("name", ["GW190814_PublicationSamples", "MS181101ab_bayestar",
                                  "MS220722v_M252714_bayestar", "G1028259_cwb_rrt_small_area"])
def test_multi_order_maps_match_flat_oracle(corpus: Path, gw_notice: Notice, name: str,
                                            limits: dict[str, Any]) -> None:
    # A GBM Gnd circle (5 deg, with GBM systematics) 3 deg from each map's densest
    # tile, built as the daemon builds it; the oracle flattens both maps to order 9
    # (6.9 arcmin pixels, finer GW tiles averaged): the GBM density varies little
    # across a pixel, so the oracle is good to ~1e-4 (4e-5 seen).
    assert gw_notice.region is not None
    max_tiles = int(limits["max_region_tiles"])
    gw_table = region_table(gw_notice.region, max_tiles=max_tiles,
                            skymap=(corpus / f"skymaps/gw/{name}.multiorder.fits").read_bytes())
    assert gw_table is not None
    gw_map = build_region(gw_table, max_tiles=max_tiles)
    peak = gw_map.density_order[0]
    ra, dec = hp.pix2ang(1 << MAX_ORDER, (gw_map.lo[peak] + gw_map.hi[peak]) // 2, nest=True,
                         lonlat=True)
    spec = dataclasses.replace(_gbm_spec(corpus), ra_deg=float(ra) + 3 / max(
        math.cos(math.radians(float(dec))), 0.1), dec_deg=float(dec), radius_deg=5.0)
    grb_table = region_table(spec, max_tiles=max_tiles)
    assert grb_table is not None
    grb = build_region(grb_table, max_tiles=max_tiles)
    p_gw, p_grb = _flat(gw_table, 9), _flat(grb_table, 9)
    oracle = len(p_gw) * float(np.dot(p_gw / p_gw.sum(), p_grb / p_grb.sum()))
    got = joint.overlap_integral(gw_map, grb)
    assert got > 1.0
    assert got == pytest.approx(oracle, rel=2e-4), f"{name}: I = {got!r}, oracle {oracle!r}"


def test_gw170817_joint_far(gw: Region, gbm: Region, gw_notice: Notice) -> None:
    far_gw = float(gw_notice.properties["far"])
    far = joint.joint_far(CBC_WINDOW, far_gw, rate_ext_hz=joint.GRB_RATE_HZ,
                          gw_region=gw, ext_region=gbm)
    numbers = (f"I = {far.overlap:.4f}, GW FAR {far_gw:.4g} Hz, temporal "
               f"{far.temporal_far_hz:.4g} Hz, space-time {far.space_time_far_hz:.4g} Hz")
    assert far.overlap is not None and far.overlap > 1.0, numbers
    assert far.space_time_far_hz is not None, numbers
    assert far.space_time_far_hz < far.temporal_far_hz, numbers
    assert far.temporal_far_hz == pytest.approx(6.0 * 325 / joint.YEAR_S * far_gw), numbers
    assert far.window_s == (-1.0, 5.0) and not far.targeted


def test_gw170817_product_keeps_gw_distance(gw: Region, gbm: Region) -> None:
    product = joint.product_region(gw, gbm)
    assert product is not None and product.has_distance
    assert product.total_probability == pytest.approx(1.0)
    assert gw.distmu is not None and product.distmu is not None
    i_gw, i_p = int(gw.locate(*AT2017GFO)), int(product.locate(*AT2017GFO))
    assert product.distmu[i_p] == gw.distmu[i_gw]
    # GBM first: the GW map's layers still come along.
    swapped = joint.product_region(gbm, gw)
    assert swapped is not None and swapped.distmu is not None
    assert swapped.distmu[int(swapped.locate(*AT2017GFO))] == gw.distmu[i_gw]
    # Density ratio at AT2017gfo: the product is rho_gw rho_gbm / (I / 4 pi).
    i_g = int(gbm.locate(*AT2017GFO))
    expected = (gw.probdensity[i_gw] * gbm.probdensity[i_g]
                / (joint.overlap_integral(gw, gbm) / (4 * np.pi)))
    assert product.probdensity[i_p] == pytest.approx(expected, rel=1e-9)


# --- RAVEN itself --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def raven() -> Any:
    return pytest.importorskip("ligo.raven.search")


def test_raven_overlap_flat(raven: Any, gw: Region, gbm: Region,
                            flat_maps: tuple[np.ndarray, np.ndarray]) -> None:
    gw_flat, gbm_flat = flat_maps
    theirs = raven.skymap_overlap_integral(gw_flat, gbm_flat, se_nested=True, ext_nested=True)
    ours = joint.overlap_integral(gw, gbm)
    assert ours == pytest.approx(theirs, rel=1e-9), f"ours {ours!r}, RAVEN {theirs!r}"


def test_raven_overlap_multi_order(raven: Any, gw: Region, gbm: Region,
                                   flat_maps: tuple[np.ndarray, np.ndarray]) -> None:
    density = Column(np.asarray(gw.probdensity), unit="1/sr")  # as RAVEN reads PROBDENSITY
    theirs = raven.skymap_overlap_integral(density, flat_maps[1], se_skymap_uniq=_uniq(gw),
                                           ext_nested=True)
    ours = joint.overlap_integral(gw, gbm)
    assert ours == pytest.approx(theirs, rel=1e-9)
    # Two multi-order maps: RAVEN samples the GBM map at the nearest tile centre to
    # each GW tile centre, an approximation (0.2 % here).
    nearest = raven.skymap_overlap_integral(density, np.asarray(gbm.probdensity),
                                            se_skymap_uniq=_uniq(gw), ext_skymap_uniq=_uniq(gbm))
    assert ours == pytest.approx(nearest, rel=5e-3)
    point = raven.skymap_overlap_integral(density, se_skymap_uniq=_uniq(gw),
                                          ra=AT2017GFO[0], dec=AT2017GFO[1])
    assert joint.point_overlap(gw, *AT2017GFO) == pytest.approx(point, rel=1e-9)


class _FilesOnly:
    """The one GraceDB REST call RAVEN makes here (``files``), served from memory."""

    _service_url = "https://gracedb.invalid/api/"

    def __init__(self, files: dict[str, bytes]) -> None:
        self._files = files

    def files(self, graceid: str, filename: str, raw: bool = True) -> io.BytesIO:
        return io.BytesIO(self._files[filename])


def _moc_fits(region: Region, path: Path) -> bytes:
    table = Table({"UNIQ": _uniq(region), "PROBDENSITY": np.asarray(region.probdensity)})
    write_sky_map(str(path), table, moc=True)
    return path.read_bytes()


def test_raven_coinc_far(raven: Any, gw: Region, gbm: Region, gw_notice: Notice,
                         tmp_path: Path) -> None:
    far_gw = float(gw_notice.properties["far"])
    client = _FilesOnly({"gw.fits": _moc_fits(gw, tmp_path / "gw.fits"),
                         "gbm.fits": _moc_fits(gbm, tmp_path / "gbm.fits")})
    se = {"superevent_id": "S170817a", "preferred_event": "G298048", "far": far_gw,
          "t_0": 1187008882.4457}
    ext = {"graceid": "E0001", "pipeline": "Fermi", "search": "GRB", "gpstime": 1187008884.47}
    tl, th = -CBC_WINDOW[1], -CBC_WINDOW[0]  # RAVEN's window: GW time minus external time
    theirs = raven.coinc_far("S170817a", "E0001", tl, th, grb_search="GRB", incl_sky=True,
                             gracedb=client, em_rate=joint.GRB_RATE_HZ, se_dict=se,
                             ext_dict=ext, se_fitsfile="gw.fits", ext_fitsfile="gbm.fits",
                             se_moc=True, ext_moc=True)
    ours = joint.joint_far(CBC_WINDOW, far_gw, rate_ext_hz=joint.GRB_RATE_HZ,
                           gw_region=gw, ext_region=gbm)
    assert ours.temporal_far_hz == pytest.approx(theirs["temporal_coinc_far"], rel=1e-12)
    # Their overlap of two multi-order maps is the nearest-centre approximation above.
    assert ours.overlap == pytest.approx(theirs["skymap_overlap"], rel=5e-3)
    assert ours.space_time_far_hz == pytest.approx(theirs["spatiotemporal_coinc_far"], rel=5e-3)


@pytest.mark.parametrize(("far_ext", "far_gw"), [(1e-6, 1e-7), (1e-4, 1.0 / 86400), (3e-5, 1e-9)])
def test_raven_targeted(raven: Any, far_ext: float, far_gw: float) -> None:
    se = {"superevent_id": "S1", "preferred_event": "G1", "far": far_gw, "t_0": 0.0}
    ext = {"graceid": "E1", "pipeline": "Fermi", "search": "SubGRBTargeted", "gpstime": 0.0}
    theirs = raven.coinc_far("S1", "E1", -10.0, 1.0, grb_search="SubGRBTargeted",
                             gracedb=_FilesOnly({}), far_grb=far_ext, se_dict=se, ext_dict=ext)
    ours = joint.temporal_far_targeted((-1.0, 10.0), far_ext, far_gw,
                                       *joint.TARGETED_THRESHOLDS_HZ["Fermi"])
    assert ours == pytest.approx(theirs["temporal_coinc_far"], rel=1e-12)


def test_raven_targeted_above_thresholds_differs(raven: Any) -> None:
    # z > z_max: RAVEN's z (1 - ln(z / z_max)) drops below z_max (negative beyond e z_max);
    # ours stays at z_max. The one documented departure from RAVEN.
    se = {"superevent_id": "S1", "preferred_event": "G1", "far": 1e-3, "t_0": 0.0}
    ext = {"graceid": "E1", "pipeline": "Fermi", "search": "SubGRBTargeted", "gpstime": 0.0}
    theirs = raven.coinc_far("S1", "E1", -10.0, 1.0, grb_search="SubGRBTargeted",
                             gracedb=_FilesOnly({}), far_grb=1e-2, se_dict=se, ext_dict=ext)
    thresholds = joint.TARGETED_THRESHOLDS_HZ["Fermi"]
    z_max = 11.0 * thresholds[0] * thresholds[1]
    assert theirs["temporal_coinc_far"] < 0
    assert joint.temporal_far_targeted((-1.0, 10.0), 1e-2, 1e-3, *thresholds) == z_max


def test_raven_untargeted(raven: Any) -> None:
    se = {"superevent_id": "S1", "preferred_event": "G1", "far": 2e-8, "t_0": 0.0}
    ext = {"graceid": "E1", "pipeline": "IceCube", "search": "GRB", "gpstime": 0.0}
    theirs = raven.coinc_far("S1", "E1", -500.0, 500.0, grb_search="GRB", gracedb=_FilesOnly({}),
                             em_rate=joint.ICECUBE_GOLD_RATE_HZ, se_dict=se, ext_dict=ext)
    ours = joint.temporal_far_untargeted(joint.DEFAULT_WINDOWS_S["gw_neutrino"],
                                         joint.ICECUBE_GOLD_RATE_HZ, 2e-8)
    assert ours == pytest.approx(theirs["temporal_coinc_far"], rel=1e-12)


def test_raven_disjoint_and_uniform(raven: Any) -> None:
    # Flat NSIDE-16 NESTED maps: base tiles 0-3 (north), 8-11 (south), 0-11 (all sky).
    def flat(base: range) -> np.ndarray:
        p = np.zeros(12 * 256)
        for b in base:
            p[b * 256:(b + 1) * 256] = 1.0
        return p / p.sum()

    north, south, sky = flat(range(4)), flat(range(8, 12)), flat(range(12))
    pairs = [(north, south, _uniform(0, np.arange(4)), _uniform(0, np.arange(8, 12))),
             (north, sky, _uniform(0, np.arange(4)), _uniform(0, np.arange(12)))]
    for p_a, p_b, a, b in pairs:
        theirs = raven.skymap_overlap_integral(p_a, p_b, se_nested=True, ext_nested=True)
        assert joint.overlap_integral(a, b) == pytest.approx(theirs, abs=1e-12)
