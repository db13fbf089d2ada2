"""Hostile alert-side files: bounded memory and time, checked ids, precise reasons.

Every case of :mod:`tests.hostile.alerts` goes through what ``mma replay`` does
with a file (content detection, split, parse, time check) and must end as the
case says, with its reason, within :data:`PEAK_BYTES` and :data:`SECONDS`. The
memory is measured twice: Python's allocations with :mod:`tracemalloc` in this
process, and the resident set of a subprocess (``VmHWM`` reset per case), which
also sees what pyarrow and zlib allocate outside Python.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import tracemalloc
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import pytest

from mma.errors import (
    BadMessage,
    HostileMessage,
    InvalidValue,
    MalformedMessage,
    MissingField,
    UnknownFormat,
)
from mma.formats import avro_walk, ids
from mma.formats.encoding import wide_text
from mma.handlers import ampel, antares, babamul, fink, pittgoogle, rubin, ztf
from mma.ingest.guard import parse_checked
from mma.registry import Registry
from tests.conftest import CORPUS
from tests.hostile import Case, alerts

PEAK_BYTES = 200 * 2**20
"""Ceiling of the memory one case may take, Python's or the process's [bytes]."""
SECONDS = 3.0
"""Ceiling of the time one case may take [s] (a million rows took 63 s before)."""

NAMES = (
    "alert_fink_million_rows", "alert_fink_history_bomb", "alert_avro_million_records",
    "alert_ztf_history_bomb", "alert_ztf_inflation_bomb", "alert_rubin_history_over_cap",
    "alert_antares_forged_locus", "alert_pittgoogle_forged_id", "alert_ztf_terminal_id",
    "alert_rubin_unknown_schema", "alert_rubin_wrong_magic", "alert_utf16_locus",
    "alert_utf16be_no_bom", "alert_utf32_locus", "alert_parquet_corrupt_footer",
    "alert_parquet_truncated", "alert_avro_corrupt_header", "alert_avro_unknown_schema",
    "alert_ztf_dated_2099", "alert_ztf_before_first_light", "alert_valid_ztf",
)  # fmt: skip
ALERT_HANDLERS = (ampel, antares, babamul, fink, pittgoogle, rubin, ztf)
UNSAFE = ("\n", "\r", "\x1b", "\x07", "\u202e")


@cache
def _cases() -> dict[str, Case]:
    return {case.name: case for case in alerts.cases()}


def _as_replay(registry: Registry, case: Case) -> tuple[int, BadMessage | None]:
    """Records stored and the first refusal, as ``mma replay`` would meet them."""
    stored, error = 0, None
    try:
        for handler, payload in registry.iter_file(case.data, case.filename):
            try:
                parse_checked(handler, payload)
                stored += 1
            except BadMessage as exc:
                error = error or exc
    except BadMessage as exc:
        error = error or exc
    return stored, error


def test_the_generator_gives_every_case_once() -> None:
    assert tuple(_cases()) == NAMES
    assert [c.outcome for c in _cases().values()].count("stored") == 1


@pytest.mark.parametrize("name", NAMES)
def test_case_outcome_reason_memory_and_time(name: str) -> None:
    case = _cases()[name]
    registry = Registry()
    tracemalloc.start()
    start = time.perf_counter()
    try:
        stored, error = _as_replay(registry, case)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"{peak / 2**20:.0f} MiB"
    assert seconds < SECONDS
    if case.outcome == "stored":
        assert error is None and stored == 1
        return
    assert error is not None and stored == 0
    assert case.reason.lower() in str(error).lower()
    assert type(error) is not BadMessage
    assert "no handler recognises" not in str(error)  # never the catch-all's reason
    assert not any(c in str(error) for c in UNSAFE)  # the sender's text shown escaped


_MEASURE = """
import json, re, sys, time
sys.path.insert(0, sys.argv[1])
from mma.errors import BadMessage
from mma.ingest.guard import parse_checked
from mma.registry import Registry

def status(key):
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read())[1]) * 1024

