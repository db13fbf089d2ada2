"""The pictures of an event page, written as PNG files beside it.

``sky.png`` is the current region with every live ranked candidate marked
(:func:`mma.emitters.picture.render_region_png`); ``lc-<n>.png`` and
``stamps-<n>.png`` are the light curve and the alert cutouts of the candidate at
position ``n`` of the page (:mod:`mma.db.context`, :mod:`mma.emitters.lightcurve`,
:mod:`mma.emitters.stamps`). A picture that cannot be drawn is logged with the
event and candidate ids and left out: the page is written without it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
from sqlalchemy import Connection

from mma.db import region_store
from mma.page.cache import ImageCache
from mma.page.data import CandidateView, EventPage
from mma.skymaps.region import MAX_ORDER, Region

__all__ = ("IMAGES_CAP", "Images", "draw_images")

log = logging.getLogger(__name__)

IMAGES_CAP = 20
"""Candidates (the first on the page) whose light curve and cutouts are drawn."""


@dataclass
class Images:
    """File names (relative to the page) of the pictures drawn; absent: not drawn."""

    sky: str | None = None
    light: dict[int, str] = field(default_factory=dict)
    stamps: dict[int, str] = field(default_factory=dict)


def plain(value: str) -> str:
    """*value* safe for a matplotlib text: ``$`` would start mathtext (an error if unbalanced)."""
    return value.replace("\\", "/").replace("$", r"\$")


def _region_centre(region: Region) -> tuple[float, float]:
    """RA, Dec [deg] of the region's most probable tile."""
    i = int(region.density_order[0])
    lo, hi = int(region.lo[i]), int(region.hi[i])
    theta, phi = hp.pix2ang(1 << MAX_ORDER, lo + ((hi - lo) >> 1), nest=True)
    return float(np.rad2deg(phi)) % 360.0, 90.0 - float(np.rad2deg(theta))


def draw_sky(conn: Connection, page: EventPage, out: Path, cache: ImageCache) -> str | None:
    """Write ``sky.png``: the current region with the live ranked candidates marked."""
    from mma.emitters.picture import render_region_png

    if page.region is None:
        return None
    region_pk = page.region.pk
    # The best candidate is the centre, under the reticle; the others are marked
    # around it. Without one, the reticle shows the region's most probable point.
    placed = [(c.ra, c.dec, c.rank, c.object_id) for c in page.ranked
              if c.ra is not None and c.dec is not None]
    marks = [(ra, dec, str(rank)) for ra, dec, rank, _o in placed[1:]]
    title = plain(f"{page.event.event_id}: region v{page.region.version} "
                  f"({page.region.kind}, {page.region.status}), "
                  f"{len(page.ranked)} ranked candidates")

    def render() -> bytes | None:
        tiles = region_store.region_tiles_of(conn, region_pk)
        if not len(tiles.lo):
            return None
        region = Region.from_tiles(tiles.lo, tiles.hi, tiles.probdensity)
        if placed:
            ra, dec, rank, object_id = placed[0]
            label = plain(f"{rank} {object_id}")
        else:
            (ra, dec), label = _region_centre(region), "most probable"
        return render_region_png(region, ra_deg=float(ra), dec_deg=float(dec), label=label,
                                 title=title, marks=marks)

    # Tiles of a region version never change: its primary key stands for them.
    key = ("sky", region_pk, tuple(placed), title)
    return "sky.png" if cache.place(out, "sky.png", key, render) else None


def _context_renderers() -> tuple[Callable[..., Any], Callable[..., bytes],
                                  Callable[..., bytes | None]] | None:
    """The light-curve and cutout helpers, or None where this mma has none."""
    try:
        from mma.db.context import candidate_context
        from mma.emitters.lightcurve import render_light_curve_png
        from mma.emitters.stamps import render_stamps_png
    except ImportError as exc:
        log.warning("event pages: no light curves or cutouts (%s)", exc)
        return None
    return candidate_context, render_light_curve_png, render_stamps_png


def _draw_candidate(conn: Connection, page: EventPage, cand: CandidateView, out: Path,
                    images: Images, renderers: tuple[Callable[..., Any], ...],
                    cache: ImageCache) -> None:
    candidate_context, light_png, stamps_png = renderers
    context = candidate_context(conn, cand.coincidence_id)
    if context is None:
        return
    title = plain(f"{cand.object_id} ({cand.survey}) in {page.event.event_id}")
    t0 = page.event.event_time
    if context.light:
        name = f"lc-{cand.n}.png"
        if cache.place(out, name, ("light", title, t0, context.light),
                       lambda: light_png(context.light, t0=t0, title=title)):
            images.light[cand.n] = name
    if context.stamps:
        name = f"stamps-{cand.n}.png"
        shown = tuple(sorted((kind, s.format, hashlib.sha256(s.data).hexdigest())
                             for kind, s in context.stamps.items()))
        if cache.place(out, name, ("stamps", title, shown),
                       lambda: stamps_png(context.stamps, title=title)):
            images.stamps[cand.n] = name


def draw_images(conn: Connection, page: EventPage, out: Path, cache: ImageCache) -> Images:
    """Draw the page's pictures into the directory *out*; return what was drawn.

    *cache* holds the pictures of earlier pages (:mod:`mma.page.cache`): only what
    changed is drawn again.
    """
    images = Images()
    event_id = page.event.event_id
    try:
        images.sky = draw_sky(conn, page, out, cache)
    except Exception:  # a picture is a nicety: the page goes without it
        log.warning("event %s: sky map not drawn", event_id, exc_info=True)
    renderers = _context_renderers()
    if renderers is None:
        return images
    for cand in page.candidates[:IMAGES_CAP]:
        try:
            _draw_candidate(conn, page, cand, out, images, renderers, cache)
        except Exception:
            log.warning("event %s, candidate %s: light curve or cutouts not drawn",
                        event_id, cand.coincidence_id, exc_info=True)
    return images
