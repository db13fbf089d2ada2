"""``mma replay --fetch``: a notice's map URL downloaded from a loopback server, cached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from mma.cli import main
from mma.db.engine import make_engine
from mma.db.schema import regions

MAP = "skymaps/gw/GW190814_PublicationSamples.multiorder.fits"
NOTICE = "voevent/gw/S190814bv-5-Update_GW190814.xml"


def test_replay_fetches_the_skymap_once(corpus: Path, tmp_path: Path, http_sink,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    url = http_sink.add_file("/superevents/S190814bv/LALInference.multiorder.fits",
                             (corpus / MAP).read_bytes(), "application/fits")
    xml = (corpus / NOTICE).read_bytes().replace(
        b'value="data/LALInference.v1.fits.gz"', f'value="{url}"'.encode())
    assert url.encode() in xml
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notice.xml").write_bytes(xml)
    monkeypatch.setenv("MMA_SKYMAPS__ALLOWED_HOSTS", json.dumps(["127.0.0.1"]))
    monkeypatch.setenv("MMA_PATHS__CACHE_DIR", str(tmp_path / "cache"))
    for run in (1, 2):
        db = f"sqlite:///{tmp_path / f'run{run}.sqlite'}"
        assert main(["replay", str(tmp_path / "in"), "--fetch", "--db", db,
                     "--output", str(tmp_path / "out.jsonl")]) == 0
        engine = make_engine(db)
        with engine.connect() as conn:
            stored = conn.execute(select(regions.c.kind, regions.c.n_tiles)).all()
        engine.dispose()
        assert [r.kind for r in stored] == ["skymap"] and stored[0].n_tiles > 1000
    # The second replay took the map from the content-addressed cache.
    assert len([r for r in http_sink.requests if r.method == "GET"]) == 1


def test_replay_without_fetch_stores_the_notice_only(corpus: Path, tmp_path: Path,
                                                     http_sink) -> None:
    db = f"sqlite:///{tmp_path / 'x.sqlite'}"
    assert main(["replay", str(corpus / NOTICE), "--db", db]) == 0
    engine = make_engine(db)
    with engine.connect() as conn:
        assert conn.execute(select(regions.c.id)).all() == []
    engine.dispose()
    assert http_sink.requests == []
