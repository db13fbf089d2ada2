"""Notice field conventions shared by the VOEvent and GCN JSON handlers.

GRB names become event aliases only when they name one burst; URLs are
screened before the skymap fetcher applies its allow-list; a stated position
and error radius become a :class:`~mma.models.RegionSpec`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mma.formats.voevent import Position
from mma.models import RegionSpec
from mma.skymaps.limits import ALL_SKY_DEG, informative

__all__ = ["circle_region", "grb_aliases", "http_url"]

_GRB_NAME = re.compile(r"GRB\s*(\d{6})([A-Za-z]{1,2})")
# Printable ASCII without quotes and angle brackets: no spaces, no controls.
_HTTP_URL = re.compile(r"https?://[!#-&(-;=?-~]+")


def grb_aliases(names: Iterable[str]) -> tuple[str, ...]:
    """Canonical GRB names (``GRB240112A``) among notice names (VOEvent ``Why/Inference/Name``,
    GCN JSON ``event_name``...).

    Only names that identify one burst become aliases (aliases merge events):
    GCN writes provisional names without the letter suffix (``GRB 240112``)
    before the burst is named, shared by every burst of the day, and source
    names (``Swift J1858.6-0814``) would merge every flare of a source; both
    are dropped here.
    """
    out = []
    for name in names:
        match = _GRB_NAME.fullmatch(name.strip())
        if match:
            out.append(f"GRB{match.group(1)}{match.group(2).upper()}")
    return tuple(dict.fromkeys(out))


def http_url(text: str | None) -> str | None:
    """*text* if it is a plausible http(s) URL (printable ASCII, < 2 kB), else None.

    Fixtures carry relative paths where a URL belongs; the skymap fetcher
    applies its own host allow-list, this only screens out non-URLs.
    """
    if text and len(text) < 2048 and _HTTP_URL.fullmatch(text):
        return text
    return None


def circle_region(
    position: Position | None,
    *,
    containment: float,
    systematic: str | None = None,
    min_radius_deg: float = 0.0,
    skymap_url: str | None = None,
) -> RegionSpec | None:
    """The region a VOEvent states: a circle, optionally with a map URL.

    Parameters
    ----------
    position : Position or None
        From :meth:`VOEvent.position`.
    containment : float
        Probability enclosed by ``Error2Radius`` for this mission/notice type.
    systematic : str, optional
        Systematic-error model to add when the radius is statistical only.
    min_radius_deg : float
        Floor applied to a stated non-zero radius [deg] (Fermi GBM: 0.08).
    skymap_url : str, optional
        URL of a probability map that supersedes the circle once fetched.

    Returns
    -------
    RegionSpec or None
        A circle; a bare ``skymap`` region when only a URL is given; None when
        the packet has no usable position: no Position2D, GCN's radius of 0 that
        means "no localisation", or a circle that says no more than a uniform sky
        (180 deg or more, GCN's "anywhere"; or one so wide that *containment*
        is no more than the sky's share inside it).
    """
    radius = None if position is None else position.error_radius_deg
    if radius is not None and radius != 0.0:
        radius = max(radius, min_radius_deg)
        if radius >= ALL_SKY_DEG or not informative(containment, radius, radius):
            radius = None
    if position is None or radius is None or radius == 0.0:
        if skymap_url is None:
            return None
        return RegionSpec(kind="skymap", skymap_url=skymap_url, containment=containment,
                          systematic=systematic)  # fmt: skip
    return RegionSpec(
        kind="circle", ra_deg=position.ra_deg, dec_deg=position.dec_deg,
        radius_deg=radius, containment=containment,
        systematic=systematic, skymap_url=skymap_url,
    )  # fmt: skip
