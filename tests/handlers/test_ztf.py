"""ZTF Avro alert packets: every corpus packet, checked against fastavro and astropy."""

from __future__ import annotations

import io
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest
from astropy.time import Time

from mma.errors import HostileMessage, InvalidValue, MalformedMessage, MissingField
from mma.formats import avro, history
from mma.handlers import ztf
from tests.conftest import CORPUS

AVRO = CORPUS / "alerts" / "ztf" / "avro"
PACKETS = sorted(p for p in AVRO.glob("*.avro") if not p.name.startswith("prototype"))
PROTOTYPE = AVRO / "prototype_87704463155000.avro"


def _fastavro(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    # fastavro directly, not mma.formats.avro: an independent read of the packet.
    with path.open("rb") as fh:
        reader: Any = fastavro.reader(fh)
        return reader.writer_schema, list(reader)


def _container(schema: dict[str, Any], records: list[dict[str, Any]]) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, schema, records)
    return out.getvalue()


def test_corpus_is_present() -> None:
    assert len(PACKETS) == 9 and PROTOTYPE.exists()


@pytest.mark.parametrize("path", PACKETS, ids=lambda p: p.name)
def test_every_packet_parses(path: Path) -> None:
    raw = path.read_bytes()
    _, (packet,) = _fastavro(path)
    cand = packet["candidate"]
    assert ztf.sniff(raw)
    alert = ztf.parse(raw, topic="ztf_20240115_programid1")
    assert alert.alert_id == str(packet["candid"]) == str(cand["candid"])
    assert alert.object_id == packet["objectId"]
    assert alert.survey == "ZTF" and alert.broker is None
    assert (alert.ra_deg, alert.dec_deg) == (cand["ra"], cand["dec"])
    expected = Time(cand["jd"], format="jd", scale="utc").to_datetime(timezone=UTC)
    assert abs((alert.time - expected).total_seconds()) < 1e-3
    first = Time(cand["jdstarthist"], format="jd", scale="utc").to_datetime(timezone=UTC)
    assert alert.first_detection is not None
    assert abs((alert.first_detection - first).total_seconds()) < 1e-3
    assert alert.band == {1: "g", 2: "r", 3: "i"}[cand["fid"]]
    assert (alert.magnitude, alert.magnitude_err) == (cand["magpsf"], cand["sigmapsf"])
    q = alert.quality
    assert q["isdiffpos"] is (cand["isdiffpos"] in ("t", "1"))
    assert q["rb"] == cand["rb"] and q["drb"] == cand.get("drb")
    for key in ("ssdistnr", "ssmagnr", "sgscore1", "distpsnr1"):
        assert q[key] == (None if cand[key] == -999 else cand[key]), key
    for key in ("ndethist", "programid", "ncovhist"):
        assert q[key] == cand[key]
    assert q["ssnamenr"] is None  # 'null' in every corpus packet
    assert q["schemavsn"] == packet.get("schemavsn")


def test_prototype_packet_is_rejected_with_reason() -> None:
    # The 2016 pre-survey prototype (alertId, negative candid, PTF-era data) is
    # recognised as ZTF Avro but is not a survey alert: refused, not guessed at.
    raw = PROTOTYPE.read_bytes()
    assert ztf.sniff(raw)
    with pytest.raises(MissingField, match=r"objectId.*prototype"):
        ztf.parse(raw, topic="")


def test_split_many_record_container() -> None:
    schema, (packet,) = _fastavro(PACKETS[-1])
    records = [dict(packet, objectId=f"ZTF24aaaaaa{letter}") for letter in "abc"]
    raw = _container(schema, records)  # what a nightly dump of several packets looks like
    assert ztf.sniff(raw)
    with pytest.raises(MalformedMessage, match="holds 3 records"):
        ztf.parse(raw, topic="")
    parts = list(ztf.split(raw))
    assert len(parts) == 3
    assert all(p.startswith(avro.AVRO_MAGIC) for p in parts)
    alerts = [ztf.parse(p, topic="") for p in parts]
    assert [a.object_id for a in alerts] == [r["objectId"] for r in records]
    assert {a.alert_id for a in alerts} == {str(packet["candid"])}


def test_other_avro_is_not_ztf() -> None:
    rubin = (CORPUS / "alerts/rubin/schema/v7_1/fakeAlert.avro").read_bytes()
    assert not ztf.sniff(rubin)
    with pytest.raises(MalformedMessage, match="not a ZTF alert"):
        ztf.parse(rubin, topic="")
    assert not ztf.sniff((CORPUS / "gcn-json/igwn-gwalert/MS181101ab-retraction.json").read_bytes())
    assert not ztf.sniff(b"Obj\x01")


