"""Safe, namespace-agnostic reading of VOEvent 2.0 packets (GCN Classic and others).

VOEvents come from strangers over Kafka, email and files, and XML is the most
dangerous of our input formats: a DTD can declare entities that expand to
gigabytes ("billion laughs") or pull ``file:///etc/passwd`` into the tree
(XXE). No legitimate VOEvent needs a DTD, so any ``<!DOCTYPE``/``<!ENTITY`` is
refused before the parser sees the bytes, and the parser itself runs with entity
resolution, DTD loading and network access off and libxml2's size limits on.

Only UTF-8 (or an ASCII-compatible encoding declared in the XML prolog) is
accepted: the byte-level DOCTYPE check would be blind to UTF-16.

Elements are matched by local name, so the namespaced ``<voe:VOEvent>`` of GCN
and the un-namespaced packets some brokers emit read the same way.

Typical use in a handler::

    event = parse_voevent(raw)
    event.stream                 # 'ivo://nasa.gsfc.gcn/Fermi#GBM_Gnd_Pos'
    event.params["TrigID"]       # '524666471' (strings; convert in the handler)
    event.isotime()              # trigger time, aware UTC datetime
    event.position()             # Position(ra_deg, dec_deg, error_radius_deg, ...)

Handlers' ``sniff`` functions call :func:`sniff_ivorn`/:func:`sniff_stream`,
which look at the head of the bytes only.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from lxml import etree

from mma.errors import HostileMessage, InvalidValue, MalformedMessage, MissingField
from mma.skymaps.limits import check_error

__all__ = [
    "MAX_VOEVENT_BYTES",
    "Position",
    "VOEvent",
    "parse_voevent",
    "sniff_ivorn",
    "sniff_stream",
    "stream_of",
]

logger = logging.getLogger(__name__)

MAX_VOEVENT_BYTES = 2**20
"""Default size cap [bytes]. GCN Classic VOEvents are 2–8 kB; LVK ones < 10 kB."""

ROLES = frozenset({"observation", "prediction", "utility", "test"})

_DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY", b"<!doctype", b"<!entity")
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-16/32 byte-order marks
_SNIFF_BYTES = 8192  # GCN packets put the ivorn in the root tag, within the first ~500 bytes
_ROOT_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?VOEvent\b([^>]*)>")
_IVORN_ATTR = re.compile(rb"""\bivorn\s*=\s*(["'])(.*?)\1""", re.S)
# The packet type heading a GCN local id: letters in '_'-joined words, e.g.
# 'GBM_Gnd_Pos' in 'GBM_Gnd_Pos_2017-08-17T…' or 'GBM_ALERT' in 'GBM_ALERT2018-…'.
_PACKET_TYPE = re.compile(r"[A-Za-z]+(?:_[A-Za-z]+)*")
_UNIT_TO_DEG = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "": 1.0,
                "arcmin": 1 / 60, "arcsec": 1 / 3600, "rad": 180 / math.pi}  # fmt: skip
_LIMIT_ERRORS = re.compile(r"[Ee]xcessive depth|[Hh]uge|amplification|too large")
_FRAMES = ("ICRS", "FK5")  # J2000 FK5 and ICRS differ by < 0.1″, far below any notice error


class Position(NamedTuple):
    """A VOEvent ``Position2D`` converted to degrees.

    Attributes
    ----------
    ra_deg, dec_deg : float
        Centre, ICRS/FK5 J2000 [deg]; RA in [0, 360), Dec in [-90, 90].
    error_radius_deg : float or None
        ``Error2Radius`` [deg], as stated (its containment is mission-specific),
        or None when absent. May be 0: GCN uses 0 for "no position"; otherwise
        in [1e-5, 360] deg, 180 deg and more meaning anywhere.
    unit : str
        The unit the packet stated (``deg`` when it stated none).
    system : str
        ``coord_system_id`` of the AstroCoords (e.g. ``UTC-FK5-GEO``), or ``""``.
    """

    ra_deg: float
    dec_deg: float
    error_radius_deg: float | None
    unit: str
    system: str


def _local(el: Any) -> str:
    tag = el.tag
    if not isinstance(tag, str):  # comments, processing instructions
        return ""
    return tag.rsplit("}", 1)[-1]


def _children(el: Any, name: str) -> Iterator[Any]:
    for child in el:
        if _local(child) == name:
            yield child


def _child(el: Any, *path: str) -> Any:
    """First descendant along *path* of local names, or None."""
    for name in path:
        if el is None:
            return None
        el = next(_children(el, name), None)
    return el


def _text(el: Any) -> str | None:
    if el is None or el.text is None:
        return None
    return str(el.text).strip()


