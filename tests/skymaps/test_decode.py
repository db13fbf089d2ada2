"""mma.skymaps.decode: corpus maps decode to normalised multi-order tables; bad bytes
raise BadSkymap or HostileMessage and nothing else."""

from __future__ import annotations

import gzip
import io
import tracemalloc
import zlib
from pathlib import Path

import healpy as hp
import numpy as np
import pytest
from astropy.table import Table
from ligo.skymap import moc

from mma.errors import BadSkymap, HostileMessage
from mma.skymaps.decode import read_multiorder
from mma.skymaps.region import build_region
from tests.skymaps.hostile_maps import table_header

CORPUS = Path("/work/shared/corpus/skymaps")
SMALL = CORPUS / "gw" / "G1028259_cwb_rrt_small_area.multiorder.fits"
MULTIORDER = [
    "gw/G1028259_cwb_rrt_small_area.multiorder.fits",
    "gw/GW190814_PublicationSamples.multiorder.fits",
    "gw/M403699_bayestar.multiorder.fits",
    "gw/MS181101ab_bayestar.multiorder.fits",
    "gw/MS220722v_M252714_bayestar.multiorder.fits",
    "grb/swift_bat_guano_742338069.multiorder.fits",
]



def total_probability(table: Table) -> float:
    return float(np.sum(table["PROBDENSITY"] * moc.uniq2pixarea(table["UNIQ"])))


def fits_bytes(uniq, probdensity, **extra) -> bytes:
    """A minimal NUNIQ FITS table as LVK writes it (PROBDENSITY in sr^-1)."""
    table = Table({"UNIQ": np.asarray(uniq, dtype=np.int64),
                   "PROBDENSITY": np.asarray(probdensity, dtype=np.float64), **extra})
    table["PROBDENSITY"].unit = "sr-1"
    table.meta.update(ORDERING="NUNIQ", INDXSCHM="EXPLICIT", OBJECT="TEST")
    buf = io.BytesIO()
    table.write(buf, format="fits")
    return buf.getvalue()


def uniform_order1() -> tuple[np.ndarray, np.ndarray]:
    uniq = moc.nest2uniq(np.int8(1), np.arange(48))
    return uniq, np.full(48, 1 / (4 * np.pi))


@pytest.mark.parametrize("name", MULTIORDER)
def test_multiorder_corpus_maps_decode_normalised(name):
    raw = (CORPUS / name).read_bytes()
    table = read_multiorder(raw)
    assert table["UNIQ"].dtype == np.int64
    assert table["PROBDENSITY"].dtype == np.float64
    assert str(table["PROBDENSITY"].unit) == "1 / sr"
    assert abs(total_probability(table) - 1) < 1e-12
    # Multi-order stays multi-order: same tiles as in the file, nothing flattened.
    as_file = Table.read(io.BytesIO(raw), format="fits")
    np.testing.assert_array_equal(np.sort(table["UNIQ"]), np.sort(np.asarray(as_file["UNIQ"])))


def test_metadata_and_distance_layers_are_kept():
    table = read_multiorder((CORPUS / "gw" / "MS181101ab_bayestar.multiorder.fits").read_bytes())
    assert table.meta["objid"] == "MS181101ab"
    assert table.meta["distmean"] == pytest.approx(39.77, abs=0.01)
    assert {"DISTMU", "DISTSIGMA", "DISTNORM"} <= set(table.colnames)
    assert str(table["DISTMU"].unit) == "Mpc"


def test_single_precision_map_is_rescaled_and_raw_total_recorded():
    table = read_multiorder((CORPUS / "grb" / "swift_bat_guano_742338069.multiorder.fits")
                            .read_bytes())
    assert table.meta["total_probability_raw"] == pytest.approx(0.99905, abs=1e-5)
    assert abs(total_probability(table) - 1) < 1e-12


def test_gzip_and_plain_decode_identically():
    raw = (CORPUS / "gw" / "MS181101ab_bayestar.multiorder.fits").read_bytes()
    plain, packed = read_multiorder(raw), read_multiorder(gzip.compress(raw))
    for name in plain.colnames:
        np.testing.assert_array_equal(plain[name], packed[name])


@pytest.mark.parametrize(("name", "nest"), [
    ("grb/fermi_gbm_gwcelery_nside8.fits.gz", False),
    ("gw/GW190425_bayestar_G330561.fits.gz", True),
])
def test_flat_maps_convert_without_loss(name, nest):
    """A flat RING or NESTED map becomes multi-order with the same density everywhere."""
    path = CORPUS / name
    flat = hp.read_map(path, field=0, nest=nest, dtype=np.float64)
    nside = hp.npix2nside(len(flat))
    region = build_region(read_multiorder(path.read_bytes()))
    rng = np.random.default_rng(7)
    ra, dec = rng.uniform(0, 360, 3000), np.degrees(np.arcsin(rng.uniform(-1, 1, 3000)))
    expected = flat[hp.ang2pix(nside, ra, dec, nest=nest, lonlat=True)] * len(flat) / (4 * np.pi)
    expected /= flat.sum()
    np.testing.assert_allclose(region.probdensity[region.locate(ra, dec)], expected, rtol=1e-9)


def test_flat_nside1024_map_needs_a_larger_cap():
    raw = (CORPUS / "gw" / "GW170817_skymap.fits.gz").read_bytes()  # inflates to 403 MB
    with pytest.raises(HostileMessage):
        read_multiorder(raw)


