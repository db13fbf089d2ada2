"""Field conventions shared by the VOEvent and JSON handlers."""

from __future__ import annotations

from mma.formats.notice_fields import circle_region, grb_aliases, http_url
from mma.formats.voevent import Position


def test_grb_aliases_keep_only_names_of_one_burst() -> None:
    names = ["GRB 240112A", "GRB240112a", "GRB 240112", "Swift J1858.6-0814", "GRB 170817A"]
    assert grb_aliases(names) == ("GRB240112A", "GRB170817A")


def test_http_url_screens_non_urls() -> None:
    assert http_url("https://gracedb.ligo.org/x.fits") == "https://gracedb.ligo.org/x.fits"
    assert http_url("data/LALInference.v1.fits.gz") is None
    assert http_url("http://a b") is None and http_url(None) is None


def test_circle_region_zero_radius_means_no_position() -> None:
    pos = Position(10.0, 20.0, 0.0, "deg", "ICRS")
    assert circle_region(pos, containment=0.9) is None
    url_only = circle_region(pos, containment=0.9, skymap_url="https://h/x.fits")
    assert url_only is not None and url_only.kind == "skymap"
    small = Position(10.0, 20.0, 0.01, "deg", "ICRS")
    floored = circle_region(small, containment=0.3935, min_radius_deg=0.08)
    assert floored is not None and floored.radius_deg == 0.08
