"""The VOEvent catch-all: other streams are Ignored with a reason, never dead-lettered."""

from __future__ import annotations

from pathlib import Path

import pytest

from mma.errors import HostileMessage, Ignored, MalformedMessage
from mma.handlers import voevent_other
from mma.registry import Registry
from tests.conftest import CORPUS
from tests.handlers.test_voevent_format import read_xml

VOEVENT = CORPUS / "voevent"
IGNORED = {
    "other/ASASSN_2016-09-25.47_2016fvf_PTSS-16nqb_PS16ejf.xml": "ASAS-SN",
    "other/Gaia16aac.xml": "Gaia",
    "other/MOA_Lensing_Event_2015-07-10T14_50_54.00.xml": "MOA",
    "other/no_namespace_packet.xml": "broker test",
    "fermi-gbm/finkmm_fermi_voevent_number=2842.xml": "Fermi LAT",
    "lvk-internal-templates/einsteinprobe_grb_template.xml": "LVK-internal",
    "lvk-internal-templates/fermi_subgrbtargeted_template.xml": "LVK-internal",
    "lvk-internal-templates/svom_grb_template.xml": "LVK-internal",
    "lvk-internal-templates/swift_subgrbtargeted_template.xml": "LVK-internal",
}
CLAIMED = sorted(p for p in VOEVENT.rglob("*.xml")
                 if str(p.relative_to(VOEVENT)) not in IGNORED)  # fmt: skip
OTHER_HELPERS = ("icecube-amon", "snews")


@pytest.mark.parametrize(("name", "why"), sorted(IGNORED.items()))
def test_other_streams_are_ignored_with_a_reason(name: str, why: str) -> None:
    raw = (VOEVENT / name).read_bytes()
    assert voevent_other.sniff(raw)
    assert Registry().detect(raw).NAME == "voevent_other"  # nobody else claims it
    with pytest.raises(Ignored) as info:
        voevent_other.parse(raw, topic="")
    stream = read_xml(VOEVENT / name)["ivorn"].split("#")[0]
    assert why in str(info.value) and stream in str(info.value)


@pytest.mark.parametrize("path", CLAIMED, ids=lambda p: p.name)
def test_never_steals_another_handlers_stream(path: Path) -> None:
    raw = path.read_bytes()
    assert not voevent_other.sniff(raw)
    if path.parent.name in OTHER_HELPERS:  # AMON/IceCube and SNEWS have their own handlers
        assert Registry().detect(raw).NAME in ("icecube", "snews")


def test_unknown_stream_is_ignored_generically() -> None:
    raw = b"<VOEvent ivorn='ivo://example.org/obs#x1' role='observation'/>"
    with pytest.raises(Ignored, match=r"without an mma handler: ivo://example\.org/obs"):
        voevent_other.parse(raw, topic="gcn.classic.voevent.MOA")


def test_broken_or_hostile_xml_is_never_ignored() -> None:
    text = (VOEVENT / "other/Gaia16aac.xml").read_bytes()
    with pytest.raises(MalformedMessage):
        voevent_other.parse(text[:-30], topic="")
    hostile = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + text
    with pytest.raises(HostileMessage):
        voevent_other.parse(hostile, topic="")


def test_is_a_fallback() -> None:
    assert voevent_other.FALLBACK is True and voevent_other.DEFAULT_TOPICS == ()