registry = Registry()
out = {}
for path in sys.argv[2:]:
    raw = open(path, "rb").read()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM, the peak resident set, to the current one
    base, start = status("VmRSS"), time.perf_counter()
    try:
        for handler, payload in registry.iter_file(raw, path):
            try:
                parse_checked(handler, payload)
            except BadMessage:
                pass
    except BadMessage:
        pass
    out[path] = [status("VmHWM") - base, time.perf_counter() - start]
print(json.dumps(out))
"""


def test_each_case_peak_resident_memory(tmp_path: Path) -> None:
    # Linux only, like the service this is; never skipped (CI runs every test).
    assert Path("/proc/self/clear_refs").exists(), "needs /proc/self/clear_refs"
    paths = []
    for case in _cases().values():
        path = tmp_path / f"{case.name}-{case.filename}"
        path.write_bytes(case.data)
        paths.append(str(path))
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", _MEASURE, root, *paths], capture_output=True,
                          text=True, timeout=120, check=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    for path, (peak, seconds) in measured.items():
        assert peak < PEAK_BYTES, f"{Path(path).name}: {peak / 2**20:.0f} MiB"
        assert seconds < SECONDS, f"{Path(path).name}: {seconds:.1f} s"


# ---------------------------------------------------------------- ids
@pytest.mark.parametrize(("value", "error", "fragment"), [
    (None, MissingField, "missing"),
    ("", MissingField, "missing"),
    (42, InvalidValue, "not a string"),
    ("ZTF18abudxnw\n2026-12-05 CRITICAL forged", InvalidValue, "printable ASCII"),
    ("ZTF\x1b[2J\u202e\x07\n", InvalidValue, "printable ASCII"),
    ("ZTF18 abudxnw", InvalidValue, "printable ASCII"),
    ("ZTF18ABUDXNW", InvalidValue, "not a ZTF object id"),
    ("ZTF18abudxn", InvalidValue, "not a ZTF object id"),
    ("Z" * 5000, InvalidValue, "longer than 64"),
])
def test_text_id_refuses_and_shows_escaped(value: Any, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment) as info:
        ids.text_id(value, field="objectId", pattern=ids.ZTF_OBJECT, what="a ZTF object id")
    message = str(info.value)
    assert message.startswith("objectId") and len(message) < 200
    assert not any(c in message for c in UNSAFE)


@pytest.mark.parametrize(("value", "error"), [
    (None, MissingField), (True, InvalidValue), ("123", InvalidValue), (0, InvalidValue),
    (-5, InvalidValue), (2**63, InvalidValue), (10**5000, InvalidValue), (1.5, InvalidValue),
], ids=["none", "bool", "text", "zero", "negative", "2**63", "5001_digits", "float"])
def test_integer_id_is_a_positive_64_bit_int(value: Any, error: type) -> None:
    with pytest.raises(error, match="diaObjectId") as info:
        ids.integer_id(value, field="diaObjectId")
    assert len(str(info.value)) < 200  # a 5000-digit number is not printed
    assert ids.integer_id(2**63 - 1, field="x") == 2**63 - 1


def test_every_corpus_id_matches_its_survey_pattern() -> None:
    ztf_ids = [p.name.split("_")[0] for p in (CORPUS / "alerts/ztf/avro").glob("ZTF*.avro")]
    ztf_ids += ["ZTF26aauybpk", "ZTF19acfixfe"]  # Babamul, Pitt-Google
    night = [json.loads(p)["objectId"] for part in sorted(
        (CORPUS / "alerts/ztf/fink-2024-01-15").glob("*.parquet"))
        for p in fink.split(part.read_bytes())]
    assert len(night) == 849
    for value in ztf_ids + night:
        ids.text_id(value, field="objectId", pattern=ids.ZTF_OBJECT)
    ids.text_id("ANT2019b5sdo", field="locus_id", pattern=ids.ANTARES_LOCUS)
    for value in ("170595943059554358", "7912941781254298", "25409118864932952"):
        ids.text_id(value, field="diaObjectId", pattern=ids.LSST_ID)
    assert ids.lsst_id_text(170455132746547257, field="x") == "170455132746547257"


def test_each_alert_handler_checks_its_ids() -> None:
    locus = json.loads((CORPUS / "alerts/brokers/antares_lsst_locus_ANT2019b5sdo.json").read_text())
    locus["properties"]["survey"]["lsst"]["dia_object_id"] = ["1705\n95943059554358"]
    locus["alerts"] = [{k: v for k, v in a.items() if k != "lsst_diaSource_diaObjectId"}
                       for a in locus["alerts"]]
    with pytest.raises(InvalidValue, match="dia_object_id"):
        antares.parse(json.dumps(locus).encode(), topic="")
    with pytest.raises(InvalidValue, match=r"locus_id 'ANT2019b5sdo\\x1b"):
        antares.parse(alerts.antares_locus("ANT2019b5sdo\x1b[2J"), topic="")
    with pytest.raises(InvalidValue, match="objectId"):
        pittgoogle.parse(alerts.pittgoogle("ZTF19ACFIXFE"), topic="")
    with pytest.raises(InvalidValue, match="objectId"):
        ztf.parse(alerts.ztf_with_id("ZTF18abud\u202e"), topic="")
    raw = (CORPUS / "alerts/brokers/boom_babamul_ztf_alert_ZTF26aauybpk.avro").read_bytes()
    with pytest.raises(InvalidValue, match=r"survey_matches\.lsst\.objectId"):
        babamul.parse(raw.replace(b"170455132746547257", b"17045513274654725\x07"), topic="")
    report = _ampel_record()
    report["object"]["id"] = 2**64
    with pytest.raises(InvalidValue, match=r"LSSTReport\.object\.id"):
        ampel.alert_from_report(report)


def _ampel_record() -> dict[str, Any]:
    with (CORPUS / "alerts/brokers/ampel_lsst_report.avro").open("rb") as fh:
        record = next(iter(fastavro.reader(fh)))
    assert isinstance(record, dict)
    return record


# ---------------------------------------------------------------- FIRST_LIGHT
@pytest.mark.parametrize("handler", ALERT_HANDLERS, ids=lambda h: h.NAME)
def test_first_light_is_aware_utc(handler: Any) -> None:
    when = handler.FIRST_LIGHT
    assert isinstance(when, datetime) and when.utcoffset() == timedelta(0)
    assert datetime(2014, 1, 1, tzinfo=when.tzinfo) <= when <= datetime(2026, 1, 1,
                                                                      tzinfo=when.tzinfo)


# Refused by their handlers for reasons of their own (the pre-survey ZTF prototype,
# a v7.1 sample packet with a Unix time where an MJD belongs).
KNOWN_REFUSALS = {"prototype_87704463155000.avro": "prototype",
                  "fakeAlert.avro": "MJD (TAI) 1480360995.0"}


def test_every_corpus_alert_is_within_its_source_epochs() -> None:
    """Every alert file of the corpus passes the time check with its handler's FIRST_LIGHT."""
    registry, checked = Registry(), 0
    for path in sorted((CORPUS / "alerts").rglob("*.avro")) + sorted(
            (CORPUS / "alerts").rglob("*.parquet")) + sorted(
            (CORPUS / "alerts/brokers").glob("*.json")):
        for handler, payload in registry.iter_file(path.read_bytes(), path):
            try:
                parse_checked(handler, payload)
                checked += 1
            except BadMessage as exc:
                assert KNOWN_REFUSALS.get(path.name, "\0") in str(exc), f"{path.name}: {exc}"
    assert checked >= 849 + 9 + 10 + 3 + 1 + 4


