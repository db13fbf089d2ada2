"""Field conventions shared by the VOEvent and JSON handlers."""

from __future__ import annotations

import pytest

from mma.errors import InvalidValue
from mma.formats.gcn_localization import localization
from mma.formats.notice_fields import circle_region, grb_aliases, http_url
from mma.formats.voevent import Position
from mma.skymaps.limits import MIN_ERROR_DEG, check_error


def test_grb_aliases_keep_only_names_of_one_burst() -> None:
    names = ["GRB 240112A", "GRB240112a", "GRB 240112", "Swift J1858.6-0814", "GRB 170817A"]
    assert grb_aliases(names) == ("GRB240112A", "GRB170817A")


def test_http_url_screens_non_urls() -> None:
    assert http_url("https://gracedb.ligo.org/x.fits") == "https://gracedb.ligo.org/x.fits"
    assert http_url("data/LALInference.v1.fits.gz") is None
    assert http_url("http://a b") is None and http_url(None) is None


@pytest.mark.parametrize("bad", ["\x1b[2J", "\u202e", "\x07", "\n", "\r", "\x7f", "\u00a0", "\"",
                                 "<", "\udc80"])
def test_http_url_refuses_controls_and_non_ascii(bad: str) -> None:
    """A URL is shown in logs and tables and fetched: printable ASCII only."""
    assert http_url(f"https://gcn.nasa.gov/map{bad}.fits") is None


@pytest.mark.parametrize("bad", ["\n", "\r", "\t", "\x1b[2J", "\u202e"])
def test_a_gcn_json_map_url_with_controls_is_refused(bad: str) -> None:
    """urlsplit drops CR, LF and TAB: the URL itself must be checked, not its parts."""
    notice = {"healpix_url": f"https://roc.icecube.wisc.edu/map{bad}.fits.gz",
              "ra": 10.0, "dec": 20.0, "ra_dec_error": 1.0, "containment_probability": 0.9}
    with pytest.raises(InvalidValue, match="printable ASCII"):
        localization(notice, max_skymap_bytes=2**20)


def test_circle_region_zero_radius_means_no_position() -> None:
    pos = Position(10.0, 20.0, 0.0, "deg", "ICRS")
    assert circle_region(pos, containment=0.9) is None
    url_only = circle_region(pos, containment=0.9, skymap_url="https://h/x.fits")
    assert url_only is not None and url_only.kind == "skymap"
    small = Position(10.0, 20.0, 0.01, "deg", "ICRS")
    floored = circle_region(small, containment=0.3935, min_radius_deg=0.08)
    assert floored is not None and floored.radius_deg == 0.08


def test_circle_region_anywhere_or_uninformative_means_no_region() -> None:
    """180 deg and more is GCN's "anywhere" (SNEWS states 360); a circle so wide that
    its containment is no more than the sky's share inside it says nothing either."""
    for radius in (180.0, 360.0):
        assert circle_region(Position(0.0, 0.0, radius, "deg", "ICRS"), containment=0.9) is None
    # A 1-sigma (0.3935) circle of 80 deg holds less than the uniform sky's 0.413.
    wide = Position(10.0, 20.0, 80.0, "deg", "ICRS")
    assert circle_region(wide, containment=0.3935) is None
    kept = circle_region(wide, containment=0.9)
    assert kept is not None and kept.radius_deg == 80.0
    assert circle_region(Position(0.0, 0.0, 360.0, "deg", "ICRS"), containment=0.9,
                         skymap_url="https://h/x.fits") is not None  # the map stays


def test_circle_region_keeps_the_smallest_accepted_radius() -> None:
    pos = Position(10.0, 20.0, MIN_ERROR_DEG, "deg", "ICRS")
    region = circle_region(pos, containment=0.9)
    assert region is not None and region.radius_deg == MIN_ERROR_DEG


@pytest.mark.parametrize(("value", "ok"), [
    (MIN_ERROR_DEG, True), (0.0001, True), (179.9, True), (360.0, True),
    (MIN_ERROR_DEG * 0.99, False), (1e-9, False), (0.0, False), (-1.0, False),
    (360.01, False), (float("nan"), False), (float("inf"), False),
])
def test_check_error_range(value: float, ok: bool) -> None:
    if ok:
        assert check_error(value, "ra_dec_error") == value
    else:
        with pytest.raises(InvalidValue, match=r"ra_dec_error .* deg is outside the accepted "
                                               r"range \[1e-05 deg \(36 mas\), 360 deg\]"):
            check_error(value, "ra_dec_error")
