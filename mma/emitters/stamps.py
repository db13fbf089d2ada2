"""PNG of an alert's cutout triplet (science, template, difference), for the page and the email.

The stamps are bytes from a packet, stored as sent: anything may be in them.
Each is read defensively (:func:`read_stamp`): at most :data:`MAX_STAMP_BYTES`
as given and :data:`MAX_INFLATED_BYTES` after gunzip (gzip is recognised from
its magic bytes ``1f 8b``, whatever the stored format says), parsed with
:mod:`astropy.io.fits` from memory, and the first image HDU with two axes of at
most :data:`MAX_SIDE_PX` pixels whose data the file really holds is taken. A
stamp that is not FITS, is truncated, has no such image, or holds no finite
pixel is skipped with a warning naming it; nothing here raises on bad bytes.

Each panel is scaled by :class:`astropy.visualization.ZScaleInterval` (the
difference symmetrically around 0, so that positive and negative residuals
look alike); NaN pixels are drawn in a flat colour. Drawn with matplotlib's Agg
canvas on a bare :class:`~matplotlib.figure.Figure`, never ``pyplot``.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
import zlib
from collections.abc import Mapping

import matplotlib
import numpy as np
from astropy.io import fits
from astropy.visualization import ZScaleInterval
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray

from mma.db.context import KINDS, Stamp
from mma.emitters.lightcurve import plain_text
from mma.formats.ids import escaped

__all__ = ["MAX_INFLATED_BYTES", "MAX_SIDE_PX", "MAX_STAMP_BYTES", "BadStamp",
           "display_limits", "read_stamp", "render_stamps_png"]

log = logging.getLogger(__name__)

MAX_STAMP_BYTES = 4 * 2**20
"""Largest stamp read, as stored [bytes] (real ones: ZTF ~15 kB gzipped, Rubin ~70 kB)."""
MAX_INFLATED_BYTES = 16 * 2**20
"""Largest stamp after gunzip [bytes]: a gzip bomb stops inflating here."""
MAX_SIDE_PX = 2048
"""Largest side of a stamp image [pixels] (ZTF 63, Rubin ~60–200)."""
MAX_HDUS = 8  # HDUs looked at for an image

GZIP_MAGIC = b"\x1f\x8b"
WIDTH_PX, HEIGHT_PX = 640, 250
_DPI = 100
_CMAP = matplotlib.colormaps["gray"].with_extremes(bad="#ffd700")  # blank pixels: gold


class BadStamp(ValueError):
    """A stamp that cannot be drawn (the message says why)."""


def _gunzip(data: bytes) -> bytes:
    """Inflate gzip *data*, at most :data:`MAX_INFLATED_BYTES`; BadStamp if more or cut short."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_INFLATED_BYTES + 1)
    except zlib.error as exc:
        raise BadStamp(f"corrupt gzip ({escaped(str(exc))})") from exc
    if len(out) > MAX_INFLATED_BYTES:
        raise BadStamp(f"inflates beyond {MAX_INFLATED_BYTES} bytes")
    if not inflater.eof:
        raise BadStamp("truncated gzip")
    return out


def _image_of(hdu: fits.hdu.base._BaseHDU, available: int) -> NDArray[np.float64] | None:
    """The HDU's data as a 2-D float image, if its header declares one the file holds."""
    if not getattr(hdu, "is_image", False):
        return None
    header = hdu.header
    naxis = header.get("NAXIS", 0)
    if not isinstance(naxis, int) or naxis < 2:
        return None
    if naxis > 999:  # the FITS standard's limit
        raise BadStamp(f"NAXIS = {naxis}")
    shape = [header.get(f"NAXIS{i}") for i in range(1, naxis + 1)]
    if not all(isinstance(n, int) and 0 < n <= MAX_SIDE_PX for n in shape[:2]) or any(
            n != 1 for n in shape[2:]):
        raise BadStamp(f"image axes {shape!r} are not two of 1–{MAX_SIDE_PX} pixels")
    bitpix = header.get("BITPIX")
    if bitpix not in (8, 16, 32, 64, -32, -64):
        raise BadStamp(f"BITPIX {bitpix!r} is not a FITS pixel type")
    if math.prod(shape[:2]) * abs(bitpix) // 8 > available:
        raise BadStamp("declares more pixels than the file holds")
    data = hdu.data
    if data is None:
        return None
    image = np.asarray(data, dtype=np.float64).reshape(shape[1], shape[0])
    image[~np.isfinite(image)] = np.nan
    return image


