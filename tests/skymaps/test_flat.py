"""Flat maps and the tile cap: what ligo.skymap gives, in bounded memory, refused early.

The hostile maps are generated (tests/skymaps/hostile_maps.py): flat NESTED maps whose
sibling pixels never merge, and gzip files whose FITS header declares tables
beyond the caps. Memory is measured with tracemalloc (numpy reports its buffers
to it), peaks against the size of the inflated file.
"""

from __future__ import annotations

import gzip
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
import pytest
from ligo.skymap.io.fits import read_sky_map

from mma.errors import BadSkymap, HostileMessage, InvalidValue
from mma.models import RegionSpec
from mma.skymaps.decode import INFLATE_STEP, _Inflater, read_multiorder
from mma.skymaps.flat import BLOCK_LEVELS
from mma.skymaps.limits import DEFAULT_MAX_TILES, MIN_ERROR_DEG
from mma.skymaps.region import build_region
from mma.skymaps.shapes import circle_map
from mma.skymaps.spec import region_table
from tests.conftest import CORPUS
from tests.skymaps.hostile_maps import declared_table, flat_map, zeros_bomb

MAPS = CORPUS / "skymaps"


def peak_of(call: Callable[[], Any]) -> tuple[Any, int]:
    """(result or raised exception, tracemalloc peak [bytes]) of *call*."""
    tracemalloc.start()
    try:
        try:
            result: Any = call()
        except Exception as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def assert_same_as_ligo(table: Any, path: str | Path, rtol: float = 0.0) -> None:
    """*table* has ligo.skymap's tiles, densities and distance layers for the file."""
    expected = read_sky_map(str(path), moc=True)
    np.testing.assert_array_equal(np.asarray(table["UNIQ"]), np.asarray(expected["UNIQ"]))
    density = np.asarray(expected["PROBDENSITY"], dtype=np.float64)
    density /= table.meta["total_probability_raw"]
    np.testing.assert_allclose(np.asarray(table["PROBDENSITY"]), density, rtol=rtol, atol=0)
    for name in ("DISTMU", "DISTSIGMA", "DISTNORM"):
        assert (name in table.colnames) == (name in expected.colnames)
        if name in table.colnames:
            np.testing.assert_array_equal(np.asarray(table[name]), np.asarray(expected[name]))
            assert table[name].unit == expected[name].unit


@pytest.mark.parametrize("name", ["grb/fermi_gbm_gwcelery_nside8.fits.gz",  # RING
                                  "gw/GW190425_bayestar_G330561.fits.gz"])  # NESTED, 3-D
def test_corpus_flat_maps_give_ligo_skymaps_tiles(name: str) -> None:
    table = read_multiorder((MAPS / name).read_bytes())
    assert_same_as_ligo(table, MAPS / name, rtol=1e-15)
    assert table.meta["objid"] == read_sky_map(str(MAPS / name), moc=True).meta["objid"]