@pytest.mark.parametrize("data", [
    b"", b"SIMPLE", b"\x1f\x8b", b"hello world" * 100,
    np.random.default_rng(1).bytes(5000), b"SIMPLE  =" + bytes(2871),
])
def test_garbage_is_bad_skymap(data):
    with pytest.raises(BadSkymap):
        read_multiorder(data)


@pytest.mark.parametrize("fraction", [0.001, 0.2, 0.5, 0.9, 0.99])
def test_truncated_fits_is_bad_skymap(fraction):
    raw = (CORPUS / "gw" / "MS181101ab_bayestar.multiorder.fits").read_bytes()
    with pytest.raises(BadSkymap):
        read_multiorder(raw[: int(len(raw) * fraction)])


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.95])
def test_truncated_gzip_is_bad_skymap(fraction):
    packed = gzip.compress((CORPUS / "gw" / "MS181101ab_bayestar.multiorder.fits").read_bytes())
    with pytest.raises(BadSkymap, match="gzip"):
        read_multiorder(packed[: int(len(packed) * fraction)])


def test_corrupt_gzip_is_bad_skymap():
    packed = bytearray(gzip.compress(SMALL.read_bytes()))
    packed[40:60] = bytes(20)
    with pytest.raises(BadSkymap):
        read_multiorder(bytes(packed))


@pytest.mark.parametrize(("bad", "match"), [
    (np.nan, "NaN"), (np.inf, "NaN or infinite"), (-1e-3, "negative"),
])
def test_non_finite_or_negative_density_is_refused(bad, match):
    uniq, density = uniform_order1()
    density[5] = bad
    with pytest.raises(BadSkymap, match=match):
        read_multiorder(fits_bytes(uniq, density))


def test_empty_table_is_refused():
    with pytest.raises(BadSkymap):
        read_multiorder(fits_bytes([], []))


@pytest.mark.parametrize("scale", [0.5, 0.98, 1.02, 3.0])
def test_total_probability_off_by_more_than_one_percent_is_refused(scale):
    uniq, density = uniform_order1()
    with pytest.raises(BadSkymap, match="total probability"):
        read_multiorder(fits_bytes(uniq, density * scale))


def test_total_within_one_percent_is_rescaled():
    uniq, density = uniform_order1()
    table = read_multiorder(fits_bytes(uniq, density * 1.005))
    assert table.meta["total_probability_raw"] == pytest.approx(1.005)
    assert abs(total_probability(table) - 1) < 1e-12


def test_order_beyond_29_is_refused():
    uniq, density = uniform_order1()
    uniq = uniq.copy()
    uniq[0] = 4 ** 31  # first index of order 30
    with pytest.raises(BadSkymap, match="orders 0 to 29"):
        read_multiorder(fits_bytes(uniq, density))


def test_overlapping_tiles_are_refused():
    uniq, density = uniform_order1()
    child = moc.nest2uniq(np.int8(2), np.array([0]))  # inside order-1 pixel 0
    with pytest.raises(BadSkymap, match="overlap"):
        read_multiorder(fits_bytes(np.append(uniq, child), np.append(density, density[0])))


def test_missing_probdensity_column_is_refused():
    table = Table({"UNIQ": uniform_order1()[0], "FOO": uniform_order1()[1]})
    buf = io.BytesIO()
    table.write(buf, format="fits")
    with pytest.raises(BadSkymap, match="PROBDENSITY"):
        read_multiorder(buf.getvalue())


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """200 MB of zeros, gzipped to ~200 kB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(2**20)
    return b"".join([packer.compress(block) for _ in range(200)] + [packer.flush()])


def test_gzip_bomb_is_refused_before_full_inflation(gzip_bomb):
    """A FITS header declaring 200 MB of table, then the bomb: refused from the header."""
    head = table_header(12 * 1024**2, [("PROB", "D", 8), ("PAD", "9B", 9)],
                        ORDERING="NESTED", NSIDE=1024)
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = packer.compress(head) + packer.flush() + gzip_bomb
    assert len(bomb) < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(HostileMessage, match="above the cap of 1048576"):
            read_multiorder(bomb, max_bytes=2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # full inflation would hold 200 MB


def test_gzip_bomb_of_zeros_is_refused_at_its_first_block(gzip_bomb):
    """Zeros are not FITS: refused after one inflated block, whatever the cap."""
    tracemalloc.start()
    try:
        with pytest.raises(BadSkymap, match="not a FITS file"):
            read_multiorder(gzip_bomb, max_bytes=2**30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


def test_oversized_plain_input_is_refused():
    with pytest.raises(HostileMessage):
        read_multiorder(SMALL.read_bytes(), max_bytes=1000)


def test_byte_mutations_give_bad_skymap_or_a_valid_map():
    """Fuzz: flipped bytes anywhere never escape as another exception type."""
    raw = SMALL.read_bytes()
    rng = np.random.default_rng(11)
    outcomes = {"ok": 0, "bad": 0}
    for _ in range(80):
        mutated = bytearray(raw)
        for pos in rng.integers(0, len(raw), rng.integers(1, 6)):
            mutated[pos] = rng.integers(0, 256)
        try:
            table = read_multiorder(bytes(mutated))
        except BadSkymap:
            outcomes["bad"] += 1
        else:
            outcomes["ok"] += 1
            assert abs(total_probability(table) - 1) < 1e-9
            assert np.all(np.asarray(table["PROBDENSITY"]) >= 0)
    assert outcomes["bad"] > 0
