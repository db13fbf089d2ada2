"""Rubin "decode what matching needs first": match_keys == parse; batch matching == full."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from mma.errors import BadMessage
from mma.formats import rubin as schemas
from mma.formats import rubin_frames
from mma.handlers import rubin
from mma.models import Alert
from mma.skymaps.index import RegionIndex
from mma.skymaps.region import MAX_ORDER, Region, hpx29
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


def test_match_keys_equal_parse() -> None:
    keys = rubin_frames.match_keys(FRAMES)
    assert len(keys) == len(FRAMES) >= 15
    assert {struct.unpack_from(">i", f, 1)[0] for f in FRAMES} == {701, 900, 1000, 1100}
    for i, frame in enumerate(FRAMES):
        alert = _parse(frame)
        if alert is None:  # the v7.1 sample's Unix time: neither path accepts it
            assert not keys.ok[i]
            continue
        assert keys.ok[i]
        assert keys.ra_deg[i] == alert.ra_deg
        assert keys.dec_deg[i] == alert.dec_deg
        assert str(keys.dia_source_id[i]) == alert.alert_id
        assert keys.time_unix[i] == pytest.approx(alert.time.timestamp(), abs=1e-6)
        assert schemas.tai_mjd_to_utc(float(keys.mjd_tai[i])) == alert.time
    assert keys.ok.sum() >= len(FRAMES) - 1


def test_time_across_tai_midnight_and_leap_second() -> None:
    mjd = np.array([57753.9999, 57754.0001, 57754.0004, 60961.23309222222, 60962.0001])
    got = rubin_frames._tai_mjd_to_unix(mjd)
    want = [schemas.tai_mjd_to_utc(float(m)).timestamp() for m in mjd]
    assert got == pytest.approx(want, abs=1e-6)


# match_keys reads the real frame up to diaSource.dec, which ends at byte 70.
@pytest.mark.parametrize("cut", [0, 3, 5, 6, 20, 30, 50, 60, 69])
def test_truncated_leading_fields_not_ok(cut: int) -> None:
    frame = CONFLUENT.read_bytes()[:cut]
    assert not rubin_frames.match_keys([frame]).ok[0]
    with pytest.raises(BadMessage):
        rubin.parse(frame, topic="")


def test_bad_frames_not_ok_and_others_unaffected() -> None:
    good = CONFLUENT.read_bytes()
    frames = [b"", b"\x01" + good[1:], good[:1] + struct.pack(">i", 704) + good[5:], good]
    keys = rubin_frames.match_keys(frames)
    assert keys.ok.tolist() == [False, False, False, True]
    assert np.isnan(keys.ra_deg[:3]).all() and (keys.dia_source_id[:3] == 0).all()
    for frame in frames[:3]:
        with pytest.raises(BadMessage):
            rubin.parse(frame, topic="")
    # Cut after the leading fields: ok here, parse (of a match) rejects it.
    for cut in (70, 395, -1):
        assert rubin_frames.match_keys([good[:cut]]).ok[0]
        with pytest.raises(BadMessage):
            rubin.parse(good[:cut], topic="")


def _region(ra: np.ndarray, dec: np.ndarray, order: int) -> Region:
    """Uniform-density region: the order-*order* tiles holding the given points."""
    ipix = np.unique(hpx29(ra, dec) >> (2 * (MAX_ORDER - order)))
    shift = 2 * (MAX_ORDER - order)
    area = 4 * np.pi / (12 * 4.0**order)
    return Region.from_tiles(ipix << shift, (ipix + 1) << shift,
                             np.full(len(ipix), 1 / (area * len(ipix))))


def test_batch_match_equals_full_parse_match() -> None:
    alerts = [a for f in FRAMES if (a := _parse(f)) is not None]
    ra = np.array([a.ra_deg for a in alerts])
    dec = np.array([a.dec_deg for a in alerts])
    t = np.array([a.time.timestamp() for a in alerts])
    index = RegionIndex(None)
    # Three regions holding some of the corpus alerts (several versions); region 3's
    # time window excludes part of its alerts.
    index.add(1, _region(ra[1:3], dec[1:3], 8))
    index.add(2, _region(ra[-4:], dec[-4:], 3))
    mid = slice(len(ra) // 2, len(ra) // 2 + 5)
    index.add(3, _region(ra[mid], dec[mid], 5))
    window = {1: (-np.inf, np.inf), 2: (-np.inf, np.inf), 3: (t.min(), np.median(t))}

    def in_window(key: int, when: float) -> bool:
        return bool(window[key][0] <= when <= window[key][1])

    point, key, tile = index.match(hpx29(ra, dec))
    full = {(alerts[p].alert_id, int(k), int(j)) for p, k, j in zip(point, key, tile, strict=True)
            if in_window(int(k), t[p])}

    keys = rubin_frames.match_keys(FRAMES)
    good = np.flatnonzero(keys.ok)
    point, key, tile = index.match(hpx29(keys.ra_deg[good], keys.dec_deg[good]))
    batch = set()
    for p, k, j in zip(point, key, tile, strict=True):
        if in_window(int(k), keys.time_unix[good[p]]):
            alert = rubin.parse(FRAMES[good[p]], topic="lsst-alerts-v11")
            batch.add((alert.alert_id, int(k), int(j)))
    assert batch == full
    assert {k for _, k, _ in full} == {1, 2, 3}
    assert {a for a, _, _ in full} < {a.alert_id for a in alerts}  # the real frame: no match
    assert len(point) > len(batch)  # some matches fell outside region 3's window


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
