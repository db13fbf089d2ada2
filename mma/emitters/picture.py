"""PNG pictures of a sky region with a candidate's object marked, for the email channel.

The picture is drawn with matplotlib's Agg canvas on a bare :class:`~matplotlib.figure.Figure`
(never ``pyplot``: no global figure registry, nothing to leak between calls) and the
projections that :mod:`ligo.skymap.plot` registers (``astro degrees zoom``,
``astro hours mollweide``).

The region is not rasterized on a whole-sky HEALPix grid: the axes' own pixel grid is
sampled instead (each pixel centre converted to RA/Dec by the axes' WCS and located in
the region's level-29 tiles), so the contours follow the region's own credible levels at
the resolution of the picture whatever the zoom, in a few milliseconds and a few MB.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import healpy as hp
import matplotlib
import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray

from mma.skymaps.region import MAX_ORDER, Region

__all__ = ("ALLSKY_AREA_DEG2", "MAX_RADIUS_DEG", "MIN_RADIUS_DEG", "render_region_png",
           "zoom_radius_deg")

log = logging.getLogger(__name__)

ALLSKY_AREA_DEG2 = 5000.0
"""90 % areas [deg^2] above this are drawn on an all-sky Mollweide map."""

MIN_RADIUS_DEG = 0.5
"""Smallest zoom radius [deg]."""

MAX_RADIUS_DEG = 60.0
"""Largest zoom radius [deg]; a region needing more is drawn all-sky."""

_CONTOUR_LEVELS = (0.5, 0.9)
_MARK_COLOUR = "#ffd000"
_SAMPLES = 360  # grid samples along the longer side of the axes
_NSIDE29 = 1 << MAX_ORDER


def _projections() -> None:
    """Register ligo.skymap's projections and colour maps (imported once, lazily)."""
    matplotlib.use("Agg", force=False)
    with warnings.catch_warnings():
        # ligo.skymap imports a private reproject module at import time.
        warnings.simplefilter("ignore")
        import ligo.skymap.plot  # noqa: F401


