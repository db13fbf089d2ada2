"""New-style GCN JSON notices: ``Localization`` → :class:`RegionSpec`.

Every ``gcn.notices.*`` schema with a position builds on
``gcn/notices/core/Localization.schema.json`` (the envelope around it is
:mod:`mma.formats.gcn_envelope`):

``ra``, ``dec``, ``ra_dec_error``, ``containment_probability``
    ICRS degrees. ``ra_dec_error`` is one number (circle radius) or a list
    ``[semi-major, semi-minor, PA east of north]`` (ellipse), all in degrees, at
    probability ``containment_probability``, which **defaults to 0.9** when
    absent (flag ``containment_default_0.9``); ``systematic_included`` false →
    flag ``statistical_error_only``. Schemas < 4.0: ``ra_uncertainty: [r]`` (circle).
    Radii and axes must lie in [1e-5, 360] deg (:mod:`mma.skymaps.limits`); 180 deg
    and more, or an error that holds no more than a uniform sky at the default
    containment, means "anywhere" (flag ``all_sky``, no region); a *stated*
    containment no more than the uniform sky's share is refused.
``healpix_url`` / ``healpix_file``
    A map URL (``skymap_url`` beside the shape: usable at once, superseded by the
    map once fetched) or an inline base64 FITS map (the region; shape → properties).

Errors are :class:`~mma.errors.BadMessage` subclasses naming the field.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mma.errors import BadSkymap, InvalidValue, MalformedMessage, MissingField
from mma.formats.gcn_envelope import finite, number
from mma.formats.gcn_json import b64decode_capped
from mma.formats.ids import PRINTABLE, shown
from mma.models import RegionSpec
from mma.skymaps.limits import ALL_SKY_DEG, MIN_ERROR_DEG, check_error, informative

__all__ = ["DEFAULT_CONTAINMENT", "Localization", "localization"]

logger = logging.getLogger(__name__)

DEFAULT_CONTAINMENT = 0.9
_FITS_START = (b"SIMPLE  =", b"\x1f\x8b")  # plain FITS or gzip-compressed FITS
_MAP_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz", ".fits.fz")


@dataclass(frozen=True)
class Localization:
    """What a notice says about where the event is: ``region`` (None without a
    position, without an error, or with an all-sky error), caveat ``flags``
    (``containment_default_0.9``, ``statistical_error_only``, ``no_error_region``,
    ``all_sky``, ``rectangle_as_ellipse``...) and ``properties`` (the position and
    error as stated, degrees)."""

    region: RegionSpec | None
    flags: tuple[str, ...]
    properties: dict[str, Any]


def _position(obj: Mapping[str, Any], where: str) -> tuple[float, float] | None:
    ra, dec = number(obj, "ra", where), number(obj, "dec", where)
    if ra is None and dec is None:
        return None
    if ra is None or dec is None:
        raise MissingField(f"{where}{'ra' if ra is None else 'dec'} is missing "
                           "although the other coordinate is given")
    if not 0.0 <= ra < 360.0:
        raise InvalidValue(f"{where}ra {ra!r} deg outside [0, 360)")
    if not -90.0 <= dec <= 90.0:
        raise InvalidValue(f"{where}dec {dec!r} deg outside [-90, 90]")
    return ra, dec


def _lengths(value: Any, where: str) -> list[float]:
    values = value if isinstance(value, list) else [value]
    if not 1 <= len(values) <= 3:
        raise InvalidValue(f"{where} has {len(values)} values, expected 1 (circle) or up to "
                           "3 (ellipse: semi-major, semi-minor, PA)")
    out = [finite(v, f"{where}[{i}]") for i, v in enumerate(values)]
    for i, axis in enumerate(out[:2]):
        check_error(axis, where if len(values) == 1 else f"{where}[{i}]")
    return out


def _rectangle(corners: Any, centre: tuple[float, float], where: str) -> tuple[float, ...]:
    """Semi-axes and PA [deg] of the ellipse of equal area and orientation as a rectangle.

    MAXI's tilted rectangle is projected on the tangent plane at the centre; a =
    L/√π, b = W/√π (sides L ≥ W): good to a few per cent for ≤ 3° boxes.
    """
    if not isinstance(corners, list) or len(corners) != 4:
        raise InvalidValue(f"{where} must be 4 [ra, dec] corners")
    ra0, dec0 = centre
    points = []
    for i, corner in enumerate(corners):
        if not isinstance(corner, list) or len(corner) != 2:
            raise InvalidValue(f"{where}[{i}] must be an [ra, dec] pair")
        pos = _position({"ra": corner[0], "dec": corner[1]}, f"{where}[{i}].")
        assert pos is not None  # both given: _position returns a pair
        dra = (pos[0] - ra0 + 180.0) % 360.0 - 180.0  # RA wrap at 0/360
        points.append((dra * math.cos(math.radians(dec0)), pos[1] - dec0))
    sides = [(points[(i + 1) % 4][0] - points[i][0], points[(i + 1) % 4][1] - points[i][1])
             for i in range(4)]
    length = [math.hypot(*s) for s in sides]
    first, second = (length[0] + length[2]) / 2, (length[1] + length[3]) / 2
    if min(first, second) < MIN_ERROR_DEG:
        raise InvalidValue(f"{where} corners do not span a rectangle with sides of at least "
                           f"{MIN_ERROR_DEG:g} deg")
    long_side = sides[0] if first >= second else sides[1]
    pa = math.degrees(math.atan2(long_side[0], long_side[1])) % 180.0  # east of north
    big, small = max(first, second), min(first, second)
    return big / math.sqrt(math.pi), small / math.sqrt(math.pi), pa


def _map_url(value: Any, where: str, flags: list[str]) -> str | None:
    if value is None:
        return None
    # Printable ASCII only: urlsplit drops CR, LF and TAB, so a check of its parts
    # alone would let them through to the database, the logs and the fetcher.
    if (not isinstance(value, str) or not PRINTABLE.fullmatch(value)
            or urlsplit(value).scheme not in ("http", "https")):
        raise InvalidValue(f"{where} {shown(value, 60)} is not an http(s) URL "
                           "of printable ASCII")
    if not urlsplit(value).path.lower().endswith(_MAP_SUFFIXES):
        flags.append("healpix_url_not_fits")  # e.g. KM3NeT's placeholder portal URL
        return None
    return value


def _inline_map(encoded: Any, where: str, max_bytes: int, flags: list[str],
                props: dict[str, Any]) -> bytes | None:
    """FITS bytes of ``healpix_file``; None (flag ``healpix_file_unusable``) if not a map.

    Oversized is hostile: the whole message is refused before decoding. Merely
    not base64 FITS (the GUANO example ships ``"hhhh..."``) loses only the map;
    time, id and shape stay usable and ``healpix_file_error`` says what was dropped.
    """
    if encoded is None:
        return None
    if not isinstance(encoded, str):
        raise InvalidValue(f"{where}healpix_file is {type(encoded).__name__}, "
                           "expected base64 text")
    try:
        data = b64decode_capped(encoded, max_bytes=max_bytes, what=f"{where}healpix_file")
        if not data.startswith(_FITS_START):
            raise BadSkymap(f"{where}healpix_file does not decode to a FITS file")
    except (MalformedMessage, BadSkymap) as exc:
        logger.warning("inline map dropped: %s", exc)
        flags.append("healpix_file_unusable")
        props["healpix_file_error"] = str(exc)
        return None
    return data


def _error_shape(obj: Mapping[str, Any], centre: tuple[float, float], where: str,
                 flags: list[str], props: dict[str, Any]) -> dict[str, float]:
    """The error region around *centre*: a circle, an ellipse, or {} (none, or all-sky)."""
    error, error_key = obj.get("ra_dec_error"), "ra_dec_error"
    if error is None and obj.get("ra_uncertainty") is not None:
        error, error_key = obj.get("ra_uncertainty"), "ra_uncertainty"  # schema < 4.0
        if (shape_name := obj.get("uncertainty_shape", "circle")) != "circle":
            raise InvalidValue(f"{where}uncertainty_shape {str(shape_name)[:20]!r} "
                               "with ra_uncertainty is not supported (only circle)")
        flags.append("legacy_uncertainty_fields")
    corners = obj.get("rectangular_error_corners")
    shape: dict[str, float] = {}
    if error is not None:
        values = _lengths(error, f"{where}{error_key}")
        props[error_key] = error
        if len(values) == 3:
            if values[1] > values[0]:
                raise InvalidValue(f"{where}{error_key} semi-minor {values[1]} deg larger "
                                   f"than semi-major {values[0]} deg")
            shape = {"semi_major_deg": values[0], "semi_minor_deg": values[1],
                     "position_angle_deg": values[2] % 180.0}
        else:
            if len(values) == 2 and values[0] != values[1]:
                flags.append("ellipse_without_position_angle")  # conservative circle
            shape = {"radius_deg": max(values[:2])}
    elif corners is not None:
        a, b, pa = _rectangle(corners, centre, f"{where}rectangular_error_corners")
        props["rectangular_error_corners"] = corners
        flags.append("rectangle_as_ellipse")
        shape = {"semi_major_deg": a, "semi_minor_deg": b, "position_angle_deg": pa}
    if shape and max(shape.get("radius_deg", 0.0), shape.get("semi_major_deg", 0.0)) >= ALL_SKY_DEG:
        flags.append("all_sky")  # "anywhere": no region rather than a useless flat one
        return {}
    if not shape:
        flags.append("no_error_region")
    return shape


def _informative(shape: dict[str, float], containment: float | None, where: str,
                 flags: list[str]) -> dict[str, float]:
    """*shape*, unless at its containment it says no more than a uniform sky does.

    Then no density can honour it: a stated ``containment_probability`` is refused
    (InvalidValue naming it); at the default 0.9 the error means "anywhere"
    (flag ``all_sky``, no region), as an error of 180 deg or more does.
    """
    a = shape.get("radius_deg", shape.get("semi_major_deg", 0.0))
    b = shape.get("radius_deg", shape.get("semi_minor_deg", 0.0))
    if informative(containment or DEFAULT_CONTAINMENT, a, b):
        return shape
    if containment is not None:
        raise InvalidValue(f"{where}containment_probability {containment!r} within the stated "
                           f"{a:g} x {b:g} deg error is no more than a uniform sky puts there")
    flags.append("all_sky")
    return {}


def _region_of(data: bytes | None, shape: dict[str, float],
               centre: tuple[float, float] | None, url: str | None,
               containment: float | None) -> RegionSpec | None:
    """The region: the inline map, else the shape around the centre, else the map URL."""
    if data is not None:
        return RegionSpec(kind="skymap", skymap=data, skymap_url=url)
    if shape and centre is not None:
        return RegionSpec(
            kind="circle" if "radius_deg" in shape else "ellipse",
            ra_deg=centre[0], dec_deg=centre[1], skymap_url=url,
            radius_deg=shape.get("radius_deg"), semi_major_deg=shape.get("semi_major_deg"),
            semi_minor_deg=shape.get("semi_minor_deg"),
            position_angle_deg=shape.get("position_angle_deg"),
            containment=containment or DEFAULT_CONTAINMENT,
        )
    if url is not None:
        return RegionSpec(kind="skymap", skymap_url=url)  # a map and nothing else (SNEWS 2)
    return None


def localization(obj: Mapping[str, Any], *, max_skymap_bytes: int,
                 where: str = "") -> Localization:
    """Read a GCN JSON ``Localization`` (see the module docstring) from *obj*.

    Parameters
    ----------
    obj : mapping
        The notice, or a nested object holding localisation fields.
    max_skymap_bytes : int
        Largest accepted decoded ``healpix_file`` [bytes], refused before decoding.
    where : str
        Prefix for error messages (``"coincident_events[0].localization."``).

    Raises
    ------
    MissingField, InvalidValue, HostileMessage, MalformedMessage, BadSkymap
    """
    flags: list[str] = []
    centre = _position(obj, where)
    containment = number(obj, "containment_probability", where)
    if containment is not None and not 0.0 < containment < 1.0:
        raise InvalidValue(f"{where}containment_probability {containment!r} outside (0, 1)")
    systematic = obj.get("systematic_included")
    if systematic is not None and not isinstance(systematic, bool):
        raise InvalidValue(f"{where}systematic_included is {type(systematic).__name__}, "
                           "expected true/false")
    url_text = obj.get("healpix_url")
    props: dict[str, Any] = {"ra": None, "dec": None, "containment_probability": containment,
                             "systematic_included": systematic, "healpix_url": url_text}
    url = _map_url(url_text, f"{where}healpix_url", flags)
    shape: dict[str, float] = {}
    if centre is not None:
        props["ra"], props["dec"] = centre
        shape = _error_shape(obj, centre, where, flags, props)
    if shape:
        shape = _informative(shape, containment, where, flags)
    if shape:
        if containment is None:
            containment = DEFAULT_CONTAINMENT
            flags.append("containment_default_0.9")
        if systematic is False:
            flags.append("statistical_error_only")
    data = _inline_map(obj.get("healpix_file"), where, max_skymap_bytes, flags, props)
    if data is not None:
        props["shape"] = shape or None  # the map is the region; the shape is kept on record
    region = _region_of(data, shape, centre, url, containment)
    if region is not None and region.kind == "skymap" and data is None:
        flags = [f for f in flags if f != "no_error_region"]  # a map and nothing else
    if region is None and centre is None:
        flags.append("no_position")
    return Localization(region=region, flags=tuple(flags), properties=props)