def read_stamp(stamp: Stamp) -> NDArray[np.float64]:
    """The stamp's image as a 2-D float array (NaN for blank pixels).

    Raises
    ------
    BadStamp
        Too large, corrupt or truncated gzip, not FITS, no 2-D image of at most
        :data:`MAX_SIDE_PX` pixels a side that the file holds, or no finite pixel.
    """
    data = bytes(stamp.data)
    if len(data) > MAX_STAMP_BYTES:
        raise BadStamp(f"{len(data)} bytes, above the cap of {MAX_STAMP_BYTES}")
    if data[:2] == GZIP_MAGIC:
        data = _gunzip(data)
    if not data.startswith(b"SIMPLE  ="):
        raise BadStamp("not a FITS file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy warns about every odd header card
            with fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=True) as hdul:
                for n, hdu in enumerate(hdul):
                    if n >= MAX_HDUS:
                        break
                    image = _image_of(hdu, len(data))
                    if image is not None:
                        break
                else:
                    image = None
    except BadStamp:
        raise
    except Exception as exc:  # astropy reports corrupt files with assorted exceptions
        raise BadStamp(f"unreadable FITS ({type(exc).__name__}: {escaped(str(exc))})") from exc
    if image is None:
        raise BadStamp("no 2-D image HDU")
    if not np.isfinite(image).any():
        raise BadStamp("no finite pixel")
    return image


def display_limits(image: NDArray[np.float64], symmetric: bool) -> tuple[float, float]:
    """Display range: z-scale of the finite pixels, made symmetric around 0 if asked."""
    finite = image[np.isfinite(image)]
    low, high = (float(v) for v in ZScaleInterval().get_limits(finite))
    if symmetric:
        high = max(abs(low), abs(high))
        low = -high
    if not high > low:  # a flat image
        low, high = low - 1.0, high + 1.0
    return low, high


def render_stamps_png(stamps: Mapping[str, Stamp], *, title: str) -> bytes | None:
    """Draw science, template and difference side by side as a PNG (640 × 250 pixels).

    Parameters
    ----------
    stamps : mapping of str to Stamp
        Kind → stamp (:class:`mma.db.context.CandidateContext` ``stamps``); other kinds
        are ignored, a missing or unreadable one leaves its panel empty.
    title : str
        Figure title (plain text).

    Returns
    -------
    bytes or None
        PNG bytes; None when no stamp could be drawn.
    """
    images: dict[str, NDArray[np.float64]] = {}
    for kind in KINDS:
        stamp = stamps.get(kind)
        if stamp is None:
            continue
        try:
            images[kind] = read_stamp(stamp)
        except BadStamp as exc:
            log.warning("cutout %s (%s) of %r skipped: %s", kind, escaped(stamp.format),
                        escaped(title), exc)
    if not images:
        return None
    fig = Figure(figsize=(WIDTH_PX / _DPI, HEIGHT_PX / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    for i, kind in enumerate(KINDS):
        ax = fig.add_subplot(1, len(KINDS), i + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(kind, fontsize="small")
        image = images.get(kind)
        if image is None:
            ax.text(0.5, 0.5, "not available", transform=ax.transAxes, ha="center",
                    va="center", color="grey", fontsize="small")
            continue
        low, high = display_limits(image, symmetric=kind == "difference")
        ax.imshow(np.ma.masked_invalid(image), origin="lower", cmap=_CMAP, vmin=low,
                  vmax=high, interpolation="nearest")
    fig.suptitle(plain_text(title), fontsize="medium")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=_DPI)
    return out.getvalue()