# ---------------------------------------------------------------- reasons
@pytest.mark.parametrize(("encoding", "name"), [
    ("utf-16", "UTF-16-LE"), ("utf-16-le", "UTF-16-LE"), ("utf-16-be", "UTF-16-BE"),
    ("utf-32", "UTF-32-LE"), ("utf-32-le", "UTF-32-LE"), ("utf-32-be", "UTF-32-BE"),
])
def test_wide_text_is_named(encoding: str, name: str) -> None:
    for text in ('{"locus_id": "ANT2019b5sdo"}', '<?xml version="1.0"?><voe:VOEvent/>'):
        raw = text.encode(encoding)
        assert (wide_text(raw) or "").startswith(name)
        with pytest.raises(MalformedMessage, match=f"{name}.*only UTF-8 is accepted"):
            Registry().detect(raw)


@pytest.mark.parametrize("raw", [
    b'{"locus_id": "ANT2019b5sdo"}', b"\x00" * 64, b"PAR1", b"", b"\xff\xfe",
    "caf\u00e9 \u00fcber".encode(), bytes(range(256)),
])
def test_wide_text_has_no_false_positive(raw: bytes) -> None:
    assert wide_text(raw) is None or raw == b"\xff\xfe"  # a bare mark is all it can tell


def test_unknown_content_keeps_the_generic_reason() -> None:
    with pytest.raises(UnknownFormat, match="no handler recognises content starting"):
        Registry().detect(b"GIF89a" + b"\x00" * 64)
    with pytest.raises(UnknownFormat, match="schema id 7, which no handler reads"):
        Registry().detect(b"\x00\x00\x00\x00\x07" + b"\x01" * 64)