@pytest.mark.parametrize("jd", [2458493.7607639, 2460324.7135301, 2451545.0, 2457754.5])
def test_jd_conversion_matches_astropy(jd: float) -> None:
    expected = Time(jd, format="jd", scale="utc").to_datetime(timezone=UTC)
    got = history.jd_to_datetime(jd)
    assert got.tzinfo is UTC
    assert abs((got - expected).total_seconds()) < 1e-4


@pytest.mark.parametrize(
    ("value", "expected"),
    [("t", True), ("1", True), ("f", False), ("0", False), (1, True), (0, False), (None, None)],
)
def test_isdiffpos_normalised(value: Any, expected: bool | None) -> None:
    assert history.isdiffpos_to_bool(value) is expected


def test_isdiffpos_unknown_value() -> None:
    with pytest.raises(InvalidValue, match="isdiffpos"):
        history.isdiffpos_to_bool("maybe")


def test_sentinels_become_none() -> None:
    _, (packet,) = _fastavro(PACKETS[0])
    cand = dict(packet["candidate"], sgscore1=-999.0, distpsnr1=-999.0, jdstarthist=-999.0)
    alert = ztf.alert_from_candidate(cand, object_id="ZTF17aaacxxf", candid=packet["candid"])
    assert alert.quality["sgscore1"] is None and alert.quality["distpsnr1"] is None
    assert alert.first_detection is None


# --- history: the packet's earlier positive >= 5 sigma detections -----------------

SIGMA_5 = 1.0857 / 5  # mag: sigma_mag = 1.0857 sigma_flux / flux, S/N >= 5


def _utc(jd: float) -> datetime:
    return Time(jd, format="jd", scale="utc").to_datetime(timezone=UTC)


def _expected_history(packet: dict[str, Any]) -> list[datetime]:
    """Independent reading of the raw prv_candidates: astropy times, the brief's rules."""
    jd_now = packet["candidate"]["jd"]
    jds = {e["jd"] for e in packet["prv_candidates"] or []
           if e["candid"] is not None                       # upper limits have none
           and str(e["isdiffpos"]).lower() in ("t", "1", "true")
           and e["sigmapsf"] <= SIGMA_5 and e["jd"] < jd_now}
    return [_utc(jd) for jd in sorted(jds)][-256:]


def _same_times(got: tuple[datetime, ...], want: list[datetime]) -> None:
    assert len(got) == len(want)
    assert all(g.tzinfo is UTC for g in got)
    assert list(got) == sorted(set(got))
    assert all(abs((g - w).total_seconds()) < 1e-3 for g, w in zip(got, want, strict=True))


@pytest.mark.parametrize("path", PACKETS, ids=lambda p: p.name)
def test_history_of_every_packet(path: Path) -> None:
    _, (packet,) = _fastavro(path)
    alert = ztf.parse(path.read_bytes(), topic="")
    assert alert.history_source == "ztf.prv_candidates"  # every corpus packet has the array
    _same_times(alert.history, _expected_history(packet))
    assert all(t < alert.time for t in alert.history)


def test_history_corpus_cases() -> None:
    """The corpus holds the cases the rules are about; each count is read off the raw packet."""
    packets = {p.name.split("_")[0]: _fastavro(p)[1][0] for p in PACKETS}
    alerts = {p.name.split("_")[0]: ztf.parse(p.read_bytes(), topic="") for p in PACKETS}
    # Only upper limits (candid null): the array is there, no earlier detection.
    only_limits = packets["ZTF17aaajnnn"]["prv_candidates"]
    assert only_limits and all(e["candid"] is None for e in only_limits)
    assert alerts["ZTF17aaajnnn"].history == ()
    assert alerts["ZTF17aaajnnn"].history_source == "ztf.prv_candidates"
    # Negative detections ('f' and '0') are left out although they are >= 5 sigma.
    prv = packets["ZTF17aaacxxf"]["prv_candidates"]
    negative = [e for e in prv if e["candid"] is not None and e["isdiffpos"] in ("f", "0")]
    positive = [e for e in prv if e["candid"] is not None and e["isdiffpos"] == "t"]
    assert negative and any(e["isdiffpos"] == "0" for e in negative)
    assert len(alerts["ZTF17aaacxxf"].history) == len(positive)
    # Two CCD quadrants of one exposure: two candids, one jd, one history time.
    prv = packets["ZTF18aaypnsi"]["prv_candidates"]
    good = [e["jd"] for e in prv if e["candid"] is not None and e["isdiffpos"] == "t"]
    assert len(good) == len(set(good)) + 1
    assert len(alerts["ZTF18aaypnsi"].history) == len(set(good))
    # jdstarthist counts more than the history: first_detection keeps it.
    assert alerts["ZTF17aaacxxf"].first_detection is not None
    assert alerts["ZTF17aaacxxf"].first_detection <= alerts["ZTF17aaacxxf"].history[0]
    assert sum(len(a.history) for a in alerts.values()) > 0


