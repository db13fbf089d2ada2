"""Light-curve and cutout pictures: real stamps drawn, edge cases drawn, hostile stamps skipped."""

from __future__ import annotations

import functools
import gzip
import io
import logging
import math
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import fastavro
import numpy as np
import pytest
from astropy.io import fits
from matplotlib.colors import to_rgba
from matplotlib.container import ErrorbarContainer
from PIL import Image

from mma.db.context import LightPoint, Stamp
from mma.emitters.lightcurve import light_curve_figure, render_light_curve_png
from mma.emitters.stamps import (
    MAX_INFLATED_BYTES,
    BadStamp,
    display_limits,
    read_stamp,
    render_stamps_png,
)
from mma.handlers import rubin

T0 = datetime(2026, 11, 20, 3, 12, 45, tzinfo=UTC)
KINDS = ("science", "template", "difference")


def _size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        image.load()  # decodes the whole file: a truncated PNG raises here
        return image.size


def _point(days: float, mag: float | None, band: str | None = "g", vetted: bool = True,
           err: float | None = 0.1) -> LightPoint:
    return LightPoint(time=T0 + timedelta(days=days), magnitude=mag, magnitude_err=err,
                      band=band, vetted=vetted, alert_id=f"{band}{days}")


# Light curves ---------------------------------------------------------------------------


@pytest.mark.parametrize("points", [
    [_point(1.5, 19.0)],
    [_point(-30, 18.0), _point(-20, 18.5, "r"), _point(-1, 19.0, "i")],  # all before t0
    [_point(d, 18 + d / 10, b, d % 3 != 0) for d in range(-3, 12) for b in "grizyu"],
    [_point(1, None), _point(2, math.nan), _point(3, math.inf)],  # no magnitude to draw
    [_point(1, 19.0, None, err=None), _point(2, 19.1, "VR$\\frac{", err=math.nan),
     _point(3, 19.2, "w", err=1e300), _point(4, 19.3, "\x1b[31m", err=-1.0)],
    [],
])
def test_light_curve_png_for_any_points(points: list[LightPoint]) -> None:
    png = render_light_curve_png(points, t0=T0, title="ZTF26aaaaaxd in $S261120ab\x00" * 9)
    assert _size(png) == (640, 400)


def test_light_curve_axes_bands_vetting_and_t0() -> None:
    points = [_point(-2, 20.0), _point(1, 18.0), _point(2, 18.5, vetted=False),
              _point(3, 19.0, "r"), _point(4, None, "r")]
    fig = light_curve_figure(points, t0=T0, title="x")
    ax = fig.axes[0]
    assert ax.yaxis_inverted()  # brighter is up
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == [
        "t0", "g", "g (failed vetting)", "r"]
    [t0_line] = [line for line in ax.get_lines() if line.get_label() == "t0"]
    assert list(np.asarray(t0_line.get_xdata())) == [0.0, 0.0]  # the vertical line at t0
    markers = {c.get_label(): c.lines[0] for c in ax.containers
               if isinstance(c, ErrorbarContainer)}
    g = markers["g"]
    assert np.asarray(g.get_xdata()).tolist() == pytest.approx([-2.0, 1.0])  # days since t0
    assert np.asarray(g.get_ydata()).tolist() == [20.0, 18.0]
    assert to_rgba(g.get_markerfacecolor()) != to_rgba("none")  # vetted: filled
    assert to_rgba(markers["g (failed vetting)"].get_markerfacecolor()) == to_rgba("none")
    # The r point without a magnitude is left out, and said so.
    assert np.asarray(markers["r"].get_xdata()).tolist() == [3.0]
    assert any("1 alert(s) without a magnitude" in t.get_text() for t in fig.texts)


# Real stamps --------------------------------------------------------------------------


def _ztf_stamps(path: Path) -> dict[str, Stamp]:
    with path.open("rb") as fh:
        packet = cast(dict[str, Any], next(fastavro.reader(fh)))
    return {k: Stamp(k, "fits.gz", packet[f"cutout{k.title()}"]["stampData"]) for k in KINDS}


def test_real_ztf_stamps_are_drawn(corpus: Path) -> None:
    files = sorted((corpus / "alerts/ztf/avro").glob("ZTF*.avro"))
    assert len(files) >= 5
    for path in files:
        stamps = _ztf_stamps(path)
        for stamp in stamps.values():
            assert read_stamp(stamp).shape == (63, 63)
        png = render_stamps_png(stamps, title=path.stem)
        assert png is not None and _size(png) == (640, 250)


def test_real_rubin_stamps_are_drawn(corpus: Path) -> None:
    frame = corpus / "alerts/rubin/avro/lsst_v9_0_7912941781254298.confluent.avro"
    alert = rubin.parse(frame.read_bytes(), topic="lsst-alerts-v9")
    stamps = {k: Stamp(k, fmt, data) for k, (fmt, data) in alert.cutouts.items()}
    assert sorted(stamps) == sorted(KINDS)
    assert read_stamp(stamps["difference"]).shape == (30, 30)  # the primary HDU's image
    png = render_stamps_png(stamps, title=alert.object_id)
    assert png is not None and _size(png) == (640, 250)


