"""Generate the bundled sample data of ``mma demo`` into mma/data/sample/.

Synthetic, not copied from any real stream: two LVK-like events with
multi-order BAYESTAR-style skymaps (built with ligo.skymap's adaptive grid from
an analytic density, with distance layers), and one night-and-a-bit of
ZTF-like Avro alert packets:

* S261120ab: PRELIMINARY (two lobes), then an UPDATE 6 h later in which the
  smaller lobe is gone, so candidates there leave the region and the others
  are re-scored.
* S261121cd: PRELIMINARY then RETRACTION 2 h later, so its candidates are
  withdrawn.
* ZTF-like alerts: a uniform background over the northern sky, a few sources
  inside each region after the merger, one that was already active before it
  (prior_activity), and some that fail vetting (low real-bogus score, a known
  asteroid, a point source on a PS1 star).
* Cutouts: the sources placed in the regions, and the background alerts within
  :data:`STAMPS_RADIUS_DEG` of a lobe (those that may become candidates), carry ZTF-like
  stamps, gzipped FITS of 63 x 63 pixels: a template of sky and a few stars, the
  science image with the transient (a Gaussian as bright as its magnitude) added,
  and their difference. Drawn from random generators of their own, seeded by the
  candidate id, so the alerts themselves stay as they were without stamps.

Run ``.venv/bin/python scripts/make_samples.py`` to regenerate; the output is
deterministic apart from the FITS DATE card.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import numpy as np
from astropy.io import fits
from astropy.table import Table
from ligo.skymap.distance import moments_to_parameters
from ligo.skymap.io.fits import write_sky_map
from ligo.skymap.moc import bayestar_adaptive_grid

OUT = Path(__file__).resolve().parents[1] / "mma" / "data" / "sample"
RNG = np.random.default_rng(20261120)
JD_UNIX = 2440587.5


def _unit(ra_deg: float, dec_deg: float) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.array([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _fisher(radec_rad: np.ndarray, centre: np.ndarray, sigma_deg: float) -> np.ndarray:
    """Fisher density [sr^-1] with kappa = 1/sigma^2 (sigma in radians)."""
    ra, dec = radec_rad[:, 0], radec_rad[:, 1]
    xyz = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    kappa = 1.0 / np.radians(sigma_deg) ** 2
    return kappa / (2 * np.pi * -np.expm1(-2 * kappa)) * np.exp(kappa * (xyz @ centre - 1))


def skymap_fits(lobes: list[tuple[float, float, float, float]], distmean_mpc: float,
                diststd_mpc: float, objid: str) -> bytes:
    """Multi-order FITS bytes for a mixture of Fisher lobes (ra, dec, sigma_deg, weight)."""

    def density(radec: np.ndarray) -> np.ndarray:
        return sum(w * _fisher(radec, _unit(ra, dec), s) for ra, dec, s, w in lobes)

    table = bayestar_adaptive_grid(density, top_nside=16, rounds=7)
    order = np.log2(np.sqrt(table["UNIQ"] // 4)).astype(int)
    area = 4 * np.pi / (12 * 4.0**order)
    table["PROBDENSITY"] /= np.sum(table["PROBDENSITY"] * area)  # exactly normalised
    mu, sigma, norm = moments_to_parameters(
        np.full(len(table), distmean_mpc), np.full(len(table), diststd_mpc))
    table["DISTMU"], table["DISTSIGMA"], table["DISTNORM"] = mu, sigma, norm
    table.meta.update(objid=objid, distmean=distmean_mpc, diststd=diststd_mpc,
                      instruments={"H1", "L1", "V1"}, creator="mma make_samples")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "map.multiorder.fits"
        write_sky_map(str(path), Table(table), moc=True)
        return path.read_bytes()


def gw_notice(superevent: str, alert_type: str, t0: datetime, created: datetime,
              skymap: bytes | None, far_hz: float = 3.2e-10) -> dict:
    """An igwn.gwalert notice in the schema LVK publishes (synthetic values)."""
    event = None if skymap is None else {
        "significant": True, "time": t0.isoformat().replace("+00:00", "Z"), "far": far_hz,
        "instruments": ["H1", "L1", "V1"], "group": "CBC", "pipeline": "gstlal",
        "search": "AllSky",
        "properties": {"HasNS": 0.92, "HasRemnant": 0.41, "HasMassGap": 0.02},
        "classification": {"BNS": 0.81, "NSBH": 0.11, "BBH": 0.0, "Terrestrial": 0.08},
        "duration": None, "central_frequency": None,
        "skymap": base64.b64encode(skymap).decode("ascii"),
    }
    return {
        "alert_type": alert_type,
        "time_created": created.isoformat().replace("+00:00", "Z"),
        "superevent_id": superevent,
        "urls": {"gracedb": f"https://gracedb.ligo.org/superevents/{superevent}/view/"},
        "event": event, "external_coinc": None,
    }


ZTF_SCHEMA = {
    "type": "record", "name": "ztf.alert", "doc": "ZTF-like sample packet (subset)",
    "fields": [
        {"name": "schemavsn", "type": "string"},
        {"name": "publisher", "type": "string"},
        {"name": "objectId", "type": "string"},
        {"name": "candid", "type": "long"},
        {"name": "candidate", "type": {"type": "record", "name": "ztf.alert.candidate",
         "fields": [
             {"name": "jd", "type": "double"}, {"name": "fid", "type": "int"},
             {"name": "candid", "type": "long"},
             {"name": "ra", "type": "double"}, {"name": "dec", "type": "double"},
             {"name": "magpsf", "type": "float"}, {"name": "sigmapsf", "type": "float"},
             {"name": "isdiffpos", "type": "string"},
             {"name": "rb", "type": ["null", "float"]}, {"name": "drb", "type": ["null", "float"]},
             {"name": "ssdistnr", "type": ["null", "float"]},
             {"name": "ssmagnr", "type": ["null", "float"]},
             {"name": "sgscore1", "type": ["null", "float"]},
             {"name": "distpsnr1", "type": ["null", "float"]},
             {"name": "ndethist", "type": "int"},
             {"name": "jdstarthist", "type": ["null", "double"]},
             {"name": "programid", "type": "int"}]}},
        {"name": "prv_candidates", "type": ["null", {"type": "array", "items": "string"}],
         "default": None},
        {"name": "cutoutScience", "type": ["null", {
            "type": "record", "name": "ztf.alert.cutout",
            "fields": [{"name": "fileName", "type": "string"},
                       {"name": "stampData", "type": "bytes"}]}], "default": None},
        {"name": "cutoutTemplate", "type": ["null", "ztf.alert.cutout"], "default": None},
        {"name": "cutoutDifference", "type": ["null", "ztf.alert.cutout"], "default": None},
    ],
}
STAMP_SIDE = 63  # pixels, as ZTF's
STAMPS_RADIUS_DEG = 15.0  # background alerts this close to a lobe's centre get stamps
SKY_COUNTS, NOISE_COUNTS, SEEING_PX = 120.0, 4.0, 1.8  # sky level, its noise, PSF sigma


def _gaussian(amplitude: float, x0: float, y0: float) -> np.ndarray:
    y, x = np.mgrid[:STAMP_SIDE, :STAMP_SIDE]
    return amplitude * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * SEEING_PX**2))


def _fits_gz(image: np.ndarray) -> bytes:
    """Integer FITS (small once gzipped, unlike float noise), gzip without a timestamp."""
    buf = io.BytesIO()
    fits.PrimaryHDU(np.round(image).astype(np.int16)).writeto(buf)
    return gzip.compress(buf.getvalue(), mtime=0)


def cutouts(candid: int, obj: str, magpsf: float) -> dict[str, dict]:
    """ZTF-like ``cutout*`` fields: science, template (no transient) and difference stamps.

    The template's stars depend on the object only (the same field at every
    detection); the noise and the transient on the candidate.
    """
    field_rng = np.random.default_rng(sum(map(ord, obj)) * 7919)
    scene = np.full((STAMP_SIDE, STAMP_SIDE), SKY_COUNTS)
    for _ in range(int(field_rng.integers(2, 6))):
        scene += _gaussian(float(field_rng.uniform(50, 1500)),
                           *field_rng.uniform(3, STAMP_SIDE - 3, size=2))
    rng = np.random.default_rng(candid % 2**32)
    centre = (STAMP_SIDE - 1) / 2
    transient = _gaussian(1500.0 * 10 ** (-0.4 * (magpsf - 17.5)), centre, centre)
    template = scene + rng.normal(0, NOISE_COUNTS, scene.shape)
    science = scene + transient + rng.normal(0, NOISE_COUNTS, scene.shape)
    images = {"Science": science, "Template": template, "Difference": science - template}
    return {f"cutout{kind}": {"fileName": f"candid{candid}_pid1_targ_{kind[:4].lower()}.fits.gz",
                              "stampData": _fits_gz(image)}
            for kind, image in images.items()}


class AlertMaker:
    """ZTF-like packets with unique ids."""

    def __init__(self) -> None:
        self.packets: list[dict] = []
        self._serial = 0

    def add(self, ra: float, dec: float, when: datetime, *, first: datetime | None = None,
            rb: float = 0.9, drb: float = 0.99, ss: tuple[float, float] | None = None,
            star: bool = False, obj: str | None = None, stamps: bool = True) -> str:
        self._serial += 1
        jd = when.timestamp() / 86400.0 + JD_UNIX
        candid = 3100000000000000000 + self._serial
        obj = obj or f"ZTF26aa{_letters(self._serial)}"
        start = (first or when).timestamp() / 86400.0 + JD_UNIX
        packet = {
            "schemavsn": "4.02", "publisher": "mma sample", "objectId": obj, "candid": candid,
            "candidate": {
                "jd": jd, "fid": int(RNG.integers(1, 3)), "candid": candid,
                "ra": ra % 360.0, "dec": dec, "magpsf": float(RNG.uniform(17.5, 20.5)),
                "sigmapsf": float(RNG.uniform(0.03, 0.2)), "isdiffpos": "t", "rb": rb,
                "drb": drb, "ssdistnr": ss[0] if ss else -999.0,
                "ssmagnr": ss[1] if ss else -999.0,
                "sgscore1": 0.98 if star else 0.05, "distpsnr1": 0.4 if star else 9.0,
                "ndethist": 1, "jdstarthist": start, "programid": 1,
            },
            "prv_candidates": None,
        }
        if stamps:
            packet.update(cutouts(candid, obj, packet["candidate"]["magpsf"]))
        self.packets.append(packet)
        return obj


def _letters(n: int) -> str:
    out = ""
    for _ in range(5):
        n, r = divmod(n, 26)
        out = chr(97 + r) + out
    return out


def _near(ra: float, dec: float, centres: list[tuple[float, float]]) -> bool:
    """True if (ra, dec) [deg] is within STAMPS_RADIUS_DEG of one of *centres*."""
    return any(float(_unit(ra, dec) @ _unit(*c)) > np.cos(np.radians(STAMPS_RADIUS_DEG))
               for c in centres)


def _around(ra: float, dec: float, sigma_deg: float) -> tuple[float, float]:
    return (ra + RNG.normal(0, sigma_deg) / np.cos(np.radians(dec)),
            float(np.clip(dec + RNG.normal(0, sigma_deg), -89, 89)))


def main() -> None:
    """Write the sample files."""
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    t_a = datetime(2026, 11, 20, 3, 12, 45, 123000, tzinfo=UTC)
    t_b = datetime(2026, 11, 21, 6, 40, 2, 500000, tzinfo=UTC)
    lobes_a = [(150.0, 25.0, 3.0, 0.65), (165.0, 14.0, 4.0, 0.35)]
    notices = {
        "S261120ab-preliminary.json": gw_notice(
            "S261120ab", "PRELIMINARY", t_a, t_a + timedelta(seconds=31),
            skymap_fits(lobes_a, 140.0, 35.0, "S261120ab-1")),
        "S261120ab-update.json": gw_notice(
            "S261120ab", "UPDATE", t_a, t_a + timedelta(hours=6),
            skymap_fits(lobes_a[:1], 150.0, 30.0, "S261120ab-2")),
        "S261121cd-preliminary.json": gw_notice(
            "S261121cd", "PRELIMINARY", t_b, t_b + timedelta(seconds=40),
            skymap_fits([(230.0, 40.0, 6.0, 1.0)], 400.0, 120.0, "S261121cd-1"), far_hz=2e-8),
        "S261121cd-retraction.json": gw_notice(
            "S261121cd", "RETRACTION", t_b, t_b + timedelta(hours=2), None),
    }
    for name, notice in notices.items():
        (OUT / name).write_text(json.dumps(notice, indent=1) + "\n")

    maker = AlertMaker()
    night = datetime(2026, 11, 19, 3, 0, tzinfo=UTC)
    # Background: ~600 unrelated transients over four nights, northern sky.
    for _ in range(600):
        when = night + timedelta(days=int(RNG.integers(0, 4)), hours=float(RNG.uniform(0, 10)))
        ra = float(RNG.uniform(0, 360))
        dec = float(np.degrees(np.arcsin(RNG.uniform(np.sin(np.radians(-30)), 1))))
        maker.add(ra, dec, when, rb=float(RNG.uniform(0.2, 1.0)),
                  stamps=_near(ra, dec, [(150.0, 25.0), (165.0, 14.0), (230.0, 40.0)]))
    # Counterpart-like sources near the maxima of S261120ab, after the merger.
    for k, (ra, dec, sig) in enumerate([(150.0, 25.0, 1.0), (150.0, 25.0, 2.5),
                                        (165.0, 14.0, 2.0), (151.0, 26.0, 1.5)]):
        pos = _around(ra, dec, sig)
        obj = maker.add(*pos, t_a + timedelta(hours=5 + 3 * k))
        maker.add(*pos, t_a + timedelta(hours=29 + 3 * k), obj=obj)
    # Active before the merger: flagged prior_activity, still scored.
    maker.add(*_around(149.0, 24.0, 1.0), t_a + timedelta(hours=20),
              first=t_a - timedelta(days=40))
    # Fail vetting inside the region: bogus, asteroid, star.
    maker.add(*_around(150.0, 25.0, 1.5), t_a + timedelta(hours=7), rb=0.2, drb=0.1)
    maker.add(*_around(150.0, 25.0, 1.5), t_a + timedelta(hours=8), ss=(2.1, 18.3))
    maker.add(*_around(150.0, 25.0, 1.5), t_a + timedelta(hours=9), star=True)
    # Inside S261121cd, which is later retracted.
    for hours in (3, 6):
        maker.add(*_around(230.0, 40.0, 3.0), t_b + timedelta(hours=hours))
    maker.packets.sort(key=lambda p: p["candidate"]["jd"])
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(ZTF_SCHEMA), maker.packets, codec="deflate",
                    sync_marker=b"mma sample sync!")  # fixed: the same bytes every run
    (OUT / "ztf-sample-alerts.avro").write_bytes(buf.getvalue())
    print(f"wrote {len(notices)} notices and {len(maker.packets)} alerts to {OUT}")


if __name__ == "__main__":
    main()
