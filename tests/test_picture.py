"""The region picture of the email channel: valid PNGs, zoom or all-sky, no figure leaks."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import healpy as hp
import matplotlib
import numpy as np
import pytest
from PIL import Image

from mma.emitters import Delivery
from mma.emitters.email import EmailEmitter
from mma.emitters.picture import (
    ALLSKY_AREA_DEG2,
    MIN_RADIUS_DEG,
    render_region_png,
    zoom_radius_deg,
)
from mma.skymaps.decode import read_multiorder
from mma.skymaps.region import MAX_ORDER, Region, build_region
from mma.skymaps.shapes import circle_map

matplotlib.use("Agg")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXAMPLE_PNG = Path("/tmp/mma-example-region.png")
EXAMPLE = Path(__file__).resolve().parents[1] / "mma" / "schema" / "coincidence.example.json"


def map_maximum(region: Region) -> tuple[float, float]:
    """RA, Dec [deg] of the centre of the most probable tile."""
    i = region.density_order[0]
    theta, phi = hp.pix2ang(1 << MAX_ORDER, (region.lo[i] + region.hi[i]) // 2, nest=True)
    return float(np.rad2deg(phi)), float(90.0 - np.rad2deg(theta))


@pytest.fixture(scope="module")
def gw_region(corpus: Path) -> Region:
    data = (corpus / "skymaps/gw/MS181101ab_bayestar.multiorder.fits").read_bytes()
    return build_region(read_multiorder(data))


def decode(png: bytes) -> Image.Image:
    assert png.startswith(PNG_MAGIC)
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def test_zoom_picture_of_a_gw_map(gw_region: Region) -> None:
    ra, dec = map_maximum(gw_region)
    png = render_region_png(gw_region, ra_deg=ra, dec_deg=dec, title="MS181101ab test",
                            label="ZTF26aaaaaxl")
    image = decode(png)
    assert image.size == (600, 640)  # the zoom layout
    assert len(png) > 20_000
    EXAMPLE_PNG.write_bytes(png)


def test_small_and_huge_regions_zoom_and_allsky() -> None:
    small = build_region(circle_map(120.0, -30.0, 1.0))
    huge = build_region(circle_map(200.0, 10.0, 70.0))
    assert small.area_deg2(0.9) < 10 < ALLSKY_AREA_DEG2 < huge.area_deg2(0.9)
    png_small = render_region_png(small, ra_deg=120.0, dec_deg=-30.0, title="small")
    png_huge = render_region_png(huge, ra_deg=200.0, dec_deg=10.0, title="huge")
    im_small, im_huge = decode(png_small), decode(png_huge)
    assert im_small.size == (600, 640)
    assert im_huge.size == (800, 500)  # the all-sky Mollweide layout
    assert png_small != png_huge


def test_zoom_radius_covers_the_90_percent_region() -> None:
    small = build_region(circle_map(120.0, -30.0, 1.0))
    radius = zoom_radius_deg(small, 120.0, -30.0)
    assert 1.0 <= radius < 1.3
    tiny = build_region(circle_map(10.0, 5.0, 0.01))
    assert zoom_radius_deg(tiny, 10.0, 5.0) < MIN_RADIUS_DEG  # clamped when drawn
    assert decode(render_region_png(tiny, ra_deg=10.0, dec_deg=5.0, title="tiny"))


def test_contour_encloses_the_marked_maximum(gw_region: Region) -> None:
    """The centre of a zoom centred on the maximum is dark (inside the high-density area)."""
    ra, dec = map_maximum(gw_region)
    image = np.asarray(decode(render_region_png(gw_region, ra_deg=ra, dec_deg=dec,
                                                title="")).convert("RGB"), dtype=float)
    h, w, _ = image.shape
    # A point a few pixels off the reticle, near the centre of the axes, versus a corner
    # of the axes (outside the 90 % region: the pale end of the colour map).
    axes_cy, axes_cx = int(h * 0.5), int(w * 0.5)
    inside = image[axes_cy + 20, axes_cx + 3]
    outside = image[int(h * 0.15), int(w * 0.2)]
    assert inside.sum() < outside.sum() - 150


def test_no_figure_leak(gw_region: Region) -> None:
    import matplotlib.pyplot as plt

    ra, dec = map_maximum(gw_region)
    before = plt.get_fignums()
    for _ in range(5):
        render_region_png(gw_region, ra_deg=ra, dec_deg=dec, title="leak")
    assert plt.get_fignums() == before


def test_object_label_next_to_the_reticle(gw_region: Region) -> None:
    """The label (object id) is drawn up and to the right of the marked position."""
    ra, dec = map_maximum(gw_region)
    plain = np.asarray(decode(render_region_png(gw_region, ra_deg=ra, dec_deg=dec,
                                                title="x")).convert("RGB"))
    labelled = np.asarray(decode(render_region_png(gw_region, ra_deg=ra, dec_deg=dec,
                                                   title="x", label="ZTF26aaaaaxl"))
                          .convert("RGB"))
    rows, cols = np.nonzero(np.any(plain != labelled, axis=2))
    assert rows.size > 50
    h, w, _ = plain.shape
    assert cols.min() > w * 0.5 - 5 and rows.max() < h * 0.5 + 5  # up right of the centre


def test_email_picture_marks_the_object(gw_region: Region) -> None:
    """The email channel draws the record's object position with the object id."""
    payload = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    payload["ra"], payload["dec"] = map_maximum(gw_region)
    delivery = Delivery(outbox_id=1, channel="email", coincidence_id=payload["coincidence_id"],
                        revision=1, kind="new", payload=payload, event={}, region=gw_region)
    emitter = EmailEmitter(host="localhost", port=25, security="none", username=None,
                           password=None, sender="mma@example.org",
                           recipients=["a@example.org"])
    png = emitter._picture(delivery)
    expected = render_region_png(gw_region, ra_deg=payload["ra"], dec_deg=payload["dec"],
                                 title="ZTF26aaaaaxl (ZTF) in S261120ab (region v2)",
                                 label="ZTF26aaaaaxl")
    assert png is not None
    assert np.array_equal(np.asarray(decode(png)), np.asarray(decode(expected)))
    assert emitter._picture(replace(delivery, kind="retraction")) is None
