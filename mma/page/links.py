"""Links of an event page: broker pages of an object, TNS by position, GraceDB, notice URLs.

Every value that goes into a URL comes from a packet or a notice and may be
hostile: path parts are percent-encoded (:func:`urllib.parse.quote` with no safe
characters), numbers are formatted by mma, and URLs taken from notices are kept
only when they are plain ``http``/``https`` URLs (no ``javascript:``). The HTML
writer escapes them once more as attribute values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = ("Link", "event_links", "object_links", "safe_url")

Link = tuple[str, str]
"""A link: (label, URL)."""

_ZTF_ID = re.compile(r"ZTF\d{2}[a-z]{7}")
_SUPEREVENT = re.compile(r"[GMST]S?\d{6}[a-z]{1,3}")
TNS_RADIUS_ARCSEC = 5


def safe_url(value: Any) -> str | None:
    """*value* if it is an absolute http(s) URL with a host and no whitespace, else None."""
    if not isinstance(value, str) or len(value) > 2000 or any(c.isspace() for c in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def object_links(survey: str, object_id: str, ra_deg: Any, dec_deg: Any) -> list[Link]:
    """Broker pages of one object and a TNS cone search at its position.

    ZTF objects (an ``objectId`` like ``ZTF24aaxxxxx``) get Fink, ALeRCE and
    Lasair; objects of other surveys get only the TNS search (5 arcsec around
    the position [deg, ICRS]), which needs no survey identifier.
    """
    links: list[Link] = []
    if survey.upper() == "ZTF" and _ZTF_ID.fullmatch(object_id):
        oid = quote(object_id, safe="")
        links += [("Fink", f"https://fink-portal.org/{oid}"),
                  ("ALeRCE", f"https://alerce.online/object/{oid}"),
                  ("Lasair", f"https://lasair-ztf.lsst.ac.uk/objects/{oid}/")]
    ra, dec = _finite(ra_deg), _finite(dec_deg)
    if ra is not None and dec is not None and 0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0:
        links.append(("TNS", f"https://www.wis-tns.org/search?ra={ra:.6f}&decl={dec:.6f}"
                             f"&radius={TNS_RADIUS_ARCSEC}&coords_unit=arcsec"))
    return links


def event_links(event_id: str, aliases: tuple[str, ...], notice_urls: list[Any]) -> list[Link]:
    """Links of an event: GraceDB for a superevent id, then the URLs its notices gave.

    Parameters
    ----------
    event_id, aliases : str
        The event's names; those shaped like a superevent id (``S240422ed``) link
        to their GraceDB page.
    notice_urls : list
        The ``urls`` property of each notice (a mapping label -> URL, as stored;
        anything else is ignored), oldest first; each distinct URL is listed once.
    """
    links: list[Link] = []
    seen: set[str] = set()
    for name in (event_id, *aliases):
        if _SUPEREVENT.fullmatch(name):
            url = f"https://gracedb.ligo.org/superevents/{quote(name, safe='')}/view/"
            if url not in seen:
                seen.add(url)
                links.append((f"GraceDB {name}", url))
    for urls in notice_urls:
        if not isinstance(urls, Mapping):
            continue
        for label, value in urls.items():
            checked = safe_url(value)
            if checked is not None and checked not in seen:
                seen.add(checked)
                links.append((str(label)[:40], checked))
    return links