def _param_value(param: Any) -> str | None:
    value = param.get("value")
    if value is None:  # VOEvent 2.0 also allows <Param><Value>…</Value></Param>
        value = _text(_child(param, "Value"))
    return None if value is None else str(value).strip()


def _utc_time(text: str | None, where: str, *, scale: str = "UTC") -> datetime:
    """Parse an ISO 8601 time; a missing offset means UTC (the VOEvent default)."""
    if text is None or not text:
        raise MissingField(f"{where} is missing")
    if scale != "UTC":
        raise InvalidValue(f"{where} is in time scale {scale}, only UTC is supported")
    cleaned = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        parsed = datetime.fromisoformat(cleaned)
    except ValueError as exc:
        raise InvalidValue(f"{where} {text[:40]!r} is not an ISO 8601 time") from exc
    if parsed.utcoffset() is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # year 1 east of Greenwich, year 9999 west of it
        raise InvalidValue(f"{where} {text[:40]!r} is outside the years 1-9999 in UTC") from exc


def _float(text: str | None, where: str) -> float:
    if text is None or not text:
        raise MissingField(f"{where} is missing")
    try:
        value = float(text)
    except ValueError as exc:
        raise InvalidValue(f"{where} {text[:40]!r} is not a number") from exc
    if not math.isfinite(value):
        raise InvalidValue(f"{where} {text[:40]!r} is not finite")
    return value


def stream_of(ivorn: str) -> str:
    """The stream an ivorn belongs to: authority/path plus the packet type.

    ``ivo://nasa.gsfc.gcn/Fermi#GBM_Gnd_Pos_2017-08-17T12:41:06.47_524666471_57-431``
    → ``ivo://nasa.gsfc.gcn/Fermi#GBM_Gnd_Pos``. The packet type is the leading
    run of ``_``-joined alphabetic words of the local id, kept only when it has
    at least one ``_`` (GCN style); otherwise (``ivo://gwnet/LVC#S190425z-1-Initial``)
    the stream is the part before ``#``.
    """
    base, _, local = ivorn.partition("#")
    match = _PACKET_TYPE.match(local)
    if match and "_" in match.group(0):
        return f"{base}#{match.group(0)}"
    return base


def sniff_ivorn(raw: bytes) -> str | None:
    """The ivorn of a VOEvent, read from the root tag in the first 8 kB, or None.

    Cheap and tolerant: no parse, no validation; :func:`parse_voevent` does
    that. Returns None when no ``<VOEvent …ivorn="…">`` tag is found.
    """
    head = raw[:_SNIFF_BYTES]
    root = _ROOT_TAG.search(head)
    if root is None:
        return None
    ivorn = _IVORN_ATTR.search(root.group(1))
    if ivorn is None:
        return None
    return ivorn.group(2).decode("utf-8", "replace").strip()


def sniff_stream(raw: bytes) -> str | None:
    """:func:`stream_of` the ivorn found by :func:`sniff_ivorn`, or None."""
    ivorn = sniff_ivorn(raw)
    return None if ivorn is None else stream_of(ivorn)


