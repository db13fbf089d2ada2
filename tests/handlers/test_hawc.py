"""HAWC burst-monitor VOEvents: every real packet, hostile variants, sniff."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mma.errors import BadMessage, HostileMessage, InvalidValue, MalformedMessage, MissingField
from mma.handlers import hawc
from mma.models import SECONDS_PER_YEAR
from mma.registry import Registry
from tests.handlers.test_amon import assert_sniff_claims_only

DATA = Path(__file__).parents[1] / "data" / "hawc"
FILES = sorted(DATA.glob("*.xml"))
LATEST = DATA / "HAWC_BURST_MONITOR_Event2023-05-27T11-19-48.00_10011394_000003758-831.xml"
# Read off each packet: (run_id, event_id) → (ISOTime, Who/Date, RA, Dec,
# src_err_90 [arcmin], FAR [yr^-1], Pvalue, deltaT [s], Gnd_Generated).
EXPECTED = {
    (1010460, 557): ("2022-01-03T08:01:56", "2022-01-03T08:03:13", 156.3265, 1.8323, 35.99,
                     5.626004, 0.005450, 10.0, False),
    (10011037, 4398): ("2022-11-23T10:28:09", "2022-11-23T10:40:09", 92.5243, 5.5059, 24.0,
                       4.354116, 0.005788, 100.0, False),
    (1011061, 1567): ("2022-11-28T01:23:43", "2022-11-28T01:25:05", 35.3630, 40.5062, 24.0,
                      8.323385, 0.003858, 10.0, True),
    (10011296, 9331): ("2023-05-04T04:32:16", "2023-05-04T04:44:17", 172.2954, 42.4087, 24.0,
                       6.850149, 0.017669, 100.0, False),
    (10011394, 3758): ("2023-05-27T11:19:48", "2023-05-27T11:31:51", 272.2656, 26.7145, 24.0,
                       9.788136, 0.007347, 100.0, False),
}


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _edit(old: str, new: str) -> bytes:
    text = LATEST.read_text()
    assert old in text, old
    return text.replace(old, new, 1).encode()


def test_every_real_packet_is_here() -> None:
    assert len(FILES) == len(EXPECTED) == 5


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name[19:45])
def test_every_real_packet_parses(path: Path) -> None:
    raw = path.read_bytes()
    assert hawc.sniff(raw) and Registry().detect(raw) is hawc
    notice = hawc.parse(raw, topic="gcn.classic.voevent.HAWC_BURST_MONITOR")
    run, number = (int(x) for x in notice.event_id.removeprefix("HAWC-").split("_"))
    t0, issued, ra, dec, err90, far, p_value, window, ground = EXPECTED[(run, number)]
    assert (notice.messenger, notice.instrument, notice.event_class) == ("grb", "HAWC", "grb")
    assert notice.notice_type == "HAWC_BURST_MONITOR"
    assert notice.event_time == _utc(t0) and notice.issued_time == _utc(issued)
    region = notice.region
    assert region is not None and region.kind == "circle"
    assert (region.ra_deg, region.dec_deg) == (ra, dec)
    assert region.radius_deg == pytest.approx(err90 / 60) and region.containment == 0.9
    assert region.skymap_url is None  # the packets' "http://not.yet.available" placeholder
    props = notice.properties
    assert props["far"] == pytest.approx(far / SECONDS_PER_YEAR)
    assert props["p_value"] == pytest.approx(p_value)
    assert props["time_window_s"] == window and props["revision"] == 0
    assert (props["run_id"], props["event_id"]) == (run, number)
    assert ("ground_generated" in notice.flags) is ground
    assert "statistical_error_only" in notice.flags
    assert not notice.test and not notice.retraction and notice.aliases == ()


def test_retraction_and_test_bits() -> None:
    retracted = hawc.parse(_edit('name="Retraction" value="false"',
                                 'name="Retraction" value="true"'), topic="")
    assert retracted.retraction and retracted.region is None
    assert hawc.parse(_edit('name="Test" value="false"', 'name="Test" value="true"'),
                      topic="").test
    assert hawc.parse(_edit('role="observation"', 'role="test"'), topic="").test


def test_a_real_skymap_url_is_kept() -> None:
    url = "https://example.org/hawc/map.fits"
    raw = _edit('value="http://not.yet.available"', f'value="{url}"')
    region = hawc.parse(raw, topic="").region
    assert region is not None and region.skymap_url == url


TEXT = LATEST.read_text()


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (TEXT[:-100].encode(), MalformedMessage, "not well-formed"),
        (b'<!DOCTYPE x SYSTEM "file:///etc/passwd">' + TEXT.encode(), HostileMessage,
         "DOCTYPE"),
        (_edit('name="run_id" value="10011394"', 'name="run_id" value=""'), MissingField,
         "run_id"),
        (_edit('name="event_id" value="3758"', 'name="event_id" value="-3758"'), InvalidValue,
         "negative"),
        (_edit('name="Packet_Type" value="171"', 'name="Packet_Type" value="172"'),
         InvalidValue, "HAWC_BURST_MONITOR"),
        (_edit("AMON#HAWC_BURST_MONITOR_Event", "AMON#NU_EM_Event"), InvalidValue,
         "not a HAWC"),
        (_edit('value="24.00" unit="arcmin"', 'value="1e400" unit="arcmin"'), InvalidValue,
         "not finite"),
        (_edit('value="9.788136" ucd="stat.probability" unit="yr^-1"',
               'value="9.788136" ucd="stat.probability" unit="m"'), InvalidValue, "rate unit"),
        (_edit('name="Pvalue" value="0.007347"', 'name="Pvalue" value="7.3"'), InvalidValue,
         "outside"),
        (_edit('name="Retraction" value="false"', 'name="Retraction" value="maybe"'),
         InvalidValue, "true/false"),
        (_edit("<C2>26.7145</C2>", "<C2>-95</C2>"), InvalidValue, "Dec"),
    ],
)
def test_hostile_variants_raise_bad_message(raw: bytes, error: type[BadMessage],
                                            match: str) -> None:
    with pytest.raises(error, match=match):
        hawc.parse(raw, topic="")


def test_sniff_claims_only_hawc() -> None:
    assert_sniff_claims_only(hawc, DATA)
