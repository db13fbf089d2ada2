"""The Rubin fast path's history (compiled ``prvDiaSources`` decoder) equals a full decode's."""

from __future__ import annotations

import pytest

from mma.errors import BadMessage
from mma.formats import rubin as schemas
from mma.formats import rubin_frames
from mma.handlers import rubin
from mma.models import Alert
from tests.handlers.test_rubin import CONFLUENT, FRAMEABLE, _frame, _records


def _corpus_frames() -> list[bytes]:
    """The real v9 frame, and every container record re-framed with its bundled schema id."""
    frames = [CONFLUENT.read_bytes()]
    for path in FRAMEABLE:
        schema, records = _records(path)
        schema_id = schemas.schema_id_of_name(schema["name"])
        assert schema_id is not None
        frames += [_frame(r, schema_id) for r in records]
    return frames


FRAMES = _corpus_frames()


def _parse(frame: bytes) -> Alert | None:
    try:
        return rubin.parse(frame, topic="lsst-alerts-v11")
    except BadMessage:
        return None


def test_parse_history_equals_full_decode_of_every_frame() -> None:
    """The history the fast path reads (History decoder) equals a full fastavro decode's."""
    told = 0
    for frame in FRAMES:
        alert = _parse(frame)
        if alert is None:
            continue
        full = rubin_frames.decode_full(frame)
        prv = full["prvDiaSources"]
        if prv is None:
            assert alert.history_source is None and alert.history == ()
            continue
        told += 1
        now = full["diaSource"]["midpointMjdTai"]
        mjds = sorted({s["midpointMjdTai"] for s in prv
                       if s["psfFlux"] > 0 and s["psfFluxErr"] > 0
                       and s["psfFlux"] / s["psfFluxErr"] >= 5
                       and s.get("isNegative") is not True and s["midpointMjdTai"] < now})
        assert alert.history_source == "lsst.prvDiaSources"
        assert [t.timestamp() for t in alert.history] == pytest.approx(
            [schemas.tai_mjd_to_utc(m).timestamp() for m in mjds], abs=1e-6)
    assert told >= 4  # the v7.1 HSC alert with history and the v9/v10/v11 samples