def _unit_vectors(ra_deg: float, dec_deg: float) -> NDArray[np.float64]:
    ra, dec = np.deg2rad(ra_deg), np.deg2rad(dec_deg)
    return np.array([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def zoom_radius_deg(region: Region, ra_deg: float, dec_deg: float,
                    p: float = _CONTOUR_LEVELS[-1]) -> float:
    """Angular radius [deg] around a position that covers the ``p`` credible region.

    The distance from the position to the farthest tile of the region (tile centre
    plus the tile's half-diagonal), unclamped.

    Parameters
    ----------
    region : Region
        The sky region.
    ra_deg, dec_deg : float
        Centre [deg, ICRS].
    p : float
        Credible level whose tiles must be covered.

    Returns
    -------
    float
        Radius [deg].
    """
    inside = region.credible_level <= p
    if not inside.any():  # the most probable tile alone holds more than p
        inside = np.zeros(region.n_tiles, dtype=bool)
        inside[region.density_order[0]] = True
    lo, hi = region.lo[inside], region.hi[inside]
    x, y, z = hp.pix2vec(_NSIDE29, lo + ((hi - lo) >> 1), nest=True)
    cos = np.clip(np.column_stack((x, y, z)) @ _unit_vectors(ra_deg, dec_deg), -1.0, 1.0)
    half_diag = np.sqrt(region.area_sr[inside]) * (np.sqrt(2.0) / 2.0)
    return float(np.rad2deg(np.max(np.arccos(cos) + half_diag)))


def _sample(ax: Any, region: Region, nx: int, ny: int) -> tuple[
        NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Credible level and density of the region at a grid over the axes' pixel frame.

    Returns the pixel x and y sample coordinates and two ``(ny, nx)`` grids, NaN off
    the sky (Mollweide corners) and outside the map's tiles.
    """
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    xs = np.linspace(x0, x1, nx)
    ys = np.linspace(y0, y1, ny)
    px, py = np.meshgrid(xs, ys)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # WCS: pixels off the projection's domain
        ra, dec = ax.wcs.all_pix2world(px, py, 0)
    on_sky = np.isfinite(ra) & np.isfinite(dec)
    level = np.full(px.shape, np.nan)
    density = np.full(px.shape, np.nan)
    if on_sky.any():
        idx = region.locate(np.mod(ra[on_sky], 360.0), np.clip(dec[on_sky], -90.0, 90.0))
        hit = idx >= 0
        lv = np.full(idx.shape, np.nan)
        dn = np.full(idx.shape, np.nan)
        lv[hit] = region.credible_level[idx[hit]]
        dn[hit] = region.probdensity[idx[hit]]
        level[on_sky] = lv
        density[on_sky] = dn
    return xs, ys, level, density


def _draw_marks(ax: Any, marks: Sequence[tuple[float, float, str]], size: float) -> None:
    """Small open circles, each with its label, at (RA, Dec) [deg, ICRS]; clipped to the axes."""
    world = ax.get_transform("world")
    stroke = [patheffects.withStroke(linewidth=2.0, foreground="k")]
    for ra, dec, text in marks:
        ax.plot([ra], [dec], transform=world, marker="o", markersize=size,
                markerfacecolor="none", markeredgecolor=_MARK_COLOUR, markeredgewidth=1.2,
                linestyle="none")
        if text:
            ax.text(ra, dec, f"  {text}", transform=world, fontsize=7, color=_MARK_COLOUR,
                    va="center", clip_on=True, path_effects=stroke)


def render_region_png(region: Region, *, ra_deg: float, dec_deg: float, title: str,
                      label: str | None = None, dpi: int = 100,
                      marks: Sequence[tuple[float, float, str]] = ()) -> bytes:
    """Draw a region's 50 % and 90 % credible contours with an object marked, as PNG.

    The axes are a gnomonic zoom (``astro degrees zoom``) centred on the object with
    a radius covering the 90 % credible region (clamped to
    [:data:`MIN_RADIUS_DEG`, :data:`MAX_RADIUS_DEG`]), or an all-sky
    ``astro hours mollweide`` map when the 90 % area exceeds :data:`ALLSKY_AREA_DEG2`
    or would need a larger zoom. The probability density is shown in colour
    (``cylon``), the contours come from the region's own credible levels.

    Parameters
    ----------
    region : Region
        The sky region the candidate was scored against.
    ra_deg, dec_deg : float
        The object's position [deg, ICRS] (the mean of its detections), marked with a
        reticle.
    title : str
        Figure title.
    label : str, optional
        Text written next to the reticle (the object id).
    marks : sequence of (float, float, str)
        Other positions to mark (RA, Dec [deg, ICRS], label), e.g. the event's
        other candidates: small open circles, labelled.
    dpi : int
        Resolution; the figure is 6 x 6.4 in (zoom) or 8 x 5 in (all-sky).

    Returns
    -------
    bytes
        The PNG file.
    """
    _projections()
    area90 = region.area_deg2(_CONTOUR_LEVELS[-1])
    radius = zoom_radius_deg(region, ra_deg, dec_deg) * 1.1
    allsky = area90 > ALLSKY_AREA_DEG2 or radius > MAX_RADIUS_DEG
    radius = min(max(radius, MIN_RADIUS_DEG), MAX_RADIUS_DEG)
    fig, ax, marker_size = _figure(allsky, ra_deg, dec_deg, radius, dpi)
    try:
        _draw_density(ax, region)
        _draw_marks(ax, marks, marker_size * 0.35)
        _draw_object(ax, ra_deg, dec_deg, label, marker_size)
        ax.grid(True, linewidth=0.4, alpha=0.6)
        ax.coords[0].set_axislabel("RA (ICRS)")
        ax.coords[1].set_axislabel("Dec (ICRS)")
        ax.set_title(title, fontsize=10)
        legend = (f"contours: 50 %, 90 % credible (90 % area {area90:,.1f} deg²)"
                  + ("" if allsky else f"; zoom radius {radius:.2g} deg"))
        fig.text(0.5, 0.01, legend, ha="center", va="bottom", fontsize=8)

        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=dpi)
        return out.getvalue()
    finally:
        fig.clear()


def _figure(allsky: bool, ra_deg: float, dec_deg: float, radius: float,
            dpi: int) -> tuple[Figure, Any, float]:
    """The figure, its axes (all-sky Mollweide or a zoom of *radius* [deg] on the
    object) and the reticle's size [points]."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    if allsky:
        fig = Figure(figsize=(8.0, 5.0), dpi=dpi)
        FigureCanvasAgg(fig)
        return fig, fig.add_subplot(projection="astro hours mollweide"), 14.0
    fig = Figure(figsize=(6.0, 6.4), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(projection="astro degrees zoom",
                         center=SkyCoord(ra_deg * u.deg, dec_deg * u.deg),
                         radius=radius * u.deg)
    return fig, ax, 24.0


def _draw_density(ax: Any, region: Region) -> None:
    """The region's density in colour and its 50 % / 90 % credible contours."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    scale = _SAMPLES / max(abs(x1 - x0), abs(y1 - y0))
    nx = max(int(abs(x1 - x0) * scale), 2)
    ny = max(int(abs(y1 - y0) * scale), 2)
    xs, ys, level, density = _sample(ax, region, nx, ny)
    ax.imshow(np.ma.masked_invalid(density), origin="lower", cmap="cylon",
              extent=(xs[0], xs[-1], ys[0], ys[-1]), interpolation="nearest",
              aspect="auto")
    finite = np.isfinite(level)
    if finite.any() and np.nanmin(level) < _CONTOUR_LEVELS[-1]:
        filled = np.where(finite, level, 1.0)
        ax.contour(xs, ys, filled, levels=list(_CONTOUR_LEVELS), colors="k",
                   linewidths=(1.4, 0.9), linestyles=("solid", "dashed"))


def _draw_object(ax: Any, ra_deg: float, dec_deg: float, label: str | None,
                 marker_size: float) -> None:
    """The object under a reticle [deg, ICRS], labelled."""
    from ligo.skymap.plot import reticle

    ax.plot([ra_deg], [dec_deg], transform=ax.get_transform("world"),
            marker=reticle(inner=0.35, outer=1.0), markersize=marker_size,
            markeredgewidth=1.6, color="#00c0ff", linestyle="none")
    if label:
        ax.annotate(label, xy=(ra_deg, dec_deg), xycoords=ax.get_transform("world"),
                    xytext=(marker_size * 0.6, marker_size * 0.6),
                    textcoords="offset points", fontsize=8, color="#00c0ff",
                    fontweight="bold",
                    path_effects=[patheffects.withStroke(linewidth=2.5, foreground="k")])
