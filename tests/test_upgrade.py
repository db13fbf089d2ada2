"""A shape is usable at once; the map given by URL supersedes it when it arrives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from mma.config import Config
from mma.db.schema import dead_letters, regions
from mma.errors import TransientError
from mma.ingest import Pipeline
from mma.models import Notice, RegionSpec
from tests.helpers import HANDLER

T0 = datetime(2025, 6, 1, tzinfo=UTC)
URL = "https://gracedb.ligo.org/apiweb/superevents/MS1/files/bayestar.multiorder.fits"


def _notice(spec: RegionSpec) -> Notice:
    return Notice(event_id="IceCube-1_2", messenger="neutrino", instrument="IceCube",
                  notice_type="GOLD", event_time=T0, issued_time=T0 + timedelta(minutes=1),
                  region=spec)


def _versions(engine: Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(
            regions.c.version, regions.c.kind, regions.c.status).order_by(regions.c.version))]


@pytest.fixture
def fits_bytes(corpus: Path) -> bytes:
    return (corpus / "skymaps/gw/MS181101ab_bayestar.multiorder.fits").read_bytes()


def test_circle_then_map(engine: Engine, config: Config, fits_bytes: bytes) -> None:
    asked: list[str] = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return fits_bytes

    spec = RegionSpec(kind="circle", ra_deg=10.0, dec_deg=20.0, radius_deg=1.5,
                      skymap_url=URL)
    Pipeline(engine, config, fetch=fetch).process(
        HANDLER, b"notice", origin="t", item=_notice(spec))
    assert asked == [URL]
    assert _versions(engine) == [(1, "circle", "superseded"), (2, "skymap", "active")]


def test_failed_download_keeps_the_circle(engine: Engine, config: Config) -> None:
    def fetch(url: str) -> bytes:
        raise TransientError("connection refused")

    spec = RegionSpec(kind="circle", ra_deg=10.0, dec_deg=20.0, radius_deg=1.5,
                      skymap_url=URL)
    p = Pipeline(engine, config, fetch=fetch)
    assert p.process(HANDLER, b"notice", origin="t", item=_notice(spec)).kind == "notice"
    assert _versions(engine) == [(1, "circle", "active")]
    assert len(p.correlator.active) == 1


def test_url_only_map_without_fetcher_stores_the_notice(engine: Engine,
                                                        config: Config) -> None:
    spec = RegionSpec(kind="skymap", skymap_url=URL)
    p = Pipeline(engine, config)
    assert p.process(HANDLER, b"notice", origin="t", item=_notice(spec)).kind == "notice"
    assert _versions(engine) == []


def test_undecodable_download_is_dead_lettered(engine: Engine, config: Config) -> None:
    junk = b"SIMPLE  =                    T" + b"\0" * 3000

    spec = RegionSpec(kind="skymap", skymap_url=URL)
    p = Pipeline(engine, config, fetch=lambda url: junk)
    assert p.process(HANDLER, b"notice", origin="t", item=_notice(spec)).kind == "notice"
    with engine.connect() as conn:
        letter = conn.execute(select(dead_letters)).one()
    assert letter.source == "skymap_fetch" and letter.origin == URL
    assert bytes(letter.raw) == junk
    assert _versions(engine) == []