def test_gzip_is_recognised_from_the_bytes_not_the_format(corpus: Path) -> None:
    stamp = _ztf_stamps(corpus / "alerts/ztf/avro/ZTF18abudxnw_2695378462115010012.avro")[
        "science"]
    plain = gzip.decompress(stamp.data)
    assert read_stamp(Stamp("science", "fits.gz", plain)).shape == (63, 63)
    assert read_stamp(Stamp("science", "fits", stamp.data)).shape == (63, 63)


def test_difference_is_scaled_symmetrically_around_zero() -> None:
    rng = np.random.default_rng(3)
    image = rng.normal(5.0, 1.0, (40, 40))
    low, high = display_limits(image, symmetric=True)
    assert low == -high and high > 5.0
    low, high = display_limits(image, symmetric=False)
    assert 0 < low < 5.0 < high
    flat = np.full((5, 5), 7.0)
    assert display_limits(flat, symmetric=False) == (6.0, 8.0)


# Hostile stamps -----------------------------------------------------------------------


def _fits(data: np.ndarray | None, **cards: object) -> bytes:
    hdu = fits.PrimaryHDU(data)
    for key, value in cards.items():
        hdu.header[key] = value
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def _declared(naxis1: int, naxis2: int, bitpix: int = -32) -> bytes:
    """A header declaring an image of naxis1 x naxis2 pixels, with one block of data."""
    header = fits.Header([("SIMPLE", True), ("BITPIX", bitpix), ("NAXIS", 2),
                          ("NAXIS1", naxis1), ("NAXIS2", naxis2)])
    return header.tostring().encode() + bytes(2880)


@functools.cache
def _hostile() -> dict[str, bytes]:
    good = gzip.compress(_fits(np.ones((20, 20), dtype=np.float32)))
    with_nan_image = np.ones((20, 20), dtype=np.float32)
    with_nan_image[5:9, 5:9] = np.nan
    return {
        "empty": b"",
        "truncated gzip": good[: len(good) // 2],
        "corrupt gzip": b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4,
        "not FITS": b"P4\n63 63\n" + bytes(500),
        "FITS-like garbage": b"SIMPLE  =" + b"\xff" * 3000,
        "no image (header only)": _fits(None),
        "1-D": _fits(np.arange(100, dtype=np.float32)),
        "all NaN": gzip.compress(_fits(np.full((30, 30), np.nan, dtype=np.float32))),
        "all inf": _fits(np.full((30, 30), np.inf, dtype=np.float64)),
        "huge declared": _declared(100_000, 100_000),
        "huge declared, gzipped": gzip.compress(_declared(100_000, 100_000)),
        "declares more than it holds": _declared(1000, 1000),
        "negative axis": _declared(-5, 20),
        "3-D cube": _fits(np.ones((4, 10, 10), dtype=np.float32)),
        "odd BITPIX": _declared(10, 10, bitpix=24),
        "gzip bomb": gzip.compress(b"SIMPLE  =" + bytes(MAX_INFLATED_BYTES + 2**20)),
        "too many axes": fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 5000)])
        .tostring().encode(),
    }


@pytest.mark.parametrize("name", sorted(_hostile()))
def test_a_hostile_stamp_is_refused_with_a_reason(name: str) -> None:
    with pytest.raises(BadStamp):
        read_stamp(Stamp("science", "fits.gz", _hostile()[name]))


def test_hostile_stamps_are_skipped_never_raised_and_memory_stays_small(
        caplog: pytest.LogCaptureFixture) -> None:
    hostile = _hostile()
    names = sorted(hostile)
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, logger="mma.emitters.stamps"):
            for i in range(0, len(names), 3):
                triple = dict(zip(KINDS, names[i:i + 3], strict=False))
                stamps = {k: Stamp(k, "fits", hostile[n]) for k, n in triple.items()}
                assert render_stamps_png(stamps, title=f"hostile {i}") is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The gzip bomb inflates to the cap and stops; nothing allocates the declared images.
    assert peak < 3 * MAX_INFLATED_BYTES
    assert caplog.text.count("skipped") == len(names)


def test_one_bad_stamp_leaves_its_panel_empty(corpus: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    stamps = _ztf_stamps(corpus / "alerts/ztf/avro/ZTF18abudxnw_2695378462115010012.avro")
    stamps["template"] = Stamp("template", "fits.gz", stamps["template"].data[:200])
    del stamps["difference"]
    with caplog.at_level(logging.WARNING, logger="mma.emitters.stamps"):
        png = render_stamps_png(stamps, title="ZTF18abudxnw")
    assert png is not None and _size(png) == (640, 250)
    assert "cutout template (fits.gz) of 'ZTF18abudxnw' skipped: truncated gzip" in caplog.text
    assert render_stamps_png({}, title="none") is None


def test_nan_pixels_are_drawn() -> None:
    image = np.random.default_rng(1).normal(0, 1, (25, 25)).astype(np.float32)
    image[:, :5] = np.nan
    stamp = Stamp("science", "fits", _fits(image))
    read = read_stamp(stamp)
    assert np.isnan(read[:, :5]).all() and np.isfinite(read[:, 5:]).all()
    assert render_stamps_png({"science": stamp}, title="nan") is not None
