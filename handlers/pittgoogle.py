"""Pitt-Google broker ZTF light-curve rows (JSON) → :class:`~mma.models.Alert`.

Pitt-Google serves a ZTF object's light curve as rows of its BigQuery tables::

    {"objectId": "ZTF19acfixfe",
     "rows": [{"jd": 2460284.64, "fid": 2, "magpsf": 18.54, "sigmapsf": 0.078,
               "ra": 322.96, "decl": 49.23}, ...]}

A file is a light curve, not one alert: it becomes ONE Alert for its latest
detection (the row with the largest ``jd`` and a finite ``magpsf``; rows without
one are non-detections, and rows whose ``jd`` is NaN or outside 1970–2100 are
skipped). The row is renamed to a ZTF ``candidate``
(``decl`` → ``dec``; any further candidate columns such as ``rb``, ``drb``,
``isdiffpos``, ``ssdistnr``, ``sgscore1``, ``distpsnr1`` are kept) and mapped by
:func:`mma.handlers.ztf.alert_from_candidate` with ``broker="Pitt-Google"``, so
``time`` is ``jd`` (UTC), ``band`` from ``fid``, magnitude ``magpsf``/``sigmapsf``.
``first_detection`` is the earliest detection in the file (``jdstarthist`` is
set to it). ``quality`` adds ``n_detections`` and ``pittgoogle_n_rows``.

``alert_id`` is the row's ``candid`` when the query returned one. The rows in the
corpus have none, so the id is then the synthetic ``"pittgoogle:<objectId>:<time
ISO UTC>"``: stable (the same light curve always gives the same id, so a
re-delivery is an update, not a new alert) and unique per object and epoch. It
is NOT the ZTF candid, so the same detection from the ZTF stream has another
alert_id; match across streams on (object_id, time). Pitt-Google gives no
host distance.

``history`` (``history_source="pittgoogle.rows"``): the other detection rows with
``isdiffpos`` true and ``sigmapsf <= 0.2171`` mag (S/N >= 5), JD UTC → UTC, by
:func:`mma.formats.history.light_curve_times`. Rows of the usual query (``jd``,
``fid``, ``magpsf``, ``sigmapsf``, position) carry no ``isdiffpos``: a magnitude
does not tell a brightening from a fading, so such a light curve gives no
history (``history_source`` None: not told), as the corpus file does.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from mma.errors import MalformedMessage, MissingField
from mma.formats import ids
from mma.formats.gcn_json import load_json
from mma.formats.history import history_jd, light_curve_times
from mma.handlers import ztf
from mma.handlers.ztf import alert_from_candidate
from mma.models import Alert

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "alert_from_rows", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "pittgoogle"
KIND = "alert"
DEFAULT_TOPICS: tuple[str, ...] = ()  # users configure their Pitt-Google topics
FIRST_LIGHT = ztf.FIRST_LIGHT  # Pitt-Google serves ZTF light curves: their times are ZTF's

MAX_MESSAGE_BYTES = 16 * 2**20
HISTORY_SOURCE = "pittgoogle.rows"
_JSON_OBJECT = re.compile(rb"^(?:\xef\xbb\xbf)?\s*\{")
_ZTF_OBJECT = re.compile(rb'"objectId"\s*:\s*"ZTF')


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _candidate(row: Mapping[str, Any]) -> dict[str, Any]:
    cand = dict(row)
    if "dec" not in cand and "decl" in cand:
        cand["dec"] = cand.pop("decl")
    return cand


def alert_from_rows(doc: Mapping[str, Any]) -> Alert:
    """Map a Pitt-Google light curve (``objectId`` + ``rows``) to its latest detection."""
    # Checked first: the id appears in every message below and in the synthetic alert id.
    object_id = ids.text_id(doc.get("objectId"), field="objectId", pattern=ids.ZTF_OBJECT,
                            what="a ZTF object id (ZTF, 2 digits, 7 lower-case letters)")
    rows = doc.get("rows")
    if not isinstance(rows, list):
        raise MissingField("'rows' list is missing")
    # A row at an impossible jd (NaN, outside 1970–2100) is skipped, not fatal.
    detections = [r for r in rows if isinstance(r, Mapping)
                  and history_jd(r.get("jd")) is not None and _finite(r.get("magpsf")) is not None]
    if not detections:
        raise MissingField(f"light curve of {object_id} has no row with valid jd and magpsf")
    newest = max(detections, key=lambda r: r["jd"])
    cand = _candidate(newest)
    cand["jdstarthist"] = min(r["jd"] for r in detections)
    extra = {"n_detections": len(detections), "pittgoogle_n_rows": len(rows)}
    history = light_curve_times(detections, newest)
    candid = cand.get("candid")
    if isinstance(candid, int) and not isinstance(candid, bool) and candid > 0:
        return alert_from_candidate(cand, object_id=object_id, candid=candid,
                                    broker="Pitt-Google", extra_quality=extra,
                                    history=history, history_source=HISTORY_SOURCE)
    # No candid: alert_from_candidate needs one, so a placeholder is given and
    # replaced by the synthetic id (see the module docstring).
    cand.pop("candid", None)
    alert = alert_from_candidate(cand, object_id=object_id, candid=1,
                                 broker="Pitt-Google", extra_quality=extra,
                                 history=history, history_source=HISTORY_SOURCE)
    return dataclasses.replace(
        alert, alert_id=f"{NAME}:{object_id}:{alert.time.isoformat()}",
        quality={**alert.quality, "candid": None})


def sniff(raw: bytes) -> bool:
    """True for a JSON object with a ZTF ``objectId`` and a ``rows`` list of ``jd``/``magpsf``."""
    head = raw[:4096]
    return (_JSON_OBJECT.match(head) is not None and _ZTF_OBJECT.search(head) is not None
            and b'"rows"' in head and b'"jd"' in raw and b'"magpsf"' in raw)


def parse(raw: bytes, *, topic: str) -> Alert:
    """Decode one Pitt-Google light curve (JSON).

    Raises
    ------
    HostileMessage, MalformedMessage
        Oversized or not strict JSON.
    MissingField, InvalidValue
        See :func:`mma.handlers.ztf.alert_from_candidate`.
    """
    doc = load_json(raw, max_bytes=MAX_MESSAGE_BYTES)
    if "rows" not in doc:
        raise MalformedMessage("JSON object is not a Pitt-Google light curve (no 'rows')")
    return alert_from_rows(doc)
