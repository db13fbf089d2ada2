"""BOOM/Babamul enriched ZTF alerts (``BabamulZtfAlert`` Avro) → :class:`~mma.models.Alert`.

Babamul (Caltech BOOM) re-publishes ZTF alerts on ``babamul.ztf.*`` Kafka topics as
Avro object containers with the schema embedded (STREAMS.md 2b). The record keeps
the ZTF ``candid``, ``objectId`` and ``candidate`` (``isdiffpos`` as a boolean, plus
BOOM's ``psfFlux``/``band`` additions), so the mapping is
:func:`mma.handlers.ztf.alert_from_candidate` with ``broker="Babamul"``. BOOM's
``properties`` (``rock``, ``star``, ``near_brightstar``, ``stationary``) and the
id of a matched LSST object (``survey_matches.lsst.objectId``) go to ``quality``
as ``babamul_<name>``. History arrays are not read. Babamul gives no host
distance. LSST-side Babamul alerts (``babamul.lsst.*``) are not in the corpus
and are refused with a clear message rather than guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from mma.errors import BadMessage, MalformedMessage
from mma.formats import avro
from mma.handlers.ztf import alert_from_candidate
from mma.models import Alert

__all__ = ["DEFAULT_TOPICS", "KIND", "NAME", "parse", "sniff", "split"]

logger = logging.getLogger(__name__)

NAME = "babamul"
KIND = "alert"
DEFAULT_TOPICS: tuple[str, ...] = ()  # babamul.ztf.<...>: users pick their topics

SCHEMA_NAME = "BabamulZtfAlert"
MAX_MESSAGE_BYTES = 16 * 2**20
MAX_FILE_BYTES = 2**30
PROPERTY_KEYS = ("rock", "star", "near_brightstar", "stationary")


def alert_from_record(record: Mapping[str, Any]) -> Alert:
    """Map one decoded ``BabamulZtfAlert`` record to an Alert with ``broker='Babamul'``."""
    props = record.get("properties")
    props = props if isinstance(props, Mapping) else {}
    extra: dict[str, Any] = {f"babamul_{k}": props.get(k) for k in PROPERTY_KEYS}
    matches = record.get("survey_matches")
    lsst = matches.get("lsst") if isinstance(matches, Mapping) else None
    extra["babamul_lsst_object_id"] = lsst.get("objectId") if isinstance(lsst, Mapping) else None
    candidate = record.get("candidate")
    return alert_from_candidate(
        candidate if isinstance(candidate, Mapping) else {},
        object_id=record.get("objectId"), candid=record.get("candid"),
        broker="Babamul", extra_quality=extra,
    )


def sniff(raw: bytes) -> bool:
    """True for an Avro container whose writer schema is ``BabamulZtfAlert``."""
    if not avro.is_container(raw):
        return False
    try:
        return avro.container_schema(raw, max_bytes=MAX_FILE_BYTES).get("name") == SCHEMA_NAME
    except BadMessage:
        return False


def split(raw: bytes) -> Iterator[bytes]:
    """One-record containers from a Babamul container file."""
    return avro.split_container(raw, max_bytes=MAX_FILE_BYTES, max_records=1_000_000)


def parse(raw: bytes, *, topic: str) -> Alert:
    """Decode one Babamul message (a one-record Avro container).

    Raises
    ------
    HostileMessage, MalformedMessage
        Oversized, not Avro, corrupt, several records, or another schema.
    MissingField, InvalidValue
        See :func:`mma.handlers.ztf.alert_from_candidate`.
    """
    container = avro.read_container(raw, max_bytes=MAX_MESSAGE_BYTES, max_records=1)
    name = container.schema.get("name")
    if name != SCHEMA_NAME or len(container.records) != 1:
        raise MalformedMessage(f"Avro container ({name!r}) is not one {SCHEMA_NAME} record")
    return alert_from_record(container.records[0])
