"""What a region may be: how many tiles, how small and how large an error.

Kept apart from the HEALPix code (no heavy imports) so that the notice parsers
check a stated error against the same bounds the region code honours.

Error sizes (radii, ellipse semi-axes, box half-sides, all in degrees of arc):

* below :data:`MIN_ERROR_DEG` (1e-5 deg, 36 mas) an error is refused. The
  finest error any VOEvent of the corpus states is a Gaia alert's 0.00002 deg
  (72 mas); of the notices, Swift UVOT's 0.0001 deg (0.36 arcsec). At 1e-5 deg
  a Fisher circle still has the right area (to 1e-4) but its densest tiles
  already reach level 29 (0.4 mas); finer errors cannot be honoured, and at
  1e-9 deg the density no longer even integrates;
* from :data:`ALL_SKY_DEG` (180 deg) to :data:`MAX_STATED_ERROR_DEG` (360 deg)
  an error means "anywhere": GCN's convention (SNEWS states 360 deg), no region;
* beyond 360 deg, or not finite, it is refused.
"""

from __future__ import annotations

import math

from mma.errors import HostileMessage, InvalidValue

__all__ = ("ALL_SKY_DEG", "DEFAULT_MAX_TILES", "MAX_STATED_ERROR_DEG", "MIN_ERROR_DEG",
           "UNIFORM_MARGIN", "check_error", "check_tiles", "informative", "uniform_share")

DEFAULT_MAX_TILES = 1_000_000
"""Default cap on the tiles of one region (configuration ``limits.max_region_tiles``).

Measured on every map of the test corpus after merging equal siblings: the
largest is the Swift BAT-GUANO multi-order map (322,233 tiles); O4 BAYESTAR maps
have ~19,200; the flat NSIDE-1024 3-D LALInference maps of GW170817 and GW190814
merge to 16,752 and 16,896; the NSIDE-2048 IPN map of GRB 220617A to 789; circles
and ellipses have 40,000-50,000. The cap is three times the largest and above
786,432, the most tiles a flat NSIDE-256 map can have, so any flat map up to
NSIDE 256 passes whatever its content. A region costs ~100 bytes per tile in
memory and ~70 in the database: 100 MB and 70 MB at the cap.
"""

MIN_ERROR_DEG = 1e-5
"""Smallest accepted error radius or semi-axis [deg] (36 mas); see the module doc."""

ALL_SKY_DEG = 180.0
"""An error of at least this [deg] covers the whole sky: no region."""

MAX_STATED_ERROR_DEG = 360.0
"""Largest error [deg] a notice may state (GCN's "anywhere" is 360)."""

UNIFORM_MARGIN = 1e-9
"""A stated error must hold at least this much more probability than a uniform sky
puts in it, or no density (Fisher circle, Gaussian ellipse) can honour it."""

_RANGE = f"[{MIN_ERROR_DEG:g} deg (36 mas), {MAX_STATED_ERROR_DEG:g} deg]"


def check_error(value: float, where: str) -> float:
    """Return *value* [deg] if it is an acceptable error size (see the module doc).

    Raises
    ------
    mma.errors.InvalidValue
        Not finite, below :data:`MIN_ERROR_DEG` or beyond :data:`MAX_STATED_ERROR_DEG`;
        the message names *where* and the accepted range.
    """
    if not (math.isfinite(value) and MIN_ERROR_DEG <= value <= MAX_STATED_ERROR_DEG):
        raise InvalidValue(f"{where} {value!r} deg is outside the accepted range {_RANGE} "
                           f"({ALL_SKY_DEG:g} deg and more meaning all sky)")
    return value


def uniform_share(semi_major_deg: float, semi_minor_deg: float) -> float:
    """Probability a uniform sky puts inside an ellipse (a circle when both are equal).

    ``sin(a / 2) sin(b / 2)``: the area of the ellipse in the Lambert equal-area
    projection the shapes use, over the sphere's; ``(1 - cos r) / 2`` for a circle.
    """
    return math.sin(math.radians(semi_major_deg) / 2) * math.sin(math.radians(semi_minor_deg) / 2)


def informative(containment: float, semi_major_deg: float, semi_minor_deg: float) -> bool:
    """True if *containment* within the error says more than a uniform sky does."""
    return containment - uniform_share(semi_major_deg, semi_minor_deg) > UNIFORM_MARGIN


def check_tiles(n_tiles: int, max_tiles: int, what: str = "region") -> None:
    """Refuse more than *max_tiles* tiles.

    Raises
    ------
    mma.errors.HostileMessage
        ``n_tiles > max_tiles``.
    """
    if n_tiles > max_tiles:
        raise HostileMessage(f"{what} has {n_tiles} tiles, above the cap of {max_tiles} "
                             "(max_tiles)")
