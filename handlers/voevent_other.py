"""VOEvents that no other handler claims: recognised, counted, skipped.

The VOEvent world carries much that mma does not correlate: MOA microlensing
events, Gaia and ASAS-SN optical transients, broker test messages, Fermi LAT
monitor packets, LVK-internal re-publications of other missions' triggers.
Such a packet is valid, so it must not be dead-lettered; this catch-all
(``FALLBACK = True``: the registry tries its ``sniff`` after every other
handler's) raises :class:`mma.errors.Ignored` naming the stream.

Its ``sniff`` still refuses the streams other handlers own (the GCN Fermi GBM,
Swift, INTEGRAL, AGILE and LVK prefixes, and any ivorn naming AMON, IceCube,
SNEWS, KM3NeT or SVOM), so it cannot steal them even when called alone. Broken
or hostile XML is never "ignored": :func:`parse` raises the
:class:`~mma.errors.BadMessage` of :func:`mma.formats.voevent.parse_voevent`.
"""

from __future__ import annotations

import logging

from mma.epochs import EARLIEST
from mma.errors import Ignored
from mma.formats.voevent import parse_voevent, sniff_ivorn
from mma.handlers import agile, fermi_gbm, fermi_lat, gecam, integral, ipn, lvk_voevent, swift
from mma.models import Notice

__all__ = ["DEFAULT_TOPICS", "FALLBACK", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "voevent_other"
KIND = "notice"
DEFAULT_TOPICS: tuple[str, ...] = ()  # nothing worth subscribing to; used by replay/ingest
FALLBACK = True
# Any stream: the default lower bound of mma.epochs (1990-01-01).
FIRST_LIGHT = EARLIEST

# Prefixes of the streams the handlers in this package parse.
OWNED_PREFIXES: tuple[str, ...] = (
    fermi_gbm.STREAM_PREFIX, swift.STREAM_PREFIX, *integral.STREAM_PREFIXES,
    agile.STREAM_PREFIX, lvk_voevent.STREAM_PREFIX, gecam.STREAM_PREFIX, ipn.STREAM_PREFIX,
)  # fmt: skip
# Ivorn fragments (upper-cased) of streams that neutrino/supernova/SVOM handlers own.
OWNED_MARKERS = ("AMON", "ICECUBE", "SNEWS", "KM3NET", "SVOM")
LVK_INTERNAL = "ivo://lvk.internal/"

# Known streams of no interest → why (for the log and the Ignored message).
KNOWN: tuple[tuple[str, str], ...] = (
    ("ivo://nasa.gsfc.gcn/MOA#", "MOA microlensing event"),
    ("ivo://nasa.gsfc.gcn/Fermi#LAT_", "Fermi LAT monitor packet (not a burst position)"),
    ("ivo://gaia.cam.uk/", "Gaia science alert (optical transient)"),
    ("ivo://voevent.4pisky.org/ASASSN", "ASAS-SN optical transient"),
    ("ivo://com.dc3/", "VOEvent broker test message"),
    (LVK_INTERNAL, "LVK-internal re-publication of another mission's trigger"),
)


def _owned(ivorn: str) -> bool:
    if ivorn.startswith(OWNED_PREFIXES):
        return True
    if ivorn.startswith(fermi_lat.STREAM_PREFIX):  # LAT positions: its Monitor packets are ours
        return not ivorn.startswith(fermi_lat.MONITOR_PREFIX)
    if ivorn.startswith(LVK_INTERNAL):  # re-publications (even of SVOM triggers) are ours
        return False
    upper = ivorn.upper()
    return any(marker in upper for marker in OWNED_MARKERS)


def sniff(raw: bytes) -> bool:
    """True for a VOEvent whose ivorn belongs to no other handler."""
    ivorn = sniff_ivorn(raw)
    return ivorn is not None and not _owned(ivorn)


def parse(raw: bytes, *, topic: str) -> Notice:
    """Validate the VOEvent, then raise :class:`Ignored` naming its stream.

    Raises
    ------
    Ignored
        Always, for a well-formed VOEvent.
    HostileMessage, MalformedMessage, MissingField, InvalidValue
        The bytes are not a safe, valid VOEvent.
    """
    event = parse_voevent(raw)
    what = next((why for prefix, why in KNOWN if event.ivorn.startswith(prefix)), None)
    if what is None:
        what = "VOEvent stream without an mma handler"
    raise Ignored(f"{what}: {event.stream[:100]} (role {event.role}, topic {topic or 'n/a'})")
