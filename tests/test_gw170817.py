"""GW170817 and AT2017gfo: the real triple of the corpus (MANIFEST scenario 1).

The LVC Initial VOEvent gives its map only by URL; the GWTC-1 map of the corpus
is served in its place. An alert at AT2017gfo's position half a day after the
merger must match with the credible level crossmatch gives (0.38) and a
distance factor from the host NGC 4993 (40 Mpc) when the alert carries it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import healpy
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from ligo.skymap import moc
from ligo.skymap.io import read_sky_map
from ligo.skymap.postprocess import crossmatch
from sqlalchemy import Engine, select

from mma.config import Config
from mma.db.schema import coincidences
from mma.handlers import lvk_voevent
from mma.ingest import Pipeline
from mma.models import Alert

pytestmark = pytest.mark.slow  # GW170817's map and a night of decoys (~30 s)

RA, DEC = 197.450374, -23.381495  # AT2017gfo, ICRS deg
NGC4993_MPC = 40.0


@pytest.fixture(scope="module")
def skymap_bytes(corpus: Path) -> bytes:
    return (corpus / "skymaps/gw/GW170817_skymap.fits.gz").read_bytes()


@pytest.fixture(scope="module")
def expected(corpus: Path) -> float:
    """Credible level of AT2017gfo by ligo.skymap's crossmatch (2-D part), the oracle."""
    sky = read_sky_map(str(corpus / "skymaps/gw/GW170817_skymap.fits.gz"), moc=True)
    return float(crossmatch(sky[["UNIQ", "PROBDENSITY"]],
                            SkyCoord(RA, DEC, unit="deg")).searched_prob)


def test_at2017gfo_matches_gw170817(engine: Engine, config: Config, corpus: Path,
                                    skymap_bytes: bytes, expected: float) -> None:
    raw = (corpus / "voevent/gw/G298048-1-Initial_GW170817.xml").read_bytes()
    notice = lvk_voevent.parse(raw, topic="gcn.classic.voevent.LVC_INITIAL")
    assert notice.region is not None and notice.region.skymap_url
    asked: list[str] = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return skymap_bytes

    p = Pipeline(engine, config, fetch=fetch)
    assert p.process(lvk_voevent, raw, origin="LVC_INITIAL").kind == "notice"
    assert asked == [notice.region.skymap_url]
    t0 = notice.event_time
    kilonova = Alert(alert_id="AT2017gfo-1", object_id="AT2017gfo", survey="ZTF",
                     ra_deg=RA, dec_deg=DEC, time=t0 + timedelta(days=0.5),
                     quality={"rb": 0.95, "drb": 0.99, "isdiffpos": True},
                     distance_mpc=NGC4993_MPC)
    assert p.process(lvk_voevent, b"alert", origin="alert", item=kilonova).touched
    with engine.connect() as conn:
        (row,) = conn.execute(select(coincidences)).all()
    c = row.payload
    assert c["event_id"] == "G298048" and row.rank == 1
    assert c["credible_level"] == pytest.approx(expected, abs=1e-6)
    assert c["credible_level"] == pytest.approx(0.38, abs=0.01)  # MANIFEST
    assert c["dt_days"] == pytest.approx(0.5)
    # The host distance sits where the map puts the source (~40 Mpc): B_D > 1.
    assert c["components"]["ln_B_D"] > 0
    assert np.isfinite(c["log_bayes_factor"]) and c["log_bayes_factor"] > c["components"][
        "ln_B_sky"]


def _peak(skymap_bytes: bytes, tmp_path: Path) -> tuple[float, float]:
    """Centre of the map's densest tile [deg ICRS]: where a decoy is most probable."""
    path = tmp_path / "gw170817.fits.gz"
    path.write_bytes(skymap_bytes)
    sky = read_sky_map(str(path), moc=True)
    best = sky[int(np.argmax(sky["PROBDENSITY"]))]["UNIQ"]
    level, ipix = moc.uniq2nest(best)
    ra, dec = healpy.pix2ang(healpy.order2nside(int(level)), int(ipix), nest=True, lonlat=True)
    return float(ra), float(dec)


def test_at2017gfo_outranks_decoys_seen_before_the_merger(
        engine: Engine, config: Config, corpus: Path, skymap_bytes: bytes,
        tmp_path: Path) -> None:
    """Objects more probable on the sky than AT2017gfo, with the same host distance,
    but seen before the merger (a month before, or 13 h before) or first seen ten
    days after it (outside the kilonova's time), rank below it."""
    raw = (corpus / "voevent/gw/G298048-1-Initial_GW170817.xml").read_bytes()
    p = Pipeline(engine, config, fetch=lambda url: skymap_bytes)
    p.process(lvk_voevent, raw, origin="LVC_INITIAL")
    t0 = lvk_voevent.parse(raw, topic="gcn.classic.voevent.LVC_INITIAL").event_time
    ra, dec = _peak(skymap_bytes, tmp_path)
    good = {"rb": 0.95, "drb": 0.99, "isdiffpos": True}

    def at(name: str, days: float, offset_deg: float = 0.0, **extra: object) -> Alert:
        return Alert(alert_id=f"{name}-{days}", object_id=name, survey="ZTF",
                     ra_deg=ra + offset_deg, dec_deg=dec, time=t0 + timedelta(days=days),
                     quality=good, distance_mpc=NGC4993_MPC, **extra)  # type: ignore[arg-type]

    stream = [
        # A variable known for a month (the packet's history says so).
        at("old-variable", 0.6, 0.0, history=(t0 - timedelta(days=30),),
           history_source="ztf.prv_candidates"),
        # A transient that rose 13 h before the merger, seen again after it.
        at("pre-merger", -13 / 24, 0.01), at("pre-merger", 0.7, 0.01),
        # A transient first seen ten days after the merger.
        at("late", 10.0, 0.02),
        Alert(alert_id="AT2017gfo-1", object_id="AT2017gfo", survey="ZTF", ra_deg=RA,
              dec_deg=DEC, time=t0 + timedelta(days=0.5), quality=good,
              distance_mpc=NGC4993_MPC),
    ]
    for alert in stream:
        p.process(lvk_voevent, b"alert", origin="alert", item=alert)
    with engine.connect() as conn:
        rows = {r.payload["object_id"]: r for r in conn.execute(select(coincidences))}
    assert set(rows) == {"old-variable", "pre-merger", "late", "AT2017gfo"}
    kilonova = rows["AT2017gfo"].payload
    for name in ("old-variable", "pre-merger", "late"):
        decoy = rows[name].payload
        # Each decoy is more probable on the sky than AT2017gfo ...
        assert decoy["prob_density_sr"] > kilonova["prob_density_sr"]
        # ... and ranks below it.
        assert rows[name].rank > rows["AT2017gfo"].rank == 1, (name, decoy["components"])
    assert "pre_existing" in rows["old-variable"].payload["flags"]
    assert "pre_existing" in rows["pre-merger"].payload["flags"]
    assert kilonova["p_association"] > rows["late"].payload["p_association"]
