"""AMON NU_EM coincidence VOEvents: every real packet, the units, hostile variants, sniff."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from mma.errors import BadMessage, HostileMessage, InvalidValue, MalformedMessage, MissingField
from mma.handlers import amon, icecube
from mma.models import SECONDS_PER_YEAR
from mma.registry import Registry
from tests.conftest import CORPUS

DATA = Path(__file__).parents[1] / "data" / "amon"
FILES = sorted(DATA.glob("*.xml"))
LATEST = DATA / "NU_EM_Event2023-10-20T04-29-20.00_000000_000142904-795.xml"
# Read off each packet: Event_ID → (Event_Date, ISOTime, Who/Date, RA, Dec,
# src_err_90 [arcmin], src_err_50 [arcmin], FAR [yr^-1], deltaT [s], Rev).
EXPECTED = {
    73310: ("210111A", "2021-01-11T13:06:41", "2021-01-11T13:15:53", 162.34, 19.46,
            40.19, 22.19, 3.8495, 22742.25, 1),
    105322: ("220116A", "2022-01-16T23:26:41", "2022-01-16T23:48:44", 322.1299, 27.26,
             15.68, 8.40, 0.57003, 23130.40, 1),
    108094: ("220212A", "2022-02-12T20:19:03", "2022-02-12T20:27:50", 307.5699, 1.6,
             34.31, 18.59, 2.8695, 20363.31, 0),
    108943: ("220220A", "2022-02-20T14:19:37", "2022-02-20T14:29:26", 221.3499, 13.23,
             18.92, 10.20, 1.25, 22254.90, 0),
    134980: ("230523A", "2023-05-23T02:57:23", "2023-05-23T03:14:54", 143.4, 4.83,
             15.29, 8.40, 0.87016, 20936.06, 1),
    141028: ("230927A", "2023-09-27T07:20:27", "2023-09-27T07:28:04", 331.92, 12.4399,
             14.11, 7.80, 3.8994, 22179.86, 0),
    142904: ("231020A", "2023-10-20T04:29:20", "2023-10-26T04:43:02", 313.18, 7.2,
             18.59, 10.20, 3.6492, 21417.36, 0),
}


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _edit(old: str, new: str, path: Path = LATEST) -> bytes:
    text = path.read_text()
    assert old in text, old
    return text.replace(old, new, 1).encode()


def test_every_real_packet_is_here() -> None:
    assert len(FILES) == len(EXPECTED) == 7


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name[:32])
def test_every_real_packet_parses(path: Path) -> None:
    raw = path.read_bytes()
    assert amon.sniff(raw) and Registry().detect(raw) is amon
    notice = amon.parse(raw, topic="gcn.classic.voevent.AMON_NU_EM_COINC")
    number = int(notice.event_id.removeprefix("AMON-NuEm-"))
    date, t0, issued, ra, dec, err90, err50, far, window, rev = EXPECTED[number]
    assert notice.event_id == f"AMON-NuEm-{number}" and notice.aliases == (f"NuEm-{date}",)
    assert (notice.messenger, notice.instrument, notice.event_class) == (
        "neutrino", "AMON-NuEm", "neutrino.track")
    assert notice.notice_type == "AMON_NU_EM_COINC"
    assert notice.event_time == _utc(t0) and notice.issued_time == _utc(issued)
    region = notice.region
    assert region is not None and region.kind == "circle"
    assert (region.ra_deg, region.dec_deg) == (ra, dec)
    # The 90 % radius in arcmin, not Error2Radius (the 50 % one, in degrees).
    assert region.radius_deg == pytest.approx(err90 / 60) and region.containment == 0.9
    props = notice.properties
    assert props["src_err_50_deg"] == pytest.approx(err50 / 60)
    assert props["far"] == pytest.approx(far / SECONDS_PER_YEAR)
    assert props["far_stated"] == pytest.approx(far) and props["far_unit"] == "yr^-1"
    assert props["time_window_s"] == pytest.approx(window) and props["revision"] == rev
    assert props["pair"] == "IceCube-HAWC" and props["ivorn"].startswith(amon.STREAM)
    assert notice.flags == ("statistical_error_only",)
    assert not notice.test and not notice.retraction


def test_far_unit_is_read_not_assumed() -> None:
    hz = amon.parse(_edit('value="3.6492e+00" ucd="stat.probability" unit="yr^-1"',
                          'value="1e-7" ucd="stat.probability" unit="Hz"'), topic="")
    assert hz.properties["far"] == pytest.approx(1e-7)
    with pytest.raises(InvalidValue, match="FAR unit 'dn' is not a rate"):
        amon.parse(_edit('unit="yr^-1"', 'unit="dn"'), topic="")


def test_without_src_err_90_error2radius_is_the_50_percent_circle() -> None:
    raw = _edit('<Param name="src_err_90" value="18.59" unit="arcmin">', '<Param name="x">')
    region = amon.parse(raw, topic="").region
    assert region is not None
    assert region.radius_deg == pytest.approx(0.17) and region.containment == 0.5


def test_retraction_private_and_test_bits() -> None:
    retracted = amon.parse(_edit('name="retraction" value="0"', 'name="retraction" value="1"'),
                           topic="")
    assert retracted.retraction and retracted.region is None
    private = amon.parse(_edit('name="private" value="0"', 'name="private" value="1"'),
                         topic="")
    assert "private" in private.flags
    internal = amon.parse(_edit('name="InternalTest" value="false"',
                                'name="InternalTest" value="true"'), topic="")
    role = amon.parse(_edit('role="observation"', 'role="test"'), topic="")
    assert internal.test and role.test


TEXT = LATEST.read_text()


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (TEXT[:-200].encode(), MalformedMessage, "not well-formed"),
        (b'<!DOCTYPE x [<!ENTITY e "e">]>' + TEXT.encode(), HostileMessage, "DOCTYPE"),
        (_edit('name="Event_ID" value="142904"', 'name="Event_ID" value=""'), MissingField,
         "Event_ID"),
        (_edit('value="142904"', 'value="14x"'), InvalidValue, "not an integer"),
        (_edit('name="Packet_Type" value="172"', 'name="Packet_Type" value="173"'),
         InvalidValue, "AMON_NU_EM_COINC"),
        (_edit("AMON#NU_EM_Event", "AMON#ICECUBE_GOLD_Event"), InvalidValue, "not an AMON NU_EM"),
        (_edit('value="18.59" unit="arcmin"', 'value="-3" unit="arcmin"'), InvalidValue,
         "src_err_90"),
        (_edit('value="18.59" unit="arcmin"', 'value="nan" unit="arcmin"'), InvalidValue,
         "not finite"),
        (_edit('value="18.59" unit="arcmin"', 'value="18.59" unit="furlong"'), InvalidValue,
         "not an angle unit"),
        (_edit('value="3.6492e+00"', 'value="-1"'), InvalidValue, "negative"),
        (_edit('name="retraction" value="0"', 'name="retraction" value="7"'), InvalidValue,
         "not 0 or 1"),
        (_edit("<C1>313.1800</C1>", "<C1>400</C1>"), InvalidValue, "RA"),
        (_edit("<ISOTime>2023-10-20T04:29:20.00</ISOTime>", "<ISOTime>soon</ISOTime>"),
         InvalidValue, "ISO 8601"),
    ],
)
def test_hostile_variants_raise_bad_message(raw: bytes, error: type[BadMessage],
                                            match: str) -> None:
    with pytest.raises(error, match=match):
        amon.parse(raw, topic="")


def assert_sniff_claims_only(handler: ModuleType, own: Path) -> None:
    """*handler* sniffs every packet of the folder *own* and no other VOEvent (the corpus's
    and this family's sibling folders: AMON NU_EM, HAWC, IPN), nor does any other handler
    claim its packets."""
    mine = sorted(own.glob("*.xml"))
    others = [p for p in [*(CORPUS / "voevent").rglob("*.xml"), *DATA.parent.glob("*/*.xml")]
              if p.parent != own]
    assert mine and others and all(handler.sniff(p.read_bytes()) for p in mine)
    assert not any(handler.sniff(p.read_bytes()) for p in others)
    registry = Registry()
    assert all(registry.detect(p.read_bytes()) is handler for p in mine)


def test_sniff_claims_only_nu_em() -> None:
    assert_sniff_claims_only(amon, DATA)
    assert not any(icecube.sniff(p.read_bytes()) for p in FILES)