def test_valid_control_is_the_corpus_packet() -> None:
    case = _cases()["alert_valid_ztf"]
    with io.BytesIO(case.data) as fh:
        record: Any = next(iter(fastavro.reader(fh)))
    assert record["objectId"] == "ZTF18abudxnw"


def test_rubin_history_cap_boundary() -> None:
    from mma.formats.rubin_decoders import MAX_HISTORY_ITEMS

    at_cap = rubin.parse(alerts.rubin_history(MAX_HISTORY_ITEMS), topic="")
    assert at_cap.history_source == "lsst.prvDiaSources"
    with pytest.raises(HostileMessage, match=f"prvDiaSources holds more than {MAX_HISTORY_ITEMS}"):
        rubin.parse(alerts.rubin_history(MAX_HISTORY_ITEMS + 1), topic="")


# ---------------------------------------------------------------- the Avro walker
def _walk(schema: dict[str, Any], data: bytes, per_array: int = 10) -> int:
    walk = avro_walk.walker(json.dumps(schema))
    return walk.record_end(data, 0, avro_walk.Limits(per_array=per_array, per_record=25))


def _record(*fields: tuple[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": "r", "fields": [{"name": n, "type": t} for n, t in fields]}


def test_walker_caps_arrays_maps_and_records() -> None:
    longs = {"type": "array", "items": "long"}
    z = alerts.zigzag
    assert _walk(_record(("a", longs)), z(10) + b"\x02" * 10 + z(0)) == 12
    with pytest.raises(HostileMessage, match="array a holds more than 10 items"):
        _walk(_record(("a", longs)), z(11))  # refused on the count, items never read
    words = {"type": "map", "values": "string"}
    with pytest.raises(HostileMessage, match="map w holds more than 10"):
        _walk(_record(("w", words)), z(6) + (z(1) + b"k" + z(1) + b"v") * 6 + z(5))
    three = _record(("a", longs), ("b", longs), ("c", longs))
    block = z(9) + b"\x02" * 9 + z(0)
    with pytest.raises(HostileMessage, match="more than 25 array and map items"):
        _walk(three, block * 3)
    # A negative count carries the block's size: the same items, accepted alike.
    assert _walk(_record(("a", longs)), z(-3) + z(3) + b"\x02" * 3 + z(0)) == 6


def test_walker_refuses_truncation_bad_unions_and_deep_nesting() -> None:
    with pytest.raises(MalformedMessage, match="truncated"):
        _walk(_record(("s", "string")), alerts.zigzag(50) + b"short")
    with pytest.raises(MalformedMessage, match="union branch byte 4"):
        _walk(_record(("u", ["null", "long"])), b"\x04")
    linked = {"type": "record", "name": "node", "fields": [{"name": "next",
                                                            "type": ["null", "node"]}]}
    with pytest.raises(HostileMessage, match="nests too deeply"):
        _walk(linked, b"\x02" * 100_000 + b"\x00")
    assert _walk(linked, b"\x02" * 50 + b"\x00") == 51