@dataclass(frozen=True)
class VOEvent:
    """One parsed VOEvent packet.

    Attributes
    ----------
    ivorn : str
        The packet's identifier (``ivo://nasa.gsfc.gcn/SWIFT#XRT_Pos_1208389-303``).
    role : str
        ``observation``, ``prediction``, ``utility`` or ``test``.
    stream : str
        :func:`stream_of` the ivorn (``ivo://nasa.gsfc.gcn/SWIFT#XRT_Pos``).
    packet_type : str or None
        The packet type part of ``stream`` (``XRT_Pos``), or None.
    date : datetime or None
        ``Who/Date``: when the packet was written, aware UTC.
    params : mapping of str to str
        Every ``What`` Param, including those inside Groups, name → value text.
        When a name repeats, the first occurrence (document order) wins.
    groups : mapping of str to mapping of str to str
        Params of each named ``What/Group``.
    root : lxml element
        The parsed tree, for anything not covered here (read-only use).
    """

    ivorn: str
    role: str
    stream: str
    packet_type: str | None
    date: datetime | None
    params: Mapping[str, str]
    groups: Mapping[str, Mapping[str, str]]
    root: Any = field(repr=False, compare=False)

    def param(self, name: str) -> str:
        """The value of Param *name*; MissingField if absent or empty."""
        value = self.params.get(name)
        if value is None or value == "":
            raise MissingField(f"VOEvent Param {name} is missing from {self.ivorn}")
        return value

    def param_float(self, name: str) -> float:
        """Param *name* as a finite float; MissingField or InvalidValue otherwise."""
        return _float(self.param(name), f"VOEvent Param {name}")

    def param_int(self, name: str) -> int:
        """Param *name* as a decimal integer (leading zeros allowed, e.g. ``010472``)."""
        text = self.param(name)
        if not re.fullmatch(r"[+-]?\d{1,30}", text):
            raise InvalidValue(f"VOEvent Param {name} {text[:40]!r} is not an integer")
        return int(text, 10)

    def param_bool(self, name: str) -> bool | None:
        """Param *name* as a boolean (``true``/``false``, any case), None if absent."""
        text = self.params.get(name)
        if text is None or text == "":
            return None
        lowered = text.lower()
        if lowered not in ("true", "false"):
            raise InvalidValue(f"VOEvent Param {name} {text[:40]!r} is not true/false")
        return lowered == "true"

    def issued_time(self) -> datetime:
        """``Who/Date`` (when the packet was written), aware UTC; MissingField if absent."""
        if self.date is None:
            raise MissingField(f"VOEvent {self.ivorn} has no Who/Date")
        return self.date

    def _coords(self) -> Any:
        return _child(self.root, "WhereWhen", "ObsDataLocation", "ObservationLocation",
                      "AstroCoords")  # fmt: skip

    def coord_system(self) -> str:
        """``coord_system_id`` of the AstroCoords (``UTC-FK5-GEO``), or ``""``."""
        coords = self._coords()
        return "" if coords is None else str(coords.get("coord_system_id", "")).strip()

    def isotime(self) -> datetime:
        """The event time (``…/AstroCoords/Time/TimeInstant/ISOTime``), aware UTC.

        A time without an offset or ``Z`` is UTC, as VOEvent 2.0 specifies for a
        ``UTC-…`` coordinate system.

        Raises
        ------
        MissingField
            No ISOTime.
        InvalidValue
            Not ISO 8601, or a time scale other than UTC (e.g. ``TDB-ICRS-BARY``).
        """
        text = _text(_child(self._coords(), "Time", "TimeInstant", "ISOTime"))
        system = self.coord_system()
        scale = system.split("-", 1)[0].upper() if system else "UTC"
        return _utc_time(text, "WhereWhen ISOTime", scale=scale)

    def position(self) -> Position | None:
        """The ``Position2D`` of the WhereWhen section, or None if there is none.

        Raises
        ------
        InvalidValue
            Not RA/Dec in an ICRS or FK5 frame, an unknown unit, a non-finite or
            out-of-range coordinate, or an error radius other than 0 outside
            1e-5 deg to 360 deg (:func:`mma.skymaps.limits.check_error`).
        MissingField
            A Position2D without C1/C2.
        """
        coords = self._coords()
        pos = _child(coords, "Position2D")
        if pos is None:
            return None
        system = self.coord_system()
        if system and not any(frame in system.upper() for frame in _FRAMES):
            raise InvalidValue(f"coordinate system {system[:40]!r} is not ICRS or FK5")
        names = (_text(_child(pos, "Name1")), _text(_child(pos, "Name2")))
        if names != (None, None) and tuple(n.upper() if n else n for n in names) != ("RA", "DEC"):
            raise InvalidValue(f"Position2D axes are {names}, expected RA and Dec")
        unit = str(pos.get("unit", "deg")).strip()
        scale = _UNIT_TO_DEG.get(unit.lower())
        if scale is None:
            raise InvalidValue(f"Position2D unit {unit[:20]!r} is not an angle unit")
        value2 = _child(pos, "Value2")
        ra = _float(_text(_child(value2, "C1")), "Position2D C1 (RA)") * scale
        dec = _float(_text(_child(value2, "C2")), "Position2D C2 (Dec)") * scale
        if ra == 360.0:  # the closed end of [0, 360] is the same meridian as 0
            ra = 0.0
        if not (0.0 <= ra < 360.0):
            raise InvalidValue(f"Position2D RA {ra!r} deg outside [0, 360)")
        if not (-90.0 <= dec <= 90.0):
            raise InvalidValue(f"Position2D Dec {dec!r} deg outside [-90, 90]")
        radius_text = _text(_child(pos, "Error2Radius"))
        radius = None
        if radius_text is not None:
            radius = _float(radius_text, "Position2D Error2Radius") * scale
            if radius != 0.0:  # GCN's 0: no position
                check_error(radius, "Position2D Error2Radius")
        return Position(ra, dec, radius, unit or "deg", system)

    def why_names(self) -> tuple[str, ...]:
        """Names given in ``Why/Inference/Name`` (e.g. ``GRB 240112A``), in order."""
        why = _child(self.root, "Why")
        if why is None:
            return ()
        names = []
        for inference in _children(why, "Inference"):
            for name in _children(inference, "Name"):
                text = _text(name)
                if text:
                    names.append(text)
        return tuple(names)

    def concepts(self) -> tuple[str, ...]:
        """``Why/Inference/Concept`` and ``Why/Concept`` texts, in order."""
        why = _child(self.root, "Why")
        if why is None:
            return ()
        out = [_text(c) for c in _children(why, "Concept")]
        for inference in _children(why, "Inference"):
            out.extend(_text(c) for c in _children(inference, "Concept"))
        return tuple(c for c in out if c)

    def description(self) -> str | None:
        """``What/Description`` text (or the root's ``Description``), or None."""
        return _text(_child(self.root, "What", "Description")) or _text(
            _child(self.root, "Description")
        ) or None