def _with_prv(prv: Any, path: Path | None = None) -> bytes:
    schema, (packet,) = _fastavro(path or PACKETS[-1])
    return _container(schema, [dict(packet, prv_candidates=prv)])


def test_empty_history_array_is_told() -> None:
    alert = ztf.parse(_with_prv([]), topic="")
    assert alert.history == () and alert.history_source == "ztf.prv_candidates"


def test_null_history_is_not_told() -> None:
    alert = ztf.parse(_with_prv(None), topic="")
    assert alert.history == () and alert.history_source is None
    _, (packet,) = _fastavro(PACKETS[-1])
    del packet["prv_candidates"]  # another container without the field at all
    assert ztf.alert_from_packet(packet).history_source is None


def _entry(packet: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A detection entry of *packet*'s history with some fields changed."""
    base = next(e for e in packet["prv_candidates"] if e["candid"] is not None)
    return dict(base, **changes)


def test_negative_low_snr_limits_and_own_detection_excluded() -> None:
    path = PACKETS[-1]  # ZTF19abvhduf: its history entries are all positive detections
    _, (packet,) = _fastavro(path)
    jd = packet["candidate"]["jd"]
    keep = _entry(packet, jd=jd - 3.0, isdiffpos="t", sigmapsf=0.2171, candid=11)
    prv = [
        keep,
        _entry(packet, jd=jd - 3.5, isdiffpos="f", sigmapsf=0.05, candid=12),   # negative
        _entry(packet, jd=jd - 3.6, isdiffpos="0", sigmapsf=0.05, candid=13),   # negative
        _entry(packet, jd=jd - 4.0, isdiffpos="t", sigmapsf=0.2172, candid=14),  # S/N < 5
        _entry(packet, jd=jd - 5.0, isdiffpos=None, sigmapsf=None, magpsf=None,
               candid=None),                                                    # upper limit
        _entry(packet, jd=jd, isdiffpos="t", sigmapsf=0.1,
               candid=packet["candid"]),                                        # itself
        _entry(packet, jd=jd + 1.0, isdiffpos="t", sigmapsf=0.1, candid=15),    # not earlier
        _entry(packet, jd=jd - 3.0, isdiffpos="1", sigmapsf=0.1, candid=16),    # same time
    ]
    alert = ztf.parse(_with_prv(prv, path), topic="")
    _same_times(alert.history, [_utc(jd - 3.0)])


@pytest.mark.parametrize("bad", [
    {"jd": float("nan")}, {"jd": float("inf")}, {"jd": 1e300}, {"jd": -5.0}, {"jd": 0.0},
    {"jd": 2442413.5},  # 1975: a date, but before ZTF's first light
    {"sigmapsf": float("nan")}, {"sigmapsf": -0.1}, {"sigmapsf": 0.0},
])
def test_hostile_entry_in_avro_is_skipped(bad: dict[str, float]) -> None:
    path = PACKETS[-1]
    _, (packet,) = _fastavro(path)
    jd = packet["candidate"]["jd"]
    good = _entry(packet, jd=jd - 2.0, isdiffpos="t", sigmapsf=0.1, candid=21)
    hostile = _entry(packet, jd=jd - 1.0, isdiffpos="t", sigmapsf=0.1, candid=22)
    hostile.update(bad)
    alert = ztf.parse(_with_prv([hostile, good], path), topic="")
    _same_times(alert.history, [_utc(jd - 2.0)])


@pytest.mark.parametrize("bad", [
    {"jd": "2460000.5"}, {"jd": None}, {"jd": True}, {"sigmapsf": "0.1"},
    {"isdiffpos": "maybe"}, {"isdiffpos": 2}, {"isdiffpos": ["t"]}, {"candid": "22"},
    {"candid": True}, {"candid": 2.2e18},
])
def test_hostile_entry_in_any_container_is_skipped(bad: dict[str, Any]) -> None:
    # Brokers hand over JSON-like containers: any type can sit in any field.
    _, (packet,) = _fastavro(PACKETS[-1])
    jd = packet["candidate"]["jd"]
    good = _entry(packet, jd=jd - 2.0, isdiffpos="t", sigmapsf=0.1, candid=21)
    hostile = _entry(packet, jd=jd - 1.0, isdiffpos="t", sigmapsf=0.1, candid=22)
    hostile.update(bad)
    prv = [hostile, "not a record", None, 7, good]
    alert = ztf.alert_from_packet(dict(packet, prv_candidates=prv))
    _same_times(alert.history, [_utc(jd - 2.0)])
    # A history that is not an array at all tells nothing; the alert itself stands.
    for value in ("t", {"jd": jd}, 3):
        other = ztf.alert_from_packet(dict(packet, prv_candidates=value))
        assert other.history == () and other.history_source is None


def test_history_keeps_the_newest_256() -> None:
    path = PACKETS[-1]
    _, (packet,) = _fastavro(path)
    jd = packet["candidate"]["jd"]
    prv = [_entry(packet, jd=jd - 0.01 * (i + 1), isdiffpos="t", sigmapsf=0.1, candid=100 + i)
           for i in range(300)]
    alert = ztf.parse(_with_prv(prv, path), topic="")
    assert history.HISTORY_CAP == 256
    _same_times(alert.history, [_utc(jd - 0.01 * (i + 1)) for i in range(255, -1, -1)])


# --- bounds: containers cut without decoding, histories capped before decoding ------

def _records_of(raw: bytes) -> list[Any]:
    return list(fastavro.reader(io.BytesIO(raw)))


@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_split_cuts_records_without_decoding_them(codec: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    schema, (packet,) = _fastavro(PACKETS[0])
    records = [dict(packet, objectId=f"ZTF24aaaaaa{letter}") for letter in "abcd"]
    out = io.BytesIO()
    fastavro.writer(out, schema, records, codec=codec, sync_interval=150_000)  # 2 blocks
    raw = out.getvalue()
    real = fastavro.reader

    class HeaderOnly:  # fastavro reads the header; iterating would decode the records
        def __init__(self, fo: Any) -> None:
            self.reader = real(fo)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.reader, name)

        def __iter__(self) -> Any:
            raise AssertionError("split decoded the records")

    with monkeypatch.context() as patch:
        patch.setattr(avro.fastavro, "reader", HeaderOnly)
        patch.setattr(avro.fastavro, "writer", None)  # nor re-encodes them
        parts = list(ztf.split(raw))
    assert [_records_of(p) for p in parts] == [[r] for r in records]
    assert all(fastavro.reader(io.BytesIO(p)).codec == "null" for p in parts)


def _history_blocks(blocks: list[int]) -> bytes:
    """The 2018 packet whose prv_candidates come as several blocks of the given sizes."""
    from tests.hostile import alerts

    template = alerts.ZTF_2018_PACKET
    schema, head, item, tail = alerts.array_parts(template, "prv_candidates",
                                                  alerts.upper_limit(template))
    array = b"".join(alerts.zigzag(n) + item * n for n in blocks) + b"\x00"
    return alerts.container(schema, 1, head + array + tail, codec="null")


def test_history_cap_counts_every_block() -> None:
    ok = _history_blocks([3, 2])
    assert len(_records_of(ok)[0]["prv_candidates"]) == 5
    assert ztf.parse(ok, topic="").object_id == "ZTF18aaypnsi"
    # Blocks under the cap each, over it together: refused on the block that passes it.
    cap = ztf.MAX_HISTORY_ENTRIES
    hostile = _history_blocks([cap // 2, cap // 2, 1])
    with pytest.raises(HostileMessage, match=f"prv_candidates holds more than {cap} items"):
        ztf.parse(hostile, topic="")
    with pytest.raises(HostileMessage, match="record 0: Avro array prv_candidates"):
        list(ztf.split(hostile))


def test_history_bomb_as_a_kafka_message() -> None:
    from tests.hostile import alerts

    raw = alerts.ztf_history(alerts.ZTF_HISTORY_BOMB)  # 248 KiB, 63 MiB inflated
    tracemalloc.start()
    try:
        with pytest.raises(HostileMessage, match=f"inflates beyond {ztf.MAX_MESSAGE_BYTES}"):
            ztf.parse(raw, topic="")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # inflated a chunk at a time and counted, never held


def test_records_per_file_cap_counts_blocks_too() -> None:
    schema, (packet,) = _fastavro(PACKETS[0])
    out = io.BytesIO()
    fastavro.writer(out, schema, [packet] * 3, sync_interval=1)  # one block per record
    with pytest.raises(HostileMessage, match="more than 2 records"):
        avro.read_container(out.getvalue(), max_bytes=2**24, max_records=2)
    empty_blocks = out.getvalue() + (b"\x00\x00" + out.getvalue()[-16:]) * 5
    with pytest.raises(HostileMessage, match="more than 4 records"):
        avro.read_container(empty_blocks, max_bytes=2**24, max_records=4)
