"""The handler registry: discovery, the contract, topic claims and content detection."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from mma.errors import ConfigError, MalformedMessage, UnknownFormat
from mma.handlers import fink, lvk, ztf
from mma.registry import KINDS, Registry, discover
from tests.conftest import CORPUS


def _module(name: str = "fake", **attrs: Any) -> ModuleType:
    module = ModuleType(f"mma.handlers.{name}")
    defaults: dict[str, Any] = {
        "NAME": name,
        "KIND": "notice",
        "DEFAULT_TOPICS": (f"{name}.topic",),
        "parse": lambda raw, *, topic: None,
    }
    for key, value in {**defaults, **attrs}.items():
        if value is not None:
            setattr(module, key, value)
    return module


# Topics that are dead or not public as of 2026-08: no handler may subscribe to them by
# default (the handlers stay, for replays of archived notices).
DEAD_TOPIC_PREFIXES = (
    "gcn.classic.voevent.AGILE_",  # AGILE retired 2024-01-18
    "gcn.classic.voevent.INTEGRAL_",  # IBAS ended 2025-03-04
    "gcn.classic.voevent.LVC_",  # retired 2026-07-08 for igwn.gwalert
)
DEAD_TOPICS = (
    "gcn.notices.km3net.alert",  # not public
    "gcn.notice.superk.sn_alert",  # a misspelling of gcn.notices.superk.sn_alert
    "gcn.notices.icecube.test.gold_bronze_track_alerts",  # a test stream
    "gcn.classic.voevent.SWIFT_BAT_TRANS",  # re-reports BAT triggers: no GRB stream of its own
)


def test_no_default_topic_is_dead() -> None:
    topics = Registry().topics()
    assert not [t for t in topics if t.startswith(DEAD_TOPIC_PREFIXES) or t in DEAD_TOPICS]
    # The live replacements and the new families are claimed.
    registry = Registry()
    claims = {"igwn.gwalert": "lvk", "gcn.notices.superk.sn_alert": "snews",
              "gcn.notices.icecube.gold_bronze_track_alerts": "icecube",
              "gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK": "swift",
              "gcn.classic.voevent.AMON_NU_EM_COINC": "amon",
              "gcn.classic.voevent.HAWC_BURST_MONITOR": "hawc",
              "gcn.classic.voevent.IPN_POS": "ipn"}
    assert {topic: registry.for_topic(topic).NAME for topic in claims} == claims
    # The retired families stay, for mma replay.
    names = {handler.NAME for handler in registry.handlers}
    for name in ("agile", "integral", "lvk_voevent", "km3net"):
        assert name in names and registry.topics(name) == ()


def test_discovery_finds_the_handlers_and_honours_the_contract() -> None:
    modules = discover()
    assert {lvk, ztf, fink} <= set(modules)
    registry = Registry()
    for handler in registry.handlers:  # every module in the tree, not only these three
        assert handler.KIND in KINDS and isinstance(handler.DEFAULT_TOPICS, tuple)
    assert registry.by_name("lvk") is lvk
    assert registry.for_topic("igwn.gwalert") is lvk
    assert "igwn.gwalert" in registry.topics()
    assert registry.topics("ztf") == ()


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"NAME": None}, "NAME"),
        ({"NAME": "Bad Name"}, "NAME"),
        ({"KIND": "event"}, "KIND"),
        ({"DEFAULT_TOPICS": ["a.topic"]}, "DEFAULT_TOPICS"),
        ({"DEFAULT_TOPICS": ("",)}, "DEFAULT_TOPICS"),
        ({"parse": None}, "parse"),
        ({"parse": "not callable"}, "parse"),
        ({"sniff": True}, "sniff"),
        ({"split": 3}, "split"),
    ],
)
def test_contract_violations_are_config_errors(attrs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Registry([_module(**attrs)])


def test_duplicate_names_and_topics() -> None:
    with pytest.raises(ConfigError, match="two handlers are named 'a'"):
        Registry([_module("a"), _module("b", NAME="a")])
    with pytest.raises(ConfigError, match="claimed by 'a' and 'b'"):
        Registry([_module("a"), _module("b", DEFAULT_TOPICS=("a.topic",))])


def test_topic_override_from_configuration() -> None:
    registry = Registry(topics={"ztf": ["^ztf_.*_programid1$"], "lvk": ["igwn.gwalert.test"]})
    assert registry.for_topic("ztf_20240115_programid1") is ztf
    assert registry.for_topic("igwn.gwalert.test") is lvk
    with pytest.raises(UnknownFormat, match=r"igwn\.gwalert"):
        registry.for_topic("igwn.gwalert")  # remapped away
    with pytest.raises(UnknownFormat, match="no handler claims"):
        registry.for_topic("ztf_20240115_programid2")


def test_topic_override_mistakes() -> None:
    with pytest.raises(ConfigError, match="unknown handler"):
        Registry(topics={"nosuch": ["x"]})
    with pytest.raises(ConfigError, match="list of names"):
        Registry(topics={"lvk": "igwn.gwalert"})  # a string would be 12 one-letter topics
    with pytest.raises(ConfigError, match="pattern"):
        Registry(topics={"ztf": ["^ztf_(unclosed"]})
    with pytest.raises(ConfigError, match="no handler named"):
        Registry().by_name("nosuch")


def test_exact_claims_win_and_overlapping_patterns_are_refused() -> None:
    registry = Registry(
        [_module("a", DEFAULT_TOPICS=("^x.*",)), _module("b", DEFAULT_TOPICS=("xy",))]
    )
    assert registry.for_topic("xy").NAME == "b"
    assert registry.for_topic("xz").NAME == "a"
    clash = Registry([_module("a", DEFAULT_TOPICS=("^x",)), _module("b", DEFAULT_TOPICS=("^xy",))])
    with pytest.raises(ConfigError, match="matches patterns"):
        clash.for_topic("xyz")


@pytest.mark.parametrize(
    ("path", "handler"),
    [
        ("gcn-json/igwn-gwalert/S230518h-update.json", lvk),
        ("gcn-json/igwn-gwalert/MS181101ab-retraction.json", lvk),
        ("alerts/ztf/avro/ZTF18abudxnw_2695378462115010012.avro", ztf),
        ("alerts/ztf/avro/prototype_87704463155000.avro", ztf),
        (
            "alerts/ztf/fink-2024-01-15/part-00005-e55a3e2d-0f29-423f-8621-3547113ad41b-c000.snappy.parquet",
            fink,
        ),
    ],
)
def test_detect_from_content(path: str, handler: ModuleType) -> None:
    assert Registry().detect((CORPUS / path).read_bytes()) is handler


def test_detect_unknown_and_crashing_sniffs() -> None:
    def crash(raw: bytes) -> bool:
        raise RuntimeError("bug")

    registry = Registry([_module("a", sniff=crash), _module("b", sniff=lambda raw: raw == b"B")])
    assert registry.detect(b"B").NAME == "b"
    with pytest.raises(UnknownFormat, match="no handler recognises"):
        registry.detect(b"\x00\x01 nothing known")


def test_iter_file_applies_split() -> None:
    registry = Registry()
    lvk_raw = (CORPUS / "gcn-json/igwn-gwalert/S230518h-update.json").read_bytes()
    assert list(registry.iter_file(lvk_raw, "S230518h-update.json")) == [(lvk, lvk_raw)]
    night = sorted((CORPUS / "alerts/ztf/fink-2024-01-15").glob("*.parquet"))
    total = 0
    for part in night:
        pairs = list(registry.iter_file(part.read_bytes(), part))
        assert {h for h, _ in pairs} == {fink}
        total += len(pairs)
    assert total == 849
    packet = (CORPUS / "alerts/ztf/avro/ZTF18abudxnw_2695378462115010012.avro").read_bytes()
    [(handler, payload)] = registry.iter_file(packet, "p.avro")
    assert handler is ztf and ztf.parse(payload, topic="").object_id == "ZTF18abudxnw"


def test_iter_file_errors_name_the_path() -> None:
    registry = Registry()
    with pytest.raises(UnknownFormat, match=r"^mystery\.bin: no handler"):
        list(registry.iter_file(b"\x00" * 32, "mystery.bin"))
    broken = b"PAR1" + b"\x00" * 64 + b"PAR1"
    # Parquet is recognised by its magic: the reason is the corrupt footer, not "no handler".
    with pytest.raises(MalformedMessage, match=r"^broken\.parquet: corrupt parquet footer"):
        list(registry.iter_file(broken, "broken.parquet"))


def test_fallback_handlers_are_tried_last() -> None:
    """A catch-all sorted first by NAME still loses to a specific handler."""
    import types

    def make(name: str, fallback: bool) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.NAME, mod.KIND, mod.DEFAULT_TOPICS = name, "notice", ()  # type: ignore[attr-defined]
        mod.parse = lambda raw, *, topic: None  # type: ignore[attr-defined]
        mod.sniff = lambda raw: True  # type: ignore[attr-defined]
        if fallback:
            mod.FALLBACK = True  # type: ignore[attr-defined]
        return mod

    registry = Registry([make("aaa_catch_all", True), make("zzz_specific", False)])
    assert registry.detect(b"{}").NAME == "zzz_specific"
