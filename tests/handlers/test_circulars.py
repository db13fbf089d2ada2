"""GCN Circulars: real circulars to the event they are about, its aliases, its retraction."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mma.errors import HostileMessage, Ignored, InvalidValue, MalformedMessage, MissingField
from mma.handlers import circulars
from mma.ingest.notices import ATTACH_ONLY
from mma.registry import Registry

DATA = Path(__file__).resolve().parent.parent / "data" / "circulars"
TOPIC = "gcn.circulars"

# circular → (event id, aliases, messenger, retraction), read off each real circular.
EXPECTED: dict[int, tuple[str, tuple[str, ...], str, bool]] = {
    34599: ("S230830b", (), "gw", True),  # "...: Retraction of GW compact binary merger..."
    34367: ("S230808i", (), "gw", True),  # lower-case "retraction of a GW unmodeled..."
    34600: ("S230715bw", (), "gw", True),  # "Reissue of Retraction"
    28892: ("IceCube-134701_49508272", (), "neutrino", True),  # "...49508272.amon retraction"
    # IceCube's own wording for a withdrawn alert is not a retraction: mma's is sticky.
    34528: ("IceCube-230823A", (), "neutrino", False),
    # The AMON URL of the initial alert names the run and event of IceCube-230823A.
    34527: ("IceCube-230823A", ("IceCube-138283_14780365",), "neutrino", False),
    33633: ("IceCube-230416A", ("IceCube-137840_57034692",), "neutrino", False),
    34479: ("GRB230818A", ("Swift-1186032",), "grb", False),  # "(trigger=1186032)"
    34515: ("GRB230818A", ("Swift-1186032",), "grb", False),  # "(trigger #1186032)"
    34387: ("GRB230812B", ("FermiGBM-713559497",), "grb", False),  # "trigger 713559497/230812790"
    34714: ("GRB230915A", ("FermiGBM-716449174",), "grb", False),  # GUANO: "Fermi GBM Trig"
    34617: ("GRB230904B", ("FermiGBM-715526984",), "grb", False),  # "is not a GRB"
    34532: ("Swift-1186908", (), "grb", False),  # "Swift Trigger 1186908 is not a GRB"
    34765: ("FermiGBM-717299390", (), "grb", False),  # "trigger 717299390/230925076"
    34764: ("FermiGBM-717313591", (), "grb", False),  # bn first: "trigger 230925241/717313591"
    # "...is not associated with LIGO/Virgo/KAGRA S230807f": never merged into the GW.
    34372: ("S230807f", (), "gw", False),
    34616: ("S230904n", (), "gw", False),  # an IceCube neutrino found for the GW
    # An INTEGRAL "Weak trigger #10373" cited after Swift/BAT is not a Swift trigger.
    34540: ("GRB230824A", (), "grb", False),
    34414: ("GRB230812B", (), "grb", False),  # cites GRB 220627A in its body
    34713: ("S230914ak", (), "gw", False),  # cites GRB 170817A in its body
    # The O2 GraceID after "LIGO/Virgo"; the GBM trigger is another messenger's event.
    21506: ("G298048", (), "gw", False),
}


def _raw(n: int) -> bytes:
    return (DATA / f"{n}.json").read_bytes()


def _doc(n: int) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_raw(n))
    return doc


def _bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize("n", sorted(EXPECTED))
def test_each_real_circular(n: int) -> None:
    raw, doc = _raw(n), _doc(n)
    event_id, aliases, messenger, retraction = EXPECTED[n]
    assert circulars.sniff(raw)
    notice = circulars.parse(raw, topic=TOPIC)
    assert (notice.event_id, notice.aliases) == (event_id, aliases)
    assert (notice.messenger, notice.retraction) == (messenger, retraction)
    assert notice.instrument == "GCN-Circular" and notice.notice_type == "CIRCULAR"
    assert set(notice.flags) == {ATTACH_ONLY, "no_event_time"} and notice.region is None
    created = datetime.fromtimestamp(doc["createdOn"] / 1000, tz=UTC)
    assert notice.event_time == notice.issued_time == created
    assert notice.properties["circular_id"] == n
    assert notice.properties["subject"] == doc["subject"].strip()[:200]
    assert notice.properties["url"] == f"https://gcn.nasa.gov/circulars/{n}"
    assert not notice.test


def test_flag_is_the_ingest_paths() -> None:
    assert circulars.ATTACH_ONLY == ATTACH_ONLY


def test_event_id_field_comes_first() -> None:
    """Without the backfilled eventId, the subject's first name is the event: the GBM
    trigger; the superevent it is "not associated with" is still never an alias."""
    doc = _doc(34372)
    del doc["eventId"]
    notice = circulars.parse(_bytes(doc), topic=TOPIC)
    assert (notice.event_id, notice.aliases) == ("FermiGBM-713134237", ())


def test_body_names_of_other_bursts_are_never_aliases() -> None:
    """34414 cites GRB 220627A, 34713 GRB 170817A: the names appear, the aliases do not."""
    assert "GRB 220627A" in _doc(34414)["body"] and "GRB170817A" in _doc(34713)["body"]
    # A body trigger stated next to another burst's name is not taken either.
    doc = _doc(34479)
    doc["body"] = doc["body"].replace("located GRB 230818A", "located GRB 230818A and GRB 230817A")
    assert circulars.parse(_bytes(doc), topic=TOPIC).aliases == ()


def test_two_swift_triggers_in_the_body_trust_neither() -> None:
    doc = _doc(34479)
    doc["body"] += "\nThe BAT located GRB 230818A again (trigger=1186033).\n"
    assert circulars.parse(_bytes(doc), topic=TOPIC).aliases == ()


def test_negated_retraction_is_not_one() -> None:
    """Derived from 34599: a subject negating the retraction leaves the event alone."""
    doc = _doc(34599)
    doc["subject"] = "LIGO/Virgo/KAGRA S230830b: not a retraction, updated significance"
    assert not circulars.parse(_bytes(doc), topic=TOPIC).retraction


def test_grb_retraction_wording_never_retracts_the_burst() -> None:
    doc = _doc(34617)
    doc["subject"] = "GRB 230904B: retraction of the optical counterpart candidate"
    notice = circulars.parse(_bytes(doc), topic=TOPIC)
    assert notice.event_id == "GRB230904B" and not notice.retraction


@pytest.mark.parametrize("n", [34709, 34731])
def test_unrelated_or_ambiguous_circulars_are_ignored(n: int) -> None:
    """"Swift Triggers 1192234, 1192235 and 1192236..." and "AT 2023sva: ..."."""
    with pytest.raises(Ignored):
        circulars.parse(_raw(n), topic=TOPIC)


def test_two_events_of_one_kind_are_ignored() -> None:
    doc = _doc(34387)
    doc["subject"] = "GRB 230812B and GRB 230812A: Fermi GBM detection"
    with pytest.raises(Ignored, match="several grb"):
        circulars.parse(_bytes(doc), topic=TOPIC)


def _hostile(change: dict[str, Any], drop: str | None = None) -> bytes:
    doc = {**_doc(34599), **change}
    if drop:
        del doc[drop]
    return _bytes(doc)


@pytest.mark.parametrize(("raw", "error"), [
    (_hostile({}, drop="subject"), MissingField),
    (_hostile({"subject": "   "}), MissingField),
    (_hostile({}, drop="body"), MissingField),
    (_hostile({}, drop="createdOn"), MissingField),
    (_hostile({}, drop="circularId"), MissingField),
    (_hostile({"createdOn": "1693374160828"}), InvalidValue),
    (_hostile({"createdOn": True}), InvalidValue),
    (_hostile({"createdOn": 1e300}), InvalidValue),
    (_hostile({"circularId": -1}), InvalidValue),
    (_hostile({"circularId": "34599"}), InvalidValue),
    (_hostile({"subject": ["S230830b"]}), InvalidValue),
    (_hostile({"subject": "S230830b " * 200}), InvalidValue),
    (_hostile({"body": {"text": "x"}}), InvalidValue),
    (_hostile({"eventId": 230830}), InvalidValue),
    (_hostile({"body": "x" * (10 * 2**20)}), HostileMessage),
    (b"TITLE: GCN CIRCULAR\nNUMBER: 34599\n", MalformedMessage),
    (b'{"circularId": 34599, "subject": "S230830b", "body": "x", "createdOn": NaN}',
     MalformedMessage),
], ids=["no-subject", "blank-subject", "no-body", "no-createdOn", "no-id", "createdOn-text",
        "createdOn-bool", "createdOn-huge", "id-negative", "id-text", "subject-list",
        "subject-long", "body-object", "eventId-number", "body-10MB", "not-json", "nan"])
def test_hostile_circulars(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        circulars.parse(raw, topic=TOPIC)


def test_subject_property_is_printable_and_capped() -> None:
    doc = _doc(34599)
    doc["subject"] = doc["subject"] + " \x1b[2J\u202e" + "x" * 500
    notice = circulars.parse(_bytes(doc), topic=TOPIC)
    subject = notice.properties["subject"]
    assert len(subject) == 200 and "\x1b" not in subject and "\u202e" not in subject


def test_sniff_claims_circulars_only() -> None:
    heartbeat = (DATA.parent / "gcn_heartbeat" / "heartbeat.json").read_bytes()
    assert not circulars.sniff(heartbeat)
    assert not circulars.sniff(b"TITLE: GCN CIRCULAR\nSUBJECT: x")
    assert Registry().detect(_raw(34599)) is circulars
    assert Registry().for_topic(TOPIC) is circulars


def test_a_megabyte_of_trigger_text_costs_little() -> None:
    """Derived from 34479: a body of one 800 kB "sentence" of trigger statements once took
    minutes (each trigger looked back over the whole sentence for its mission)."""
    import time

    doc = _doc(34479)
    doc["body"] = "GRB 230818A (trigger=1186032) Swift BAT " * 20000
    started = time.monotonic()
    notice = circulars.parse(_bytes(doc), topic=TOPIC)
    assert time.monotonic() - started < 5.0
    assert notice.aliases == ()  # no sentence of prose: no trigger is read
