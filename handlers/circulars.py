"""GCN Circulars (Kafka ``gcn.circulars``, JSON) → a Notice that only attaches to a known event.

A circular is a human bulletin (``circularId``, ``subject``, ``body``, ``createdOn``
[ms since the Unix epoch, UTC], ``submitter``, and since 2025 a backfilled
``eventId`` such as ``"GRB 230818A"`` or ``"LIGO/Virgo/KAGRA S230830b"``). It
carries no region and no event time mma could trust, so the Notice is flagged
``attach_only`` (the ingest path stores it only under an event already known by
one of its names, else drops it with one INFO line) and ``no_event_time`` (it
never sets the event's time, class or properties). ``event_time`` and
``issued_time`` are both ``createdOn``.

Names, in mma's own spelling (what the other handlers store as ids or aliases):

=========================================  =============================  =========
stated as                                  name                           messenger
=========================================  =============================  =========
``S230830b`` (LVK superevent)              ``S230830b``                   gw
``LIGO/Virgo G298048`` (O2 GraceID)        ``G298048``                    gw
``IceCube-230823A``                        ``IceCube-230823A``            neutrino
``134701_49508272.amon`` (AMON alert)      ``IceCube-134701_49508272``    neutrino
``GRB 230818A``                            ``GRB230818A``                 grb
``Swift Trigger 1232465``                  ``Swift-1232465``              grb
``Fermi GBM trigger 713134237/230807868``  ``FermiGBM-713134237``         grb
=========================================  =============================  =========

The **event** is the first name of ``eventId`` (GCN's own reading of the subject),
else the first name of the subject. **Aliases** are conservative, because an alias
merges events for good: the other names of the subject and ``eventId`` of the
same messenger (a GBM trigger "not associated with S230807f" never merges a GRB
into a GW event); plus, from the body, only trigger numbers written in an
explicit form: Swift's ``(trigger=1253910)`` or ``trigger #1186032`` after a
mention of Swift or BAT with no other mission in between, Fermi GBM's
``trigger 713559497/230812790`` or ``Fermi GBM Trig 725806648``, each only in a
sentence (of prose: at most 2,000 characters) that names the circular's event and
no other, since circulars cite other bursts; and the
``notices_amon_g_b/<run>_<event>.amon`` URL of IceCube's initial alert when it is
the body's only one and the body names no other IceCube event. A GBM trigger
number counts only if, read as Fermi mission elapsed time, it falls in the year
before the circular: that also tells the trigger from the ``bn`` number beside it.
Two different names of one kind (two GRBs, two superevents) make the circular
ambiguous: it is ignored.

``retraction`` is True when the event is a GW or neutrino event and the subject
says ``retraction``/``retracted`` (``LIGO/Virgo/KAGRA S230830b: Retraction of GW
compact binary merger candidate``, ``IceCube GCN alert 134701_49508272.amon
retraction``), unless it negates it. A GRB circular saying "retraction" withdraws
a counterpart or a position, not the burst: never a retraction.

Circulars naming nothing mma can map (``Swift Triggers 1192234, 1192235 and
1192236 are not astrophysical events``, ``AT 2023sva: ...``) raise Ignored. So, for
now, do Einstein Probe, SVOM, KM3NeT and other names: they are added once real
circulars using them are in the tests.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from mma.errors import Ignored, InvalidValue, MissingField
from mma.formats.gcn_json import load_json
from mma.models import Messenger, Notice
from mma.printable import printable

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "circulars"
KIND = "notice"
DEFAULT_TOPICS: tuple[str, ...] = ("gcn.circulars",)

# GCN Circular 1 was issued in 1997 (the archive at gcn.nasa.gov/circulars starts there).
FIRST_LIGHT = datetime(1997, 1, 1, tzinfo=UTC)

ATTACH_ONLY = "attach_only"  # the ingest path's flag (mma.ingest.notices.ATTACH_ONLY)
MAX_MESSAGE_BYTES = 1 * 2**20  # the longest circulars are ~50 kB of photometry tables
MAX_SUBJECT_CHARS = 1000
MAX_PROPERTY_CHARS = 200  # the subject kept in properties, escaped and cut
MAX_CIRCULAR_ID = 10**7  # ~44,000 circulars by 2026
# Longer "sentences" are tables or noise: no trigger is read there (and the cost of
# reading one stays bounded, whatever the body).
MAX_SENTENCE_CHARS = 2000
# Fermi mission elapsed time counts seconds from 2001-01-01 00:00 UTC (leap seconds,
# a few, are irrelevant at the day scale used here).
FERMI_MET_EPOCH = datetime(2001, 1, 1, tzinfo=UTC)
GBM_TRIGGER_WINDOW = (timedelta(days=366), timedelta(days=1))  # before, after createdOn

# Kinds of names: (kind, messenger, pattern, builder). Patterns are searched in the
# subject, eventId and body sentences; the builder gives mma's spelling.
_NAME_PATTERNS: tuple[tuple[str, Messenger, re.Pattern[str]], ...] = (
    ("superevent", "gw", re.compile(r"(?<![A-Za-z0-9])(S\d{6}[a-z]{1,3})(?![A-Za-z0-9])")),
    ("graceid", "gw", re.compile(r"(?:LIGO|Virgo)\S*\s+(G\d{5,6})(?![A-Za-z0-9])")),
    ("icecube", "neutrino", re.compile(r"(?<![A-Za-z])(IceCube-\d{6}[A-Z])(?![A-Za-z0-9])")),
    ("amon", "neutrino", re.compile(r"(?<![\d_])(\d{5,7})_(\d{1,10})\.amon\b")),
    ("grb", "grb", re.compile(r"(?<![A-Za-z])GRB[ _]?(\d{6}[A-Z]{1,2})(?![A-Za-z0-9.])")),
    ("swift", "grb", re.compile(r"\bSwift\s+Trigger\s+(\d{5,8})(?![\d,])", re.I)),
    ("gbm", "grb", re.compile(
        r"\b(?:Fermi|GBM)\b[^.\d:]{0,40}?\btrig(?:ger)?\b\.?\s*(?:No\.?\s*|#\s*)?"
        r"(\d{9})(?:\.\d+)?(?:\s*/\s*(?:GRB\s*)?(\d{9}))?", re.I)),
)
_ICECUBE_NAME = next(p for kind, _m, p in _NAME_PATTERNS if kind == "icecube")
# Trigger numbers stated in a body sentence (beyond the names above).
_SWIFT_BODY = re.compile(r"\btrigger\s*(?:=|#|number\b|no\.)\s*(\d{5,8})(?!\d)", re.I)
# Missions that number their triggers: a Swift trigger number must follow a mention of
# Swift or BAT with none of the others in between ("Swift/BAT ... INTEGRAL (Weak trigger
# #10373)" is INTEGRAL's).
_MISSIONS = re.compile(r"\b(?:Swift|BAT|INTEGRAL|IBAS|SPI-ACS|Fermi|GBM|LAT|Konus|GECAM|"
                       r"AGILE|SVOM|GRM|ECLAIRs|CALET|AstroSat|CZTI|HXMT|MAXI|Glowbug|"
                       r"GRBAlpha|IceCube)\b")
_GBM_PAIR = re.compile(r"\btrigger\s+(\d{9})(?:\.\d+)?\s*/\s*(?:GRB\s*)?(\d{9})(?!\d)", re.I)
_AMON_URL = re.compile(r"notices_amon_(?:g_b|icecube_cascade)/(\d{5,7})_(\d{1,10})\.amon")
_SENTENCE = re.compile(r"(?<=[.;!?])\s+|\n\s*\n")
_RETRACTION = re.compile(r"\bretract(?:ion|ed)\b", re.I)
_NEGATED = re.compile(r"\b(?:not|no longer|never)\b[^.:]{0,30}\bretract|"
                      r"\bretract\w*\b[^.:]{0,30}\b(?:withdrawn|cancell?ed|in error)\b", re.I)
_SNIFF_KEYS = (b'"circularId"', b'"subject"', b'"body"')


def sniff(raw: bytes) -> bool:
    """True for a JSON object with the keys of a circular (``circularId``, ``subject``,
    ``body``), wherever they are (archive dumps put ``body`` first)."""
    if raw[:64].lstrip(b"\xef\xbb\xbf \t\r\n")[:1] != b"{":
        return False
    return all(key in raw for key in _SNIFF_KEYS)


# ---------------------------------------------------------------- names
_Name = tuple[str, Messenger, str]  # (kind, messenger, name in mma's spelling)
_DESIGNATIONS = frozenset({"superevent", "graceid", "icecube", "grb"})


def _gbm_trigger(numbers: tuple[str | None, ...], created: datetime) -> str | None:
    """``FermiGBM-<MET>`` for the number that, read as Fermi MET [s], falls in the year
    before *created* (the ``bn`` number beside it does not), else None."""
    before, after = GBM_TRIGGER_WINDOW
    for number in numbers:
        if number is not None:
            when = FERMI_MET_EPOCH + timedelta(seconds=int(number))
            if created - before <= when <= created + after:
                return f"FermiGBM-{int(number)}"
    return None


def _spelling(kind: str, match: re.Match[str], created: datetime) -> str | None:
    if kind == "amon":
        return f"IceCube-{int(match.group(1))}_{int(match.group(2))}"
    if kind == "grb":
        return f"GRB{match.group(1)}"
    if kind == "swift":
        return f"Swift-{int(match.group(1))}"
    if kind == "gbm":
        return _gbm_trigger(match.groups(), created)
    return match.group(1)


def _find(text: str, created: datetime) -> list[_Name]:
    """The names stated in *text*, in order of appearance, each once."""
    found: list[tuple[int, _Name]] = []
    for kind, messenger, pattern in _NAME_PATTERNS:
        for match in pattern.finditer(text):
            name = _spelling(kind, match, created)
            if name is not None:
                found.append((match.start(), (kind, messenger, name)))
    return list(dict.fromkeys(name for _pos, name in sorted(found, key=lambda f: f[0])))


def _body_triggers(body: str, known: set[str], created: datetime) -> list[_Name]:
    """Trigger numbers the body states in an explicit form for the circular's event.

    Swift and GBM triggers count only in a sentence naming one of *known* (the
    subject's and eventId's designations) and no other designation; an AMON alert
    URL counts when the body gives exactly one and names no other neutrino.
    """
    found: dict[str, set[str]] = {}
    for sentence in _SENTENCE.split(body):
        if len(sentence) > MAX_SENTENCE_CHARS:
            continue
        names = _find(sentence, created)
        designations = {name for kind, _m, name in names if kind in _DESIGNATIONS}
        if not designations or not designations <= known:
            continue
        for kind, _m, name in names:
            if kind in ("gbm", "swift"):
                found.setdefault(kind, set()).add(name)
        for match in _GBM_PAIR.finditer(sentence):
            gbm = _gbm_trigger(match.groups(), created)
            if gbm is not None:
                found.setdefault("gbm", set()).add(gbm)
        for match in _SWIFT_BODY.finditer(sentence):
            missions = _MISSIONS.findall(sentence, 0, match.start())
            if missions and missions[-1] in ("Swift", "BAT"):
                found.setdefault("swift", set()).add(f"Swift-{int(match.group(1))}")
    neutrinos = {match.group(1) for match in _ICECUBE_NAME.finditer(body)}
    if neutrinos <= known:
        found["amon"] = {f"IceCube-{int(m.group(1))}_{int(m.group(2))}"
                         for m in _AMON_URL.finditer(body)}
    messengers: dict[str, Messenger] = {"gbm": "grb", "swift": "grb", "amon": "neutrino"}
    # Two numbers of one kind: the body speaks of several triggers; none is trusted.
    return [(kind, messengers[kind], next(iter(names)))
            for kind, names in found.items() if len(names) == 1]


def _event_and_aliases(subject: str, event_field: str | None, body: str,
                       created: datetime) -> tuple[_Name, tuple[str, ...]]:
    """The circular's event (first name of ``eventId``, else of the subject) and its
    aliases: the other stated names of the same messenger (module docstring).

    Raises
    ------
    Ignored
        No name mma can map, or two different names of one kind.
    """
    stated = list(dict.fromkeys(
        [*_find(event_field or "", created), *_find(subject, created)]))
    if not stated:
        raise Ignored(f"circular names no event mma knows how to name: {subject[:80]!r}")
    kinds = [kind for kind, _m, _n in stated]
    doubled = sorted({k for k in kinds if kinds.count(k) > 1})
    if doubled:
        raise Ignored(f"circular names several {doubled[0]} events: {subject[:80]!r}")
    primary = stated[0]
    known = {name for kind, _m, name in stated if kind in _DESIGNATIONS}
    extra = [t for t in _body_triggers(body, known, created) if t[0] not in kinds]
    aliases = tuple(name for _k, messenger, name in [*stated[1:], *extra]
                    if messenger == primary[1])
    return primary, aliases


# ---------------------------------------------------------------- fields
def _circular_id(msg: dict[str, Any]) -> int:
    value = msg.get("circularId")
    if value is None:
        raise MissingField("circularId is missing")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # the schema types it "number"
    if not isinstance(value, int) or isinstance(value, bool) or not (
            0 < value < MAX_CIRCULAR_ID):
        raise InvalidValue(f"circularId {str(value)[:20]!r} is not a circular number")
    return value


def _text(msg: dict[str, Any], key: str, max_chars: int | None = None) -> str:
    value = msg.get(key)
    if value is None:
        raise MissingField(f"{key} is missing")
    if not isinstance(value, str):
        raise InvalidValue(f"{key} is a {type(value).__name__}, not text")
    if max_chars is not None and len(value) > max_chars:
        raise InvalidValue(f"{key} has {len(value)} characters (at most {max_chars})")
    return value


def _created_on(msg: dict[str, Any]) -> datetime:
    """``createdOn`` [ms since 1970-01-01 UTC] as a timezone-aware UTC datetime."""
    value = msg.get("createdOn")
    if value is None:
        raise MissingField("createdOn is missing")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value):
        raise InvalidValue(f"createdOn {str(value)[:40]!r} is not a number of milliseconds")
    try:
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidValue(f"createdOn {value!r} ms is not a representable time") from exc


def _retracts(messenger: str, subject: str) -> bool:
    """A GW or neutrino circular whose subject says it retracts (not negated)."""
    return (messenger in ("gw", "neutrino") and _RETRACTION.search(subject) is not None
            and _NEGATED.search(subject) is None)


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one GCN Circular (JSON) to an attach-only Notice of the event it is about.

    Mapping: ``event_id`` and ``aliases`` ← the names of ``eventId``, the subject
    and explicit trigger numbers of the body (module docstring);
    ``event_time`` = ``issued_time`` ← ``createdOn`` (UTC); ``retraction`` ← a GW
    or neutrino subject saying so; ``instrument`` ``GCN-Circular``,
    ``notice_type`` ``CIRCULAR``, no region; flags ``attach_only`` and
    ``no_event_time``; properties ``circular_id``, ``subject`` (escaped, at most
    200 characters) and ``url``.

    Raises
    ------
    Ignored
        The circular names no event mma can name, or several of one kind.
    HostileMessage, MalformedMessage
        Larger than 1 MiB, or not strict JSON.
    MissingField
        No ``circularId``, ``subject``, ``body`` or ``createdOn``; an empty subject.
    InvalidValue
        A field of the wrong type, a circular number out of range, a subject
        over 1000 characters, a ``createdOn`` that is no time.
    """
    msg = load_json(raw, max_bytes=MAX_MESSAGE_BYTES)
    circular_id = _circular_id(msg)
    subject = _text(msg, "subject", MAX_SUBJECT_CHARS).strip()
    if not subject:
        raise MissingField("subject is empty")
    body = _text(msg, "body")
    created = _created_on(msg)
    event_field = msg.get("eventId")
    if event_field is not None and not isinstance(event_field, str):
        raise InvalidValue(f"eventId is a {type(event_field).__name__}, not text")
    (_kind, messenger, event_id), aliases = _event_and_aliases(
        subject, event_field[:MAX_SUBJECT_CHARS] if event_field else None, body, created)
    retraction = _retracts(messenger, subject)
    logger.debug("circular %d: event %s, aliases %s%s", circular_id, event_id,
                 ", ".join(aliases) or "none", ", retraction" if retraction else "")
    return Notice(
        event_id=event_id,
        messenger=messenger,
        instrument="GCN-Circular",
        notice_type="CIRCULAR",
        event_time=created,
        issued_time=created,
        retraction=retraction,
        aliases=aliases,
        properties={"circular_id": circular_id,
                    "subject": printable(subject)[:MAX_PROPERTY_CHARS],
                    "url": f"https://gcn.nasa.gov/circulars/{circular_id}"},
        flags=(ATTACH_ONLY, "no_event_time"),
    )
