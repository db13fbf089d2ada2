"""AMON neutrino + gamma-ray coincidences (``gcn.classic.voevent.AMON_NU_EM_COINC``) → Notice.

AMON (the Astrophysical Multimessenger Observatory Network) combines
sub-threshold data of two instruments: IceCube neutrinos with a HAWC transit of
likely gamma rays, and (until ANTARES closed in 2022) ANTARES neutrinos with
Fermi LAT photons. GCN's notice type 172 carries the best combined direction,
the false-alarm rate and the search window; about 4-8 a year, issued 3-7 h
after the event.

Mapping (read from the packets, ivorn ``ivo://nasa.gsfc.gcn/AMON#NU_EM_Event…``):

``event_id``
    ``AMON-NuEm-<Event_ID>``; revisions (``Rev``) keep the Event_ID. The public
    name ``NuEm-<Event_Date>`` (``NuEm-231020A``, as the circulars name it) is
    an alias.
time
    ``ISOTime``. The packets come minutes after it while the search window
    ``deltaT`` (about 6 h, a HAWC transit) precedes it, so it is taken as the
    end of the window; ``deltaT`` [s] is kept as ``time_window_s``.
region
    A circle at the combined direction with radius ``src_err_90`` (stated in
    arcmin, statistical only, 90 % containment; flag ``statistical_error_only``).
    ``Error2Radius`` is the 50 % radius (``src_err_50``) in every real packet,
    so it is used, at 0.5, only when ``src_err_90`` is absent.
``far``
    ``FAR`` converted to Hz with its Param unit (``yr^-1`` in every packet so far).
flags
    ``retraction`` 1 → retraction; ``private`` 1 → flag ``private``;
    ``InternalTest`` or role ``test`` → test.

The unit helpers (:func:`angle_deg`, :func:`far_hz`) also serve
:mod:`mma.handlers.hawc`, whose packets AMON writes the same way.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from mma.errors import InvalidValue
from mma.formats import notice_fields, voevent
from mma.models import SECONDS_PER_YEAR, Notice, RegionSpec
from mma.skymaps.limits import check_error

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "angle_deg", "far_hz", "parse",
           "sniff"]

logger = logging.getLogger(__name__)

NAME = "amon"
KIND = "notice"
DEFAULT_TOPICS: tuple[str, ...] = ("gcn.classic.voevent.AMON_NU_EM_COINC",)

# Real-time IceCube-HAWC coincidences began on 2019-11-20 (Ayala Solares et al. 2020,
# ApJ 896, 35, arXiv:2008.10616); GCN announced the notice type on 2020-05-28.
FIRST_LIGHT = datetime(2019, 11, 20, tzinfo=UTC)

STREAM = "ivo://nasa.gsfc.gcn/AMON#NU_EM_Event"
PACKET_TYPE = 172
# Pair_Name_ID → the two instruments. Only 1 is seen in the packets (2021-2023,
# ~6 h windows, the IceCube-HAWC channel of the NuEm circulars); others stay unnamed.
PAIRS = {1: "IceCube-HAWC"}
_EVENT_DATE = re.compile(r"\d{6}[A-Z]{1,2}")
# Angle units AMON writes → degrees; rate units → Hz.
_ANGLE = {"deg": 1.0, "degree": 1.0, "arcmin": 1 / 60, "arcsec": 1 / 3600}
_RATE = {"yr^-1": 1 / SECONDS_PER_YEAR, "yr-1": 1 / SECONDS_PER_YEAR,
         "1/yr": 1 / SECONDS_PER_YEAR, "hz": 1.0, "s^-1": 1.0, "1/s": 1.0}  # fmt: skip


def sniff(raw: bytes) -> bool:
    """True for an AMON NU_EM coincidence VOEvent (by ivorn)."""
    return voevent.sniff_stream(raw) == STREAM


def param_unit(event: voevent.VOEvent, name: str) -> str:
    """The ``unit`` attribute of What Param *name*, stripped and lower-cased ('' if none)."""
    for el in event.root.iter():
        if isinstance(el.tag, str) and el.tag.rsplit("}", 1)[-1] == "Param" \
                and el.get("name") == name:
            return str(el.get("unit") or "").strip().lower()
    return ""


def angle_deg(event: voevent.VOEvent, name: str) -> float | None:
    """Param *name* as an error radius [deg], converted with its unit; None if absent.

    Raises
    ------
    InvalidValue
        Not a number, an unknown unit, or outside the accepted error range.
    """
    if not event.params.get(name):
        return None
    unit = param_unit(event, name)
    if unit not in _ANGLE:
        raise InvalidValue(f"VOEvent Param {name} unit {unit[:20]!r} is not an angle unit")
    return check_error(event.param_float(name) * _ANGLE[unit], f"VOEvent Param {name}")


def far_hz(event: voevent.VOEvent, name: str = "FAR") -> float | None:
    """Param *name* as a false-alarm rate [Hz], converted with its unit; None if absent.

    Raises
    ------
    InvalidValue
        Not a number, negative, or a unit that is not a rate.
    """
    if not event.params.get(name):
        return None
    unit = param_unit(event, name)
    if unit not in _RATE:
        raise InvalidValue(f"VOEvent Param {name} unit {unit[:20]!r} is not a rate unit")
    value = event.param_float(name)
    if value < 0.0:
        raise InvalidValue(f"VOEvent Param {name} {value!r} is negative")
    return value * _RATE[unit]


def _bit(event: voevent.VOEvent, name: str) -> bool:
    """Param *name* stated as 0 or 1 (False when absent); InvalidValue otherwise."""
    if not event.params.get(name):
        return False
    value = event.param_int(name)
    if value not in (0, 1):
        raise InvalidValue(f"VOEvent Param {name} {value!r} is not 0 or 1")
    return value == 1


def _region(event: voevent.VOEvent, flags: list[str]) -> RegionSpec | None:
    position = event.position()
    if position is None:
        flags.append("no_position")
        return None
    radius_90 = angle_deg(event, "src_err_90")
    if radius_90 is not None:
        position = position._replace(error_radius_deg=radius_90)
    containment = 0.5 if radius_90 is None else 0.9
    region = notice_fields.circle_region(position, containment=containment)
    if region is None:
        flags.append("no_position")
    return region


def _properties(event: voevent.VOEvent) -> dict[str, Any]:
    props: dict[str, Any] = {"ivorn": event.ivorn, "far": far_hz(event)}
    for name, key in (("Stream", "stream"), ("Rev", "revision"), ("Run_ID", "run_id"),
                      ("Pair_Name_ID", "pair_id"), ("Pkt_Ser_Num", "packet_serial")):
        if event.params.get(name):
            props[key] = event.param_int(name)
    for name, key in (("FAR", "far_stated"), ("deltaT", "time_window_s")):
        if event.params.get(name):
            props[key] = event.param_float(name)
    props["far_unit"] = param_unit(event, "FAR") or None
    props["pair"] = PAIRS.get(props.get("pair_id", 0))
    props["src_err_50_deg"] = angle_deg(event, "src_err_50")
    return props


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one AMON NU_EM coincidence VOEvent to a Notice (see the module docstring).

    Messenger ``neutrino``, instrument ``AMON-NuEm``, event class
    ``neutrino.track``; the region is a circle [deg] (FK5 J2000).

    Raises
    ------
    HostileMessage, MalformedMessage
        Unsafe or broken XML.
    MissingField
        No Event_ID, ISOTime or Who/Date.
    InvalidValue
        Not an AMON NU_EM packet, a Packet_Type other than 172, or a bad value
        (id, position, radius, FAR, unit).
    """
    event = voevent.parse_voevent(raw)
    if event.stream != STREAM:
        raise InvalidValue(f"{event.ivorn[:80]!r} is not an AMON NU_EM coincidence VOEvent")
    if event.params.get("Packet_Type") not in (None, str(PACKET_TYPE)):
        raise InvalidValue(f"Packet_Type {event.params['Packet_Type'][:10]!r} is not "
                           f"AMON_NU_EM_COINC ({PACKET_TYPE})")
    event_id = f"AMON-NuEm-{event.param_int('Event_ID')}"
    flags = ["statistical_error_only"]
    retraction = _bit(event, "retraction") or bool(event.param_bool("RetractFlag"))
    if _bit(event, "private"):
        flags.append("private")
    test = event.role == "test" or bool(event.param_bool("InternalTest"))
    props = _properties(event)
    region = None if retraction else _region(event, flags)
    date = event.params.get("Event_Date", "")
    aliases = (f"NuEm-{date}",) if _EVENT_DATE.fullmatch(date) else ()
    return Notice(
        event_id=event_id,
        messenger="neutrino",
        instrument="AMON-NuEm",
        notice_type="AMON_NU_EM_COINC",
        event_time=event.isotime(),
        issued_time=event.issued_time(),
        region=region,
        retraction=retraction,
        test=test,
        aliases=aliases,
        properties=props,
        flags=tuple(flags),
        event_class="neutrino.track",
    )
