"""GCN JSON notices of types mma does not use: recognised, counted, skipped.

New-style GCN notices declare their type in ``$schema`` (e.g.
``https://gcn.nasa.gov/schema/main/gcn/notices/chime/frb.schema.json``). Every
type with a handler of its own is claimed by that handler first; this
catch-all (``FALLBACK``) takes the rest (FRBs, circulars, schema fragments...)
and raises :class:`mma.errors.Ignored` naming the schema, so they are neither
stored nor dead-lettered. JSON without a GCN ``$schema`` is not claimed here:
an unknown format is a dead letter, not a skip.
"""

from __future__ import annotations

import logging
import re

from mma.epochs import EARLIEST
from mma.errors import Ignored, MalformedMessage
from mma.formats.gcn_json import load_json
from mma.models import Notice

__all__ = ["DEFAULT_TOPICS", "FALLBACK", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "gcn_other"
KIND = "notice"
DEFAULT_TOPICS: tuple[str, ...] = ()
FALLBACK = True
# Any stream: the default lower bound of mma.epochs (1990-01-01).
FIRST_LIGHT = EARLIEST

MAX_MESSAGE_BYTES = 8 * 2**20
_GCN_SCHEMA = re.compile(rb'"\$schema"\s*:\s*"https?://gcn\.nasa\.gov/schema/')


def sniff(raw: bytes) -> bool:
    """True for a JSON object carrying a GCN ``$schema`` URL."""
    if raw[:64].lstrip(b"\xef\xbb\xbf \t\r\n")[:1] != b"{":
        return False
    return _GCN_SCHEMA.search(raw[:4096]) is not None


def parse(raw: bytes, *, topic: str) -> Notice:
    """Raise :class:`Ignored` naming the notice's schema (never returns).

    Raises
    ------
    Ignored
        Always, for a valid GCN JSON notice.
    MalformedMessage, HostileMessage
        The bytes are not valid (oversized, bad JSON, no ``$schema``).
    """
    data = load_json(raw, max_bytes=MAX_MESSAGE_BYTES)
    schema = data.get("$schema")
    if not isinstance(schema, str) or "gcn.nasa.gov/schema/" not in schema:
        raise MalformedMessage("JSON object without a GCN $schema")
    kind = schema.split("/notices/", 1)[-1].split("/schema/", 1)[-1]
    raise Ignored(f"GCN notice of type {kind.removesuffix('.schema.json')!r} "
                  f"(topic {topic or 'n/a'}): no mma handler for it")
