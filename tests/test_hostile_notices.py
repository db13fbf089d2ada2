"""Hostile notices meet precise refusals, never the pipeline's catch-all.

Each case of :mod:`tests.hostile.notices` is run as the pipeline runs a notice:
its handler detected by sniffing, parsed, its times checked against the
handler's FIRST_LIGHT and the clock (:func:`mma.ingest.guard.parse_checked`),
its region built with the default caps. Every field mutation of one notice of
each family must end in a Notice, Ignored, or a BadMessage whose reason names the
field. "Through the catch-all" is any other exception: the pipeline would
dead-letter it with a traceback and a terse reason.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mma.config import load_config
from mma.db.engine import make_engine, upgrade
from mma.db.schema import dead_letters
from mma.epochs import EARLIEST, check_item
from mma.errors import BadMessage, Ignored, InvalidValue, MalformedMessage
from mma.formats.gcn_json import load_json
from mma.ingest import Pipeline
from mma.ingest.guard import parse_checked
from mma.ingest.stage import Handler
from mma.models import Notice
from mma.registry import Registry
from mma.skymaps.region import build_region
from mma.skymaps.spec import region_table
from tests.conftest import CORPUS
from tests.hostile import Case
from tests.hostile.notices import (
    INFLATED_CAP,
    JSON_BASES,
    VOEVENT_BASES,
    Mutation,
    cases,
    lvk_with_map,
    mutations,
)
from tests.skymaps.hostile_maps import flat_map as make_flat_map

REGISTRY = Registry.discover()
HANDLERS = {h.NAME: h for h in REGISTRY.handlers}
NOTICE_HANDLERS = [h for h in REGISTRY.handlers if h.KIND == "notice"]
CASES = cases()


def outcome(handler: Handler, raw: bytes) -> tuple[str, str]:
    """``(stored | ignored | dead_letter, reason)`` as the notice path decides it.

    Anything but a BadMessage or Ignored propagates: that is the catch-all.
    """
    try:
        item = parse_checked(handler, raw, topic="")
        if isinstance(item, Notice) and item.region is not None and not item.retraction:
            table = region_table(item.region, max_bytes=INFLATED_CAP)
            if table is not None:
                build_region(table)
    except Ignored:
        return "ignored", ""
    except BadMessage as exc:
        return "dead_letter", f"{type(exc).__name__}: {exc}"
    return "stored", ""


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case) -> None:
    got, reason = outcome(REGISTRY.detect(case.data), case.data)
    assert got == case.outcome, reason
    assert case.reason.lower() in reason.lower(), reason


def test_cases_are_named_once_and_say_why() -> None:
    assert len({c.name for c in CASES}) == len(CASES)
    assert all(c.reason for c in CASES if c.outcome == "dead_letter")
    assert {c.outcome for c in CASES} == {"dead_letter", "stored"}


def test_the_326_kb_notice_costs_its_inflated_map_once() -> None:
    """The issue's notice: a flat NSIDE-1024 map with no mergeable siblings in 326 kB.

    It was accepted at 6.3 GB peak and stored as 12,582,912 tiles (871 MB of
    SQLite). Now: refused after four blocks of pixels, at the cost of its inflated
    map (100.7 MB) held once.
    """
    raw = lvk_with_map(make_flat_map(1024))
    assert len(raw) < 340_000
    tracemalloc.start()
    try:
        got, reason = outcome(HANDLERS["lvk"], raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == "dead_letter" and "HostileMessage" in reason and "tiles" in reason
    assert peak < 1.3 * 100_669_440, peak / 1e6


def _failures(mutations: list[Mutation]) -> list[str]:
    """What went wrong: a refusal that names no field, or unusable accepted properties."""
    failures = []
    for m in mutations:
        try:
            item = parse_checked(HANDLERS[m.handler], m.data, topic="")
        except Ignored:
            continue
        except BadMessage as exc:
            if not any(word.lower() in str(exc).lower() for word in m.fields):
                failures.append(f"{m.name}: {type(exc).__name__}: {exc} names none of {m.fields}")
            continue
        assert isinstance(item, Notice)
        try:  # what is stored must serialise, with numbers a float holds
            json.dumps(item.properties, allow_nan=False, default=str)
            _check_numbers(item.properties)
        except (ValueError, OverflowError) as exc:
            failures.append(f"{m.name}: accepted with properties that break: {exc}")
    return failures


def _check_numbers(value: Any) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _check_numbers(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_numbers(item)
    elif isinstance(value, int | float) and not isinstance(value, bool) \
            and not math.isfinite(float(value)):
        raise ValueError(f"{value!r} is not finite")


BASES = [*JSON_BASES, *VOEVENT_BASES]


@pytest.mark.parametrize(("handler", "path"), BASES, ids=[f"{h}:{p.stem}" for h, p in BASES])
def test_every_field_mutation_is_accepted_or_refused_naming_the_field(handler: str,
                                                                      path: Any) -> None:
    family = mutations(handler, path)
    assert len(family) > 20
    failures = _failures(family)
    assert not failures, "\n".join(failures[:40])


@pytest.mark.slow
def test_accepted_mutations_build_their_regions() -> None:
    """Every distinct region of an accepted mutation builds (~110 regions, ~25 s).

    A notice accepted with a region no density can honour would be dead-lettered
    by the region code with a reason that cannot name the notice's field.
    """
    specs: dict[Any, str] = {}
    for m in mutations():
        try:
            item = parse_checked(HANDLERS[m.handler], m.data, topic="")
        except (Ignored, BadMessage):
            continue
        assert isinstance(item, Notice)
        if item.region is not None and not item.retraction:
            specs.setdefault(item.region, m.name)
    assert len(specs) > 50
    failures = []
    for spec, name in specs.items():
        try:
            table = region_table(spec, max_bytes=INFLATED_CAP)
            if table is not None:
                build_region(table)
        except BadMessage as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures)


def _corpus_notices() -> dict[str, list[Notice]]:
    """The corpus notices each handler parses (Ignored ones left out)."""
    out: dict[str, list[Notice]] = {}
    for path in sorted(CORPUS.rglob("*")):
        if path.suffix not in (".json", ".xml"):
            continue
        raw = path.read_bytes()
        try:
            handler = REGISTRY.detect(raw)
            item = handler.parse(raw, topic="")
        except (BadMessage, Ignored):
            continue
        if isinstance(item, Notice):
            out.setdefault(handler.NAME, []).append(item)
    return out


CORPUS_NOTICES = _corpus_notices()


@pytest.mark.parametrize("handler", NOTICE_HANDLERS, ids=lambda h: h.NAME)
def test_first_light_bounds_every_notice_family(handler: Handler) -> None:
    """FIRST_LIGHT is stated, aware UTC, before every corpus notice of the family, and
    a notice dated the day before it is refused with the date."""
    first = getattr(handler, "FIRST_LIGHT", None)
    assert isinstance(first, datetime) and first.utcoffset() == timedelta(0)
    assert EARLIEST <= first < datetime.now(UTC)
    for notice in CORPUS_NOTICES.get(handler.NAME, []):
        check_item(notice, handler)
    for notice in CORPUS_NOTICES.get(handler.NAME, [])[:1]:
        early = dataclasses.replace(notice, event_time=first - timedelta(days=1))
        with pytest.raises(InvalidValue, match=f"before {first.date().isoformat()}"):
            check_item(early, handler)


def test_gw170817_passes_the_time_checks() -> None:
    raw = (CORPUS / "voevent/gw/G298048-1-Initial_GW170817.xml").read_bytes()
    notice = parse_checked(HANDLERS["lvk_voevent"], raw)
    assert isinstance(notice, Notice) and notice.event_time.year == 2017


@pytest.mark.parametrize(("raw", "error", "words"), [
    (b'{"a": {"b": [1, ' + b"9" * 401 + b"]}}", InvalidValue,
     "a.b[1] is a 401-digit integer: not a finite number in range"),
    (b'{"a": -' + b"9" * 5000 + b"}", InvalidValue, "a is a 5000-digit integer"),
    (b'{"a": [{"far": NaN}]}', MalformedMessage,
     "a[0].far: JSON contains the non-standard constant NaN"),
    (b'{"x": {"y": -Infinity}}', MalformedMessage, "x.y: JSON contains the non-standard"),
    (b'{"x": 1e999}', MalformedMessage, "x: JSON number 1e999 overflows a float"),
    (b'{"a": {"b": "gst\\u0000lal"}}', MalformedMessage, "a.b: JSON text holds a NUL"),
    (b'{"a": ["ok", "\\udc00"]}', MalformedMessage, "a[1]: JSON text holds a NUL character "
                                                   "or a lone surrogate"),
])
def test_json_numbers_no_float_holds_are_refused_naming_their_path(
        raw: bytes, error: type[BadMessage], words: str) -> None:
    with pytest.raises(error) as info:
        load_json(raw, max_bytes=2**20)
    assert words in str(info.value)


def test_json_integers_a_float_holds_and_surrogate_pairs_are_kept() -> None:
    big = 10**300
    assert load_json(b'{"a": %d, "b": -7}' % big, max_bytes=2**20) == {"a": big, "b": -7}
    raw = b'{"e": "\\ud83d\\ude00", "p": "\\\\u0000"}'  # an emoji; a backslash, then u0000
    assert load_json(raw, max_bytes=2**20) == {"e": "\U0001f600", "p": "\\u0000"}


@pytest.mark.parametrize(("cap", "kind"), [(1_000, "dead_letter"), (1_000_000, "notice")])
def test_the_configured_tile_cap_is_the_one_applied(tmp_path: Path, cap: int, kind: str) -> None:
    """``limits.max_region_tiles`` reaches the region builder (a BAYESTAR map: ~19k tiles)."""
    config = load_config(environ={"MMA_PATHS__STATE_DIR": str(tmp_path),
                                  "MMA_LIMITS__MAX_REGION_TILES": str(cap)},
                         system_file=tmp_path / "absent.toml")
    engine = make_engine(f"sqlite:///{tmp_path / 'cap.sqlite'}")
    upgrade(engine)
    raw = (CORPUS / "gcn-json/igwn-gwalert/S230528ay-preliminary.json").read_bytes()
    outcome = Pipeline(engine, config).process(Registry().by_name("lvk"), raw, origin="cap")
    assert outcome.kind == kind
    if kind == "dead_letter":
        with engine.connect() as conn:
            assert "tiles" in conn.execute(select(dead_letters.c.error)).scalar_one()
    engine.dispose()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_json_notice_in_utf16_or_utf32_says_so(encoding: str) -> None:
    """From a topic (no sniffing first): the reason names the encoding, not "invalid JSON"."""
    raw = (CORPUS / "gcn-json/igwn-gwalert/S230528ay-preliminary.json").read_text()
    with pytest.raises(MalformedMessage, match="only UTF-8 is accepted"):
        Registry().by_name("lvk").parse(raw.encode(encoding), topic="igwn.gwalert")