def test_ring_map_with_vector_rows_gives_ligo_skymaps_tiles(tmp_path: Path) -> None:
    """healpy writes 1024 pixels per row ('1024D') in RING order: read across rows."""
    nside = 64
    rng = np.random.default_rng(3)
    values = rng.integers(1, 4, hp.nside2npix(nside)).astype(np.float64)
    values[: hp.nside2npix(nside) // 2] = 1.0  # half the sky merges, half does not
    prob = values / values.sum()
    path = tmp_path / "ring.fits"
    hp.write_map(str(path), prob, column_names=["PROB"], dtype=np.float64)
    table = read_multiorder(path.read_bytes())
    assert_same_as_ligo(table, path, rtol=1e-15)
    assert 12 < len(table) < hp.nside2npix(nside)


@pytest.mark.parametrize(("nside", "mergeable", "tiles"), [
    (1, False, 12), (2, False, 48), (64, False, 12 * 64**2), (64, True, 12),
    (2**(BLOCK_LEVELS + 1), True, 12),  # whole blocks merge across blocks, up to order 0
])
def test_generated_flat_maps_have_the_expected_tiles(nside: int, mergeable: bool,
                                                     tiles: int) -> None:
    data = flat_map(nside, mergeable=mergeable)
    table = read_multiorder(data, max_bytes=2**27)
    assert len(table) == tiles
    if nside <= 64:
        path = Path(f"/dev/shm/mma-flat-{nside}-{mergeable}.fits.gz")
        try:
            path.write_bytes(data)
            assert_same_as_ligo(table, path, rtol=1e-15)
        finally:
            path.unlink(missing_ok=True)


def test_flat_map_beyond_max_tiles_is_refused_after_a_few_blocks() -> None:
    data = flat_map(256)  # 786,432 tiles, 6 MB inflated
    start = time.monotonic()
    error, peak = peak_of(lambda: read_multiorder(data, max_tiles=100_000))
    assert isinstance(error, HostileMessage) and "tiles" in str(error)
    assert "more than 100000 tiles" in str(error)
    assert time.monotonic() - start < 2.0
    # The inflated file (6.3 MB) once, one block and the tiles kept: nothing per pixel.
    assert peak < 6.3e6 + 40e6, peak / 1e6
    assert len(read_multiorder(data)) == 12 * 256**2  # under the default cap: accepted


def test_multiorder_map_with_more_rows_than_max_tiles_is_refused_from_its_header() -> None:
    data = declared_table(0, nuniq_rows=DEFAULT_MAX_TILES + 1)  # 16 MB of table declared
    error, peak = peak_of(lambda: read_multiorder(data, max_bytes=2**30))
    assert isinstance(error, HostileMessage)
    assert f"{DEFAULT_MAX_TILES + 1} tiles, above the cap" in str(error)
    assert peak < 2**20  # the header only was inflated


def test_table_declared_beyond_the_inflated_cap_is_refused_from_its_header() -> None:
    data = declared_table(0, nuniq_rows=3 * 2**20)  # declares 48 MiB
    error, peak = peak_of(lambda: read_multiorder(data, max_bytes=32 * 2**20))
    assert isinstance(error, HostileMessage) and "above the cap of 33554432" in str(error)
    assert peak < 2**20


def test_gzip_output_is_held_once() -> None:
    """A FITS file declaring 24 MiB of zeros, under a 32 MiB cap, is inflated once.

    Measured: 30 MiB peak (the buffer, its growth margin and one block); the former
    decoder held the output twice (bytearray, then bytes of it) and then astropy
    copied the table: 101 MiB, 4.2 times the inflated size.
    """
    data = declared_table(24 * 2**20)
    inflated = len(gzip.decompress(data))
    error, peak = peak_of(lambda: read_multiorder(data, max_bytes=32 * 2**20))
    assert isinstance(error, BadSkymap) and "total probability 0" in str(error)
    assert peak < 1.5 * inflated, (peak / inflated)


@pytest.mark.parametrize("size", [7 * 2**20, 9 * 2**20])
def test_inflater_holds_its_output_once_and_never_beyond_the_cap(size: int) -> None:
    """Zeros just under and just above an 8 MiB cap, asked for in full.

    The buffer is sized to what is asked and filled in place: the peak is the output
    plus about two steps (measured 9.0 MiB under the cap; above it, refused before
    inflating). The former decoder asked zlib for the whole rest at once and
    copied the result: 15.0 and 10.0 MiB.
    """
    inflate = _Inflater(zeros_bomb(size), 8 * 2**20)
    result, peak = peak_of(lambda: inflate(size))
    if size <= 8 * 2**20:
        assert isinstance(result, np.ndarray) and len(result) == size
        assert not result.any()
        # zlib assembles each step's output from blocks: two steps in flight at most.
        assert peak < size + 3 * INFLATE_STEP, peak / 2**20
    else:
        assert isinstance(result, HostileMessage) and "inflates beyond 8388608" in str(result)
        assert peak < 2**20


def test_truncated_flat_map_is_bad_skymap() -> None:
    data = flat_map(32, packed=False)
    with pytest.raises(BadSkymap, match="truncated"):
        read_multiorder(data[: len(data) // 2])


def test_flat_map_with_wrong_nside_card_is_bad_skymap() -> None:
    data = flat_map(16, packed=False).replace(b"NSIDE   =                   16",
                                              b"NSIDE   =                   32")
    with pytest.raises(BadSkymap, match="NSIDE '32' in the header"):
        read_multiorder(data)


def test_build_region_and_region_table_enforce_max_tiles() -> None:
    table = circle_map(10.0, 20.0, 1.0)
    with pytest.raises(HostileMessage, match=f"{len(table)} tiles, above the cap of 1000"):
        build_region(table, max_tiles=1000)
    spec = RegionSpec(kind="circle", ra_deg=10.0, dec_deg=20.0, radius_deg=1.0)
    with pytest.raises(HostileMessage, match=r"circle region has \d+ tiles, above the cap"):
        region_table(spec, max_tiles=1000)
    skymap = RegionSpec(kind="skymap", skymap=flat_map(64))
    with pytest.raises(HostileMessage, match="more than 1000 tiles"):
        region_table(skymap, max_tiles=1000)
    assert build_region(table).n_tiles == len(table)


@pytest.mark.parametrize(("field", "kwargs"), [
    ("radius_deg", {"kind": "circle", "radius_deg": 1e-9}),
    ("semi_minor_deg", {"kind": "ellipse", "semi_major_deg": 1.0, "semi_minor_deg": 1e-9,
                        "position_angle_deg": 0.0}),
    ("dec_plus_deg", {"kind": "box", "ra_plus_deg": 1.0, "ra_minus_deg": 1.0,
                      "dec_plus_deg": 1e-9, "dec_minus_deg": 1.0}),
])
def test_region_table_refuses_errors_below_the_minimum(field: str, kwargs: Any) -> None:
    """1e-9 deg once raised ValueError ("Fisher density integrates to 0.0")."""
    spec = RegionSpec(ra_deg=10.0, dec_deg=20.0, **kwargs)
    with pytest.raises(InvalidValue, match=f"region {field} 1e-09 deg is outside the "
                                           f"accepted range \\[{MIN_ERROR_DEG:g} deg"):
        region_table(spec)


def test_smallest_accepted_circle_builds() -> None:
    spec = RegionSpec(kind="circle", ra_deg=10.0, dec_deg=20.0, radius_deg=MIN_ERROR_DEG)
    region = build_region(region_table(spec))
    assert region.area_deg2(0.9) == pytest.approx(np.pi * MIN_ERROR_DEG**2, rel=1e-3)


@pytest.mark.slow
def test_gw170817_flat_map_costs_its_inflated_size_once(tmp_path: Path) -> None:
    """Peak RSS of a fresh process decoding GW170817 (flat NSIDE 1024, 3-D, 403 MB inflated).

    ligo.skymap's read_sky_map(moc=True) and the former decoder took +1.5 GB and 9.6 s.
    """
    from tests.memory import measure

    script = ("import sys; from mma.skymaps.decode import read_multiorder; "
              "data = open(sys.argv[1], 'rb').read(); import gc; gc.collect(); "
              "t = read_multiorder(data, max_bytes=2**30) if sys.argv[2] == '1' else None")
    path = str(MAPS / "gw/GW170817_skymap.fits.gz")
    import sys
    base = measure([sys.executable, "-c", script, path, "0"])
    run = measure([sys.executable, "-c", script, path, "1"])
    assert run.returncode == 0 and base.returncode == 0, run.stderr[-2000:]
    assert run.peak_bytes - base.peak_bytes < 1.25 * 402_664_320, (
        (run.peak_bytes - base.peak_bytes) / 1e6)


def test_header_mutations_of_a_flat_map_give_bad_skymap_or_a_valid_map() -> None:
    """Fuzz the headers the bounded reader parses itself: digits, signs, letters and
    random bytes in the cards; nothing but a BadMessage or a valid table comes out."""
    raw = flat_map(16, packed=False)
    rng = np.random.default_rng(17)
    alphabet = [*b"0123456789 =-+.'ETDKJXPQ", 0, 27, 255]
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(300):
        mutated = bytearray(raw)
        for pos in rng.integers(0, 2 * 2880, rng.integers(1, 5)):
            mutated[pos] = int(rng.choice(alphabet))
        try:
            table = read_multiorder(bytes(mutated))
        except (BadSkymap, HostileMessage):
            outcomes["refused"] += 1
        else:
            outcomes["ok"] += 1
            assert np.all(np.asarray(table["PROBDENSITY"]) >= 0)
    assert outcomes["refused"] > 30 and outcomes["ok"] > 30, outcomes