def _refuse_hostile_bytes(raw: bytes, max_bytes: int) -> None:
    if len(raw) > max_bytes:
        raise HostileMessage(f"VOEvent is {len(raw)} bytes, above the cap of {max_bytes}")
    if not raw.strip():
        raise MalformedMessage("empty message: expected a VOEvent XML document")
    if raw.startswith(_WIDE_BOMS) or b"\x00" in raw:
        raise MalformedMessage("VOEvent is not UTF-8 (UTF-16/32 or NUL bytes found)")
    for marker in _DTD_MARKERS:
        if marker in raw:
            # No VOEvent needs a DTD; refusing it rules out entity bombs and XXE.
            raise HostileMessage(f"XML with a {marker.decode()} declaration is refused")


def _collect_params(what: Any) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    flat: dict[str, str] = {}
    groups: dict[str, dict[str, str]] = {}
    if what is None:
        return flat, groups
    for el in what:
        kind = _local(el)
        if kind == "Param":
            name = el.get("name")
            value = _param_value(el)
            if name and value is not None:
                flat.setdefault(str(name), value)
        elif kind == "Group":
            members = groups.setdefault(str(el.get("name") or ""), {})
            for param in _children(el, "Param"):
                name = param.get("name")
                value = _param_value(param)
                if name and value is not None:
                    members.setdefault(str(name), value)
    for members in groups.values():  # top-level Params win over grouped ones
        for name, value in members.items():
            flat.setdefault(name, value)
    return flat, groups


def parse_voevent(raw: bytes, *, max_bytes: int = MAX_VOEVENT_BYTES) -> VOEvent:
    """Parse one VOEvent safely.

    Parameters
    ----------
    raw : bytes
        The XML document, UTF-8 (or another ASCII-compatible declared encoding).
    max_bytes : int
        Largest accepted document [bytes], checked before parsing.

    Returns
    -------
    VOEvent

    Raises
    ------
    HostileMessage
        Over ``max_bytes``, or any DOCTYPE/ENTITY declaration (entity bombs, XXE,
        external DTDs), or a document that exceeds libxml2's safety limits.
    MalformedMessage
        Empty, not UTF-8, not well-formed XML (e.g. truncated), or a root that
        is not ``VOEvent``.
    MissingField
        No ``ivorn`` attribute.
    InvalidValue
        An unknown ``role`` or an unparseable ``Who/Date``.
    """
    _refuse_hostile_bytes(raw, max_bytes)
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
        dtd_validation=False, remove_comments=True, remove_pis=True,
    )  # fmt: skip
    try:
        root = etree.fromstring(raw, parser=parser)
    except etree.XMLSyntaxError as exc:
        if _LIMIT_ERRORS.search(str(exc)):
            raise HostileMessage(f"VOEvent exceeds XML safety limits: {str(exc)[:200]}") from exc
        raise MalformedMessage(f"VOEvent is not well-formed XML: {str(exc)[:200]}") from exc
    except (ValueError, LookupError) as exc:  # e.g. an unknown declared encoding
        raise MalformedMessage(f"VOEvent XML cannot be decoded: {str(exc)[:200]}") from exc
    if root is None:
        raise MalformedMessage("VOEvent XML has no root element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:  # belt and braces
        raise HostileMessage("XML with a document type declaration is refused")
    if _local(root) != "VOEvent":
        raise MalformedMessage(f"XML root is <{_local(root)[:40]}>, expected <VOEvent>")
    ivorn = str(root.get("ivorn", "")).strip()
    if not ivorn:
        raise MissingField("VOEvent has no ivorn attribute")
    role = str(root.get("role", "observation")).strip()
    if role not in ROLES:
        raise InvalidValue(f"VOEvent role {role[:40]!r} is not one of {sorted(ROLES)}")
    date_text = _text(_child(root, "Who", "Date"))
    date = _utc_time(date_text, "Who/Date") if date_text else None
    params, groups = _collect_params(_child(root, "What"))
    stream = stream_of(ivorn)
    packet_type = stream.partition("#")[2] or None
    return VOEvent(ivorn=ivorn, role=role, stream=stream, packet_type=packet_type,
                   date=date, params=params, groups=groups, root=root)  # fmt: skip
