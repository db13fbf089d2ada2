"""BOOM/Babamul enriched ZTF alerts (``BabamulZtfAlert`` Avro) → :class:`~mma.models.Alert`.

Babamul (Caltech BOOM) re-publishes ZTF alerts on ``babamul.ztf.*`` Kafka topics as
Avro object containers with the schema embedded. The record keeps
the ZTF ``candid``, ``objectId`` and ``candidate`` (``isdiffpos`` as a boolean, plus
BOOM's ``psfFlux``/``band`` additions), so the mapping is
:func:`mma.handlers.ztf.alert_from_candidate` with ``broker="Babamul"``. BOOM's
``properties`` (``rock``, ``star``, ``near_brightstar``, ``stationary``) and the
id of a matched LSST object (``survey_matches.lsst.objectId``) go to ``quality``
as ``babamul_<name>``. Babamul gives no host distance.

``history`` (``history_source="babamul.prv_candidates"``): BOOM's ``prv_candidates``
holds the object's detections, this one included, as ``AlertPhotometry`` (``jd``
[JD UTC], ``psfFlux``, negative for a negative difference, and ``psfFluxErr``, in
BOOM's flux unit; ``band``; position), not ZTF records: no ``candid``,
``isdiffpos`` or ``sigmapsf``. A positive >= 5 sigma detection is ``psfFlux > 0``
and ``psfFluxErr > 0`` with ``psfFlux / psfFluxErr >= 5``, the same test as
``isdiffpos`` true and ``sigmapsf <= 0.2171`` mag (sigma_mag = 1.0857
sigma_flux / flux). ``prv_nondetections`` (upper limits) and ``fp_hists`` (forced
photometry, not detections) are not history, nor the light curve of a matched
LSST object under ``survey_matches``: another survey's object.

LSST-side Babamul alerts (``babamul.lsst.*``) are not in the corpus and are
refused with a clear message rather than guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from mma.errors import BadMessage, MalformedMessage
from mma.formats import avro, ids
from mma.formats.history import history_jd, is_positive_detection
from mma.handlers import ztf
from mma.handlers.ztf import alert_from_candidate
from mma.models import Alert

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff", "split"]

logger = logging.getLogger(__name__)

NAME = "babamul"
KIND = "alert"
DEFAULT_TOPICS: tuple[str, ...] = ()  # babamul.ztf.<...>: users pick their topics
FIRST_LIGHT = ztf.FIRST_LIGHT  # Babamul re-publishes ZTF alerts: their times are ZTF's

SCHEMA_NAME = "BabamulZtfAlert"
MAX_MESSAGE_BYTES = 16 * 2**20
MAX_FILE_BYTES = 2**30
PROPERTY_KEYS = ("rock", "star", "near_brightstar", "stationary")
HISTORY_SOURCE = "babamul.prv_candidates"


def history_times(entries: Any) -> list[datetime] | None:
    """Times (UTC) of the positive >= 5 sigma detections in BOOM's ``prv_candidates``.

    None when the array is absent or null; entries with a NaN, non-positive or
    low-S/N flux, or a bad ``jd``, are skipped.
    """
    if not isinstance(entries, list | tuple):
        return None
    times = []
    for entry in entries:
        if isinstance(entry, Mapping) and is_positive_detection(entry.get("psfFlux"),
                                                                entry.get("psfFluxErr")):
            when = history_jd(entry.get("jd"))
            if when is not None:
                times.append(when)
    return times


def alert_from_record(record: Mapping[str, Any]) -> Alert:
    """Map one decoded ``BabamulZtfAlert`` record to an Alert with ``broker='Babamul'``."""
    props = record.get("properties")
    props = props if isinstance(props, Mapping) else {}
    extra: dict[str, Any] = {f"babamul_{k}": props.get(k) for k in PROPERTY_KEYS}
    matches = record.get("survey_matches")
    lsst = matches.get("lsst") if isinstance(matches, Mapping) else None
    lsst_id = lsst.get("objectId") if isinstance(lsst, Mapping) else None
    extra["babamul_lsst_object_id"] = None if lsst_id is None else ids.lsst_id_text(
        lsst_id, field="survey_matches.lsst.objectId")
    candidate = record.get("candidate")
    return alert_from_candidate(
        candidate if isinstance(candidate, Mapping) else {},
        object_id=record.get("objectId"), candid=record.get("candid"),
        broker="Babamul", extra_quality=extra,
        history=history_times(record.get("prv_candidates")), history_source=HISTORY_SOURCE,
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
    return avro.split_container(raw, max_bytes=MAX_FILE_BYTES, max_records=avro.MAX_FILE_RECORDS)


def parse(raw: bytes, *, topic: str) -> Alert:
    """Decode one Babamul message (a one-record Avro container).

    Raises
    ------
    HostileMessage, MalformedMessage
        Oversized, not Avro, corrupt, several records, or another schema.
    MissingField, InvalidValue
        See :func:`mma.handlers.ztf.alert_from_candidate`.
    """
    container = avro.read_container(raw, max_bytes=MAX_MESSAGE_BYTES, max_records=1,
                                    max_block_bytes=MAX_MESSAGE_BYTES)
    name = container.schema.get("name")
    if name != SCHEMA_NAME or len(container.records) != 1:
        raise MalformedMessage(f"Avro container ({ids.shown(name)}) is not one {SCHEMA_NAME} "
                               "record")
    return alert_from_record(container.records[0])
