"""Rubin/LSST alerts in the Confluent wire format: what ``lsst-alerts-v11`` carries.

A frame is byte 0 = ``0x00``, bytes 1–4 = big-endian schema id (``MAJOR*100 +
MINOR``), then one schemaless Avro record, decoded with the bundled schema of
that id (:mod:`mma.formats.rubin`). Two depths of decoding:

* :func:`decode_fast`, what ``parse`` uses: only the fields before and including
  ``diaSource`` are decoded into Python objects, then of each ``prvDiaSources``
  item only the four fields the history needs (a second generated decoder,
  :mod:`mma.formats.rubin_decoders`), and the rest is walked by fastavro for the
  first-detection epoch.
* :func:`decode_full`: the whole packet, when something needs it.
"""

from __future__ import annotations

import struct
from typing import Any

from mma.errors import MalformedMessage
from mma.formats import rubin as schemas

__all__ = [
    "CONFLUENT_MAGIC", "HEADER_BYTES", "MAX_MESSAGE_BYTES", "decode_fast", "decode_full",
]

MAX_MESSAGE_BYTES = 16 * 2**20  # DMTN-102: ≲ 82 kB with a full year of history
CONFLUENT_MAGIC = 0
HEADER_BYTES = 5


def _confluent_id(raw: bytes) -> int:
    """The schema id of a Confluent frame; MalformedMessage naming a wrong magic byte."""
    if len(raw) < HEADER_BYTES:
        raise MalformedMessage(f"message of {len(raw)} bytes is shorter than the "
                               f"{HEADER_BYTES}-byte Confluent wire-format header")
    schema_id = int(struct.unpack_from(">i", raw, 1)[0])
    if raw[0] != CONFLUENT_MAGIC:
        after = (f"; bytes 1-4 hold schema id {schema_id}, a bundled Rubin schema"
                 if schema_id in schemas.known_ids() else "")
        raise MalformedMessage(f"Confluent wire-format magic byte is 0x{raw[0]:02x}, "
                               f"expected 0x00{after}")
    return schema_id


def decode_fast(raw: bytes) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """Decode a Confluent-framed alert's leading fields, first-detection and history data.

    Returns (header, diaSource subset, {prvDiaSources subset (epoch, flux, flux
    error, isNegative), diaObject subset}, version). The whole message is walked
    (so truncation is caught) but only these fields become Python objects.

    Raises
    ------
    UnknownFormat
        The schema id is not bundled (the message names it).
    HostileMessage, MalformedMessage
        Oversized, truncated or corrupt.
    """
    schemas.check_size(raw, MAX_MESSAGE_BYTES)
    schema = schemas.load(_confluent_id(raw))
    header, source, end = schema.prefix.decode(raw, HEADER_BYTES)
    return header, source, schema.tail(raw, end), schema.version


def decode_full(raw: bytes) -> dict[str, Any]:
    """The whole packet (history, diaObject, cutouts) of a Confluent-framed alert."""
    schema = schemas.load(_confluent_id(raw))
    return schema.decode_full(raw, HEADER_BYTES, max_bytes=MAX_MESSAGE_BYTES)
