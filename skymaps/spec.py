"""One dispatcher from a notice's :class:`~mma.models.RegionSpec` to a multi-order table.

The ingest pipeline calls :func:`region_table` for every notice with a region and
hands the result to :func:`mma.skymaps.region.build_region`. Which shape becomes
which density:

=========  ====================================================================
kind       table
=========  ====================================================================
skymap     the inline FITS bytes, decoded by :func:`~mma.skymaps.decode.read_multiorder`
circle     a Fisher circle (:func:`~mma.skymaps.shapes.circle_map`), or with
           ``systematic`` set, that core + tail model
           (:func:`~mma.skymaps.systematics.systematic_map`)
ellipse    :func:`~mma.skymaps.shapes.ellipse_map` (PA east of north)
box        :func:`~mma.skymaps.box.box_map` (RA errors in degrees of RA)
=========  ====================================================================

A spec that is only a URL (``kind == "skymap"``, no bytes) cannot be turned into
a table without the network, which this module never touches: :func:`region_table`
returns ``None`` and the caller fetches (:func:`mma.skymaps.fetch.fetch_skymap`)
and calls again with ``skymap=`` the downloaded bytes. A shape that also has a
``skymap_url`` gives the shape's table at once; the map, once fetched, supersedes it.
"""

from __future__ import annotations

import logging

from astropy.table import Table

from mma.errors import InvalidValue
from mma.models import RegionSpec
from mma.skymaps.box import box_map
from mma.skymaps.decode import DEFAULT_MAX_BYTES, read_multiorder
from mma.skymaps.limits import DEFAULT_MAX_TILES, check_error, check_tiles
from mma.skymaps.shapes import circle_map, ellipse_map
from mma.skymaps.systematics import MODELS, systematic_map

__all__ = ("needs_fetch", "region_table")

log = logging.getLogger(__name__)


def needs_fetch(spec: RegionSpec) -> bool:
    """True when the spec is a map known only by its URL (no shape, no bytes)."""
    return spec.kind == "skymap" and spec.skymap is None


def _number(value: float | None, name: str) -> float:
    # RegionSpec.__post_init__ already refuses missing fields; this narrows the type.
    if value is None:
        raise InvalidValue(f"region needs {name}")
    return value


def _size(value: float | None, name: str) -> float:
    """An error size [deg] the shapes can honour (the parsers check it first)."""
    return check_error(_number(value, name), f"region {name}")


def region_table(spec: RegionSpec, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 skymap: bytes | None = None, max_tiles: int = DEFAULT_MAX_TILES) -> Table | None:
    """Multi-order probability table of a region as the notice states it.

    Parameters
    ----------
    spec : mma.models.RegionSpec
        The region (positions in deg, ICRS).
    max_bytes : int
        Cap [bytes] on the FITS bytes and on their inflated size.
    skymap : bytes, optional
        FITS bytes fetched from ``spec.skymap_url``; they take precedence over the
        spec's own bytes and shape.
    max_tiles : int
        Largest accepted number of tiles of the table, checked on a map's header
        before it is read and on every table before it is returned.

    Returns
    -------
    astropy.table.Table or None
        UNIQ (int64) and PROBDENSITY [sr^-1] (plus DISTMU/DISTSIGMA/DISTNORM when
        the map has them), normalised; ``meta['region_source']`` names the branch
        taken. ``None`` when the spec is only a URL and ``skymap`` is not given.

    Raises
    ------
    mma.errors.BadSkymap, mma.errors.HostileMessage
        Undecodable or oversized map bytes; more than ``max_tiles`` tiles.
    mma.errors.InvalidValue
        Unknown systematic model, a systematic model on a non-circle, or shape
        parameters no density can honour (errors below 0.1 arcsec included).
    """
    if spec.systematic is not None:
        if spec.systematic not in MODELS:
            raise InvalidValue(f"unknown systematic model {spec.systematic!r} "
                               f"(known: {sorted(MODELS)})")
        if spec.kind not in ("circle", "skymap"):
            raise InvalidValue(f"systematic model {spec.systematic!r} applies to circles, "
                               f"not to a {spec.kind}")
    data = skymap if skymap is not None else spec.skymap
    if data is not None:
        table = read_multiorder(data, max_bytes=max_bytes, max_tiles=max_tiles)
        source = "skymap"
    elif spec.kind == "skymap":
        log.debug("region is only a URL (%s): the caller fetches it first", spec.skymap_url)
        return None
    else:
        ra, dec = _number(spec.ra_deg, "ra_deg"), _number(spec.dec_deg, "dec_deg")
        p = spec.containment
        if spec.kind == "circle":
            radius = _size(spec.radius_deg, "radius_deg")
            if spec.systematic is not None:
                table = systematic_map(ra, dec, radius, spec.systematic, p)
                source = spec.systematic
            else:
                table, source = circle_map(ra, dec, radius, p), "circle"
        elif spec.kind == "ellipse":
            table = ellipse_map(ra, dec, _size(spec.semi_major_deg, "semi_major_deg"),
                                _size(spec.semi_minor_deg, "semi_minor_deg"),
                                _number(spec.position_angle_deg, "position_angle_deg"), p)
            source = "ellipse"
        elif spec.kind == "box":
            table = box_map(ra, dec, _size(spec.ra_plus_deg, "ra_plus_deg"),
                            _size(spec.ra_minus_deg, "ra_minus_deg"),
                            _size(spec.dec_plus_deg, "dec_plus_deg"),
                            _size(spec.dec_minus_deg, "dec_minus_deg"), p)
            source = "box"
        else:
            raise InvalidValue(f"unknown region kind {spec.kind!r}")
    check_tiles(len(table), max_tiles, f"{source} region")
    table.meta["region_source"] = source
    log.debug("region table from %s: %d tiles", source, len(table))
    return table
