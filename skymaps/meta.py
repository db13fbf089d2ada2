"""A sky map's FITS header as the metadata ligo.skymap's ``read_sky_map`` gives it.

The cards astropy keeps in a table's ``meta`` (structural and column keywords
dropped, COMMENT and HISTORY left out), then ligo.skymap's renaming: ``OBJECT``
→ ``objid``, ``DATE-OBS`` → ``gps_time``, ``DISTMEAN`` → ``distmean``,
``INSTRUME`` → ``instruments``... (``ligo.skymap.io.fits.FITS_META_MAPPING``).
The metadata is informative only: a card that does not decode is dropped with
a warning rather than costing the map.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from astropy.io import fits
from astropy.io.fits.connect import REMOVE_KEYWORDS, is_column_keyword
from ligo.skymap.io.fits import FITS_META_MAPPING

from mma.errors import BadSkymap

__all__ = ("header_meta",)

log = logging.getLogger(__name__)

# Cards read_sky_map removes: the map's layout, not its metadata.
_LAYOUT = ("PIXTYPE", "EXTNAME", "NSIDE", "FIRSTPIX", "LASTPIX", "INDXSCHM", "MOCORDER",
           "ORDERING")


def _cards(header: fits.Header) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    try:
        cards = [(card.keyword, card.value) for card in header.cards]
    except Exception as exc:
        # astropy parses card values lazily and raises on crafted ones.
        raise BadSkymap(f"unreadable FITS header card: {type(exc).__name__}: {exc}") from exc
    for key, value in cards:
        if key in ("", "COMMENT", "HISTORY") or is_column_keyword(key) or key in REMOVE_KEYWORDS:
            continue
        meta.setdefault(key, value)
    return meta


def header_meta(header: fits.Header) -> dict[str, Any]:
    """Metadata of a sky map from its table header.

    Raises
    ------
    mma.errors.BadSkymap
        A card that astropy cannot read, or ``COORDSYS`` other than ``C``
        (equatorial), which ligo.skymap refuses too.
    """
    meta = _cards(header)
    for key in _LAYOUT:
        meta.pop(key, None)
    system = meta.pop("COORDSYS", "C")
    if str(system).strip() != "C":
        raise BadSkymap(f"sky map in coordinate system {str(system)[:10]!r}, not equatorial (C)")
    for fits_key, rows in itertools.groupby(FITS_META_MAPPING, lambda row: row[1]):
        if fits_key not in meta:
            continue
        value = meta.pop(fits_key)
        for key, _, _, _, from_fits in rows:
            if from_fits is None:
                continue
            try:
                meta[key] = from_fits(value)
            except Exception as exc:  # ligo.skymap's decoders: ValueError, TypeError...
                # astropy's messages span lines: one line of it, quoted, keeps the log clean.
                reason = (str(exc).splitlines() or [""])[0][:120]
                log.warning("sky map header %s = %.40r dropped: %r", fits_key, value, reason)
    return meta
