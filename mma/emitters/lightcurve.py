"""PNG light curve of a candidate's object, for the event page and the email.

Drawn with matplotlib's Agg canvas on a bare :class:`~matplotlib.figure.Figure`
(never ``pyplot``: no global figure registry, nothing to leak between calls), as
:mod:`mma.emitters.picture` does. Magnitude [AB mag] against days since the
event's t0, brighter up; one colour and marker per band; points that failed
vetting drawn hollow; a dashed vertical line at t0.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mma.db.context import LightPoint

__all__ = ["HEIGHT_PX", "WIDTH_PX", "light_curve_figure", "plain_text", "render_light_curve_png"]

WIDTH_PX, HEIGHT_PX = 640, 400
"""Size of the picture [pixels]."""

_DPI = 100
# Survey bands in wavelength order, with colours a reader of ZTF and Rubin plots expects.
_BAND_STYLE = {
    "u": ("#56b4e9", "v"), "g": ("#009e73", "o"), "r": ("#d55e00", "s"),
    "i": ("#cc79a7", "D"), "z": ("#7f3c8d", "^"), "y": ("#444444", "p"),
}
_OTHER_STYLES = (("#0072b2", "h"), ("#e69f00", "P"), ("#999999", "X"))
_MAX_ERROR_MAG = 5.0  # a larger (or NaN) error is not drawn: it would only flatten the plot
_TITLE_CHARS = 90  # longer titles are cut: the picture is 640 px wide


def _style(band: str | None, others: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """Colour and marker of *band*; unknown bands get the next spare style."""
    key = band or "?"
    if key in _BAND_STYLE:
        return _BAND_STYLE[key]
    if key not in others:
        others[key] = _OTHER_STYLES[len(others) % len(_OTHER_STYLES)]
    return others[key]


def _days(points: Iterable[LightPoint], t0: datetime) -> list[float]:
    return [(p.time - t0).total_seconds() / 86400.0 for p in points]


def _by_band(points: Sequence[LightPoint]) -> dict[str, list[LightPoint]]:
    """Points with a finite magnitude, per band (``?`` for none), bands in wavelength order."""
    groups: dict[str, list[LightPoint]] = {}
    for p in points:
        if p.magnitude is not None and math.isfinite(p.magnitude):
            groups.setdefault(p.band or "?", []).append(p)
    order = list(_BAND_STYLE)
    return dict(sorted(groups.items(),
                       key=lambda kv: (order.index(kv[0]) if kv[0] in order else 99, kv[0])))


def _draw_band(ax: Any, band: str, group: Sequence[LightPoint], t0: datetime,
               style: tuple[str, str]) -> None:
    """Draw one band's points: filled when vetted, hollow when they failed vetting."""
    colour, marker = style
    for vetted in (True, False):
        chosen = [p for p in group if p.vetted is vetted]
        if not chosen:
            continue
        mags = [p.magnitude if p.magnitude is not None else math.nan for p in chosen]
        errors = [p.magnitude_err if p.magnitude_err is not None
                  and 0 <= p.magnitude_err <= _MAX_ERROR_MAG else 0.0 for p in chosen]
        label = plain_text(band) if vetted else f"{plain_text(band)} (failed vetting)"
        ax.errorbar(_days(chosen, t0), mags, yerr=errors, fmt=marker, color=colour,
                    ecolor=colour, elinewidth=1, capsize=2, markersize=6,
                    markerfacecolor=colour if vetted else "none", label=label)


def render_light_curve_png(points: Sequence[LightPoint], *, t0: datetime, title: str) -> bytes:
    """Draw an object's light curve as a PNG of :data:`WIDTH_PX` × :data:`HEIGHT_PX` pixels.

    See :func:`light_curve_figure` for what is drawn.
    """
    fig = light_curve_figure(points, t0=t0, title=title)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=_DPI)
    return out.getvalue()


def light_curve_figure(points: Sequence[LightPoint], *, t0: datetime, title: str) -> Figure:
    """The light-curve figure (on an Agg canvas) that :func:`render_light_curve_png` saves.

    Parameters
    ----------
    points : sequence of LightPoint
        The object's alerts (:func:`mma.db.context.candidate_context`); those
        without a magnitude are left out (counted in the footnote).
    t0 : datetime
        The event time (UTC): the origin of the time axis [days], marked by a line.
    title : str
        Figure title (plain text; cut to 90 characters; ``$`` is not mathtext).

    Returns
    -------
    Figure
        One axes: magnitude (inverted) against days since t0, a legend entry per
        band and vetting state (``g``, ``g (failed vetting)``) and ``t0``; also for
        no drawable point (an empty frame saying so).
    """
    fig = Figure(figsize=(WIDTH_PX / _DPI, HEIGHT_PX / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    others: dict[str, tuple[str, str]] = {}
    groups = _by_band(points)
    for band, group in groups.items():
        _draw_band(ax, band, group, t0, _style(band, others))
    ax.axvline(0.0, color="black", linestyle="--", linewidth=1, label="t0")
    drawn = sum(len(g) for g in groups.values())
    if drawn:
        ax.invert_yaxis()  # magnitudes: brighter is up
        ax.legend(loc="best", fontsize="small", numpoints=1)
    else:
        ax.text(0.5, 0.5, "no magnitude to draw", transform=ax.transAxes, ha="center",
                va="center", color="grey")
    if len(points) > drawn:
        fig.text(0.01, 0.01, f"{len(points) - drawn} alert(s) without a magnitude not drawn",
                 fontsize="x-small", color="grey")
    ax.set_xlabel(f"days since t0 ({t0.strftime('%Y-%m-%d %H:%M:%S')} UTC)")
    ax.set_ylabel("magnitude [AB]")
    ax.set_title(plain_text(title[:_TITLE_CHARS]), fontsize="medium")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plain_text(text: str) -> str:
    """*text* safe for a matplotlib label: ``$`` would start mathtext (and can raise on
    bad TeX); unprintable characters become ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text).replace("$", r"\$")
