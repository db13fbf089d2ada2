"""A database outage is the environment's fault: messages are retried, never dead-lettered."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from mma.config import Config
from mma.db.engine import make_engine, upgrade
from mma.db.schema import dead_letters, notices
from mma.errors import TransientError
from mma.handlers import lvk
from mma.ingest import Pipeline


def test_postgres_down_then_back(postgres_server, postgres_url: str, config: Config,
                                 corpus: Path) -> None:
    engine = make_engine(postgres_url)
    upgrade(engine)
    pipeline = Pipeline(engine, config)
    good = (corpus / "gcn-json/igwn-gwalert/S230518h-initial.json").read_bytes()
    assert pipeline.process(lvk, b"[]", origin="igwn.gwalert:0:6").kind == "dead_letter"
    postgres_server.stop()
    try:
        with pytest.raises(TransientError, match="cannot store dead letter"):
            pipeline.process(lvk, b"{not json", origin="igwn.gwalert:0:7")
        with pytest.raises(TransientError, match="database error"):
            pipeline.process(lvk, good, origin="igwn.gwalert:0:8")
    finally:
        postgres_server.start()
    # The caller retries the same messages once the server is back: nothing was lost.
    assert pipeline.process(lvk, b"{not json", origin="igwn.gwalert:0:7").kind == "dead_letter"
    assert pipeline.process(lvk, good, origin="igwn.gwalert:0:8").kind == "notice"
    assert len(pipeline.correlator.active) == 1  # the index was rebuilt after the outage
    with engine.connect() as conn:
        assert len(conn.execute(select(dead_letters.c.id)).all()) == 2
        assert len(conn.execute(select(notices.c.id)).all()) == 1
    engine.dispose()
