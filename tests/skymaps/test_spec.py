"""mma.skymaps.spec.region_table: every RegionSpec kind reaches the right density."""

from __future__ import annotations

import numpy as np
import pytest

from mma.errors import BadSkymap, HostileMessage, InvalidValue
from mma.models import RegionSpec
from mma.skymaps.region import build_region
from mma.skymaps.shapes import fisher_kappa
from mma.skymaps.spec import needs_fetch, region_table
from tests.conftest import CORPUS

SMALL = CORPUS / "skymaps/gw/G1028259_cwb_rrt_small_area.multiorder.fits"


def test_inline_skymap_is_decoded():
    data = SMALL.read_bytes()
    table = region_table(RegionSpec(kind="skymap", skymap=data), max_bytes=1 << 20)
    assert table is not None and table.meta["region_source"] == "skymap"
    assert abs(build_region(table).total_probability - 1) < 1e-9


def test_inline_skymap_over_the_cap_is_hostile():
    with pytest.raises(HostileMessage):
        region_table(RegionSpec(kind="skymap", skymap=SMALL.read_bytes()), max_bytes=1000)


def test_broken_inline_skymap_is_bad():
    with pytest.raises(BadSkymap):
        region_table(RegionSpec(kind="skymap", skymap=b"SIMPLE  = junk"), max_bytes=1 << 20)


def test_url_only_returns_none_until_fetched():
    spec = RegionSpec(kind="skymap", skymap_url="https://gracedb.ligo.org/x.fits")
    assert needs_fetch(spec)
    assert region_table(spec, max_bytes=1 << 20) is None
    table = region_table(spec, max_bytes=1 << 20, skymap=SMALL.read_bytes())
    assert table is not None and table.meta["region_source"] == "skymap"


def test_circle_with_url_gives_the_circle_now_and_the_map_when_fetched():
    spec = RegionSpec(kind="circle", ra_deg=10.0, dec_deg=5.0, radius_deg=0.5,
                      skymap_url="https://roc.icecube.wisc.edu/a.fits")
    assert not needs_fetch(spec)
    circle = region_table(spec, max_bytes=1 << 20)
    assert circle is not None and circle.meta["region_source"] == "circle"
    assert circle.meta["kappa"] == fisher_kappa(0.5, 0.9)
    fetched = region_table(spec, max_bytes=1 << 20, skymap=SMALL.read_bytes())
    assert fetched is not None and fetched.meta["region_source"] == "skymap"


def test_circle_with_systematic_uses_the_model():
    spec = RegionSpec(kind="circle", ra_deg=186.62, dec_deg=-48.84, radius_deg=17.45,
                      containment=0.68, systematic="fermi_gbm_gnd")
    table = region_table(spec, max_bytes=1)
    assert table is not None and table.meta["region_source"] == "fermi_gbm_gnd"
    assert table.meta["weights"] == pytest.approx([0.804, 0.196])
    # The GBM handler states Error2Radius at 1 - exp(-1/2): used as is, as RAVEN does.
    gbm = RegionSpec(kind="circle", ra_deg=186.62, dec_deg=-48.84, radius_deg=17.45,
                     containment=1 - np.exp(-0.5), systematic="fermi_gbm_gnd")
    table = region_table(gbm, max_bytes=1)
    assert table is not None and table.meta["stat_radius_deg"] == 17.45


def test_ellipse_and_box_dispatch():
    ellipse = region_table(RegionSpec(kind="ellipse", ra_deg=1.0, dec_deg=2.0,
                                      semi_major_deg=1.0, semi_minor_deg=0.5,
                                      position_angle_deg=30.0), max_bytes=1)
    assert ellipse is not None and ellipse.meta["position_angle_deg"] == 30.0
    box = region_table(RegionSpec(kind="box", ra_deg=359.0, dec_deg=2.0, ra_plus_deg=1.5,
                                  ra_minus_deg=0.5, dec_plus_deg=0.7, dec_minus_deg=0.4,
                                  containment=0.5), max_bytes=1)
    assert box is not None and box.meta["region_source"] == "box"
    assert box.meta["containment"] == 0.5
    for table in (ellipse, box):
        assert np.sum(np.asarray(table["PROBDENSITY"])) > 0


@pytest.mark.parametrize("spec", [
    RegionSpec(kind="circle", ra_deg=1.0, dec_deg=2.0, radius_deg=3.0, systematic="gbm"),
    RegionSpec(kind="ellipse", ra_deg=1.0, dec_deg=2.0, semi_major_deg=1.0,
               semi_minor_deg=0.5, position_angle_deg=0.0, systematic="fermi_gbm_gnd"),
    RegionSpec(kind="circle", ra_deg=1.0, dec_deg=2.0, radius_deg=170.0),
], ids=["unknown-systematic", "systematic-on-ellipse", "impossible-circle"])
def test_invalid_specs(spec):
    with pytest.raises(InvalidValue):
        region_table(spec, max_bytes=1)
