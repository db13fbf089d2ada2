"""ANTARES broker locus JSON (one light curve per locus) → :class:`~mma.models.Alert`.

An ANTARES *locus* groups the alerts of one sky position: ``locus_id``
(``ANT2019b5sdo``), mean ``ra``/``dec``, ``properties`` (for LSST:
``survey.lsst.dia_object_id``), optional ``tags``/``catalogs``, and ``alerts``,
whose fields carry a survey prefix. A locus becomes ONE Alert for its latest
detection. Each alert's fields are read from the alert itself or, as the ANTARES
API nests them, from its ``properties``.

* LSST (``lsst_diaSource_*`` fields; every such row with a valid epoch is a DIA
  source, i.e. a detection): ``ra``/``dec`` [deg ICRS] of the latest source, ``time`` from
  ``midpointMjdTai`` (MJD TAI → UTC, :func:`mma.formats.rubin.tai_mjd_to_utc`),
  ``band``, magnitude from ``psfFlux``/``psfFluxErr`` [nJy]
  (:func:`mma.handlers.rubin.flux_to_mag`), ``quality`` with ``reliability``,
  ``isNegative`` (derived from the flux sign when absent), ``isDipole`` and
  ``pixelFlags_*`` when present. ``object_id`` = ``diaObjectId`` of the source,
  else the locus' ``dia_object_id``, else the locus id.
* ZTF (``ztf_*`` fields, rows with a ``ztf_magpsf`` and a valid ``ztf_jd`` are
  detections): the prefix is
  stripped and the mapping is :func:`mma.handlers.ztf.alert_from_candidate`,
  so ``alert_id`` is the ``ztf_candid`` and ``quality`` has ``rb``, ``drb``...

``alert_id`` is the detection's own id (``lsst_diaSource_diaSourceId``,
``ztf_candid``) when the row has one. The LSST locus rows ANTARES returns do not
carry it, so the id is then the synthetic ``"antares:<object_id>:<time ISO UTC>"``:
stable (the same locus always gives the same id, so a re-delivery is an update,
not a new alert) and unique per object and epoch. It is NOT the Rubin
diaSourceId, so the same detection seen through the Rubin stream has another
alert_id; match across streams on (object_id, time). ``first_detection`` is the
earliest detection in the locus; ``quality`` adds ``n_detections`` and
``antares_locus_id``, ``antares_tags``, ``antares_catalogs``. ANTARES gives no
host distance. A row whose epoch is NaN or outside 1970/1972–2100 is skipped:
one corrupt row does not cost the locus.

``history`` (``history_source="antares.alerts"``): the times of the locus' other
detections that are positive at >= 5 sigma, by the survey's own rule: LSST rows
with ``psfFlux / psfFluxErr >= 5``, ``psfFlux > 0`` and ``isNegative`` not true
(:func:`mma.formats.history.is_positive_detection`; MJD TAI → UTC), ZTF rows with
``isdiffpos`` true and ``sigmapsf <= 0.2171`` mag
(:func:`mma.formats.history.detection_time`; JD UTC). Rows with a NaN flux or a bad
epoch are skipped. When the other rows carry none of the fields that test needs
(no ``psfFluxErr``; no ``isdiffpos``/``sigmapsf``), the locus cannot tell and
``history_source`` is None.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mma.errors import InvalidValue, MalformedMessage, MissingField
from mma.formats import ids
from mma.formats.gcn_json import load_json
from mma.formats.history import (
    finish_history,
    history_jd,
    jd_to_datetime,
    light_curve_times,
    mjd_tai_time,
    prv_dia_source_times,
)
from mma.formats.rubin import tai_mjd_to_utc
from mma.handlers import rubin, ztf
from mma.handlers.rubin import flux_to_mag
from mma.handlers.ztf import alert_from_candidate
from mma.models import Alert

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "alert_from_locus", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "antares"
KIND = "alert"
DEFAULT_TOPICS: tuple[str, ...] = ()  # users configure their ANTARES filter topics
# ANTARES relays ZTF (since 2019) and LSST alerts: a locus' times are the survey's,
# and its ZTF light curves start with ZTF's commissioning.
FIRST_LIGHT = min(ztf.FIRST_LIGHT, rubin.FIRST_LIGHT)

MAX_MESSAGE_BYTES = 16 * 2**20
LSST = "lsst_diaSource_"
ZTF = "ztf_"
HISTORY_SOURCE = "antares.alerts"
LSST_VETTING = ("reliability", "isNegative", "isDipole", "snr", "psfFlux", "psfFluxErr",
                "extendedness", "ssObjectId", "visit", "detector", "timeWithdrawnMjdTai")
_JSON_OBJECT = re.compile(rb"^(?:\xef\xbb\xbf)?\s*\{")


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fields(row: Any) -> Mapping[str, Any]:
    """An alert's survey fields: at its top level, or nested under ``properties``."""
    if not isinstance(row, Mapping):
        return {}
    props = row.get("properties")
    return {**row, **props} if isinstance(props, Mapping) else row


def _positive_id(value: Any, field: str) -> int | None:
    """A row's own positive integer id, or None (absent, not an int, not positive).

    An int beyond 64 bits is refused (InvalidValue): no survey id is that long.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return ids.integer_id(value, field=field)


def _synthetic_id(object_id: str, time: datetime) -> str:
    return f"{NAME}:{object_id}:{time.isoformat()}"


def _locus_extra(locus: Mapping[str, Any], n: int) -> dict[str, Any]:
    tags, catalogs = locus.get("tags"), locus.get("catalogs")
    return {
        "n_detections": n,
        "antares_locus_id": locus["locus_id"],  # checked by alert_from_locus
        "antares_tags": [str(t) for t in tags] if isinstance(tags, list) else None,
        "antares_catalogs": [str(c) for c in catalogs] if isinstance(catalogs, list) else None,
    }


def _lsst_object_id(locus: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    own = _positive_id(row.get(f"{LSST}diaObjectId"), f"{LSST}diaObjectId")
    if own is not None:
        return str(own)
    props = locus.get("properties")
    survey = props.get("survey") if isinstance(props, Mapping) else None
    lsst = survey.get("lsst") if isinstance(survey, Mapping) else None
    found = lsst.get("dia_object_id") if isinstance(lsst, Mapping) else None
    if isinstance(found, list) and found and found[0] not in (None, ""):
        return ids.lsst_id_text(found[0], field="properties.survey.lsst.dia_object_id")
    return str(locus["locus_id"])


def _lsst_history(detections: list[Mapping[str, Any]],
                  latest: Mapping[str, Any]) -> list[datetime] | None:
    """Times (UTC) of the other LSST rows at >= 5 sigma positive; None if they cannot tell."""
    earlier = [{k[len(LSST):]: v for k, v in r.items() if k.startswith(LSST)}
               for r in detections if r is not latest]
    if earlier and not any("psfFlux" in r and "psfFluxErr" in r for r in earlier):
        return None
    return prv_dia_source_times(earlier)


def _alert_lsst(locus: Mapping[str, Any], rows: list[Mapping[str, Any]]) -> Alert:
    key = f"{LSST}midpointMjdTai"
    # A row at an impossible epoch (NaN, outside 1972–2100) is skipped, not fatal.
    detections = [r for r in rows if mjd_tai_time(r.get(key)) is not None]
    if not detections:
        raise MissingField(f"locus has no alert with a valid {key}")
    latest = max(detections, key=lambda r: r[key])
    ra, dec = _finite(latest.get(f"{LSST}ra")), _finite(latest.get(f"{LSST}dec"))
    if ra is None or dec is None:
        raise InvalidValue(f"{LSST}ra/dec = {ids.shown(latest.get(f'{LSST}ra'))}/"
                           f"{ids.shown(latest.get(f'{LSST}dec'))} is not a finite position")
    time = tai_mjd_to_utc(latest[key])
    first = tai_mjd_to_utc(min(r[key] for r in detections))
    flux = _finite(latest.get(f"{LSST}psfFlux"))
    mag, mag_err = flux_to_mag(flux, _finite(latest.get(f"{LSST}psfFluxErr")))
    object_id = _lsst_object_id(locus, latest)
    own = {k[len(LSST):]: v for k, v in latest.items() if k.startswith(LSST)}
    quality: dict[str, Any] = {}
    for name in LSST_VETTING:
        value = own.get(name)
        quality[name] = None if isinstance(value, float) and not math.isfinite(value) else value
    quality.update({k: v for k, v in own.items() if k.startswith("pixelFlags")})
    if "isNegative" not in own:
        quality["isNegative"] = None if flux is None else flux < 0
        quality["isNegative_derived"] = True
    quality["diaObjectId"] = object_id
    quality.update(_locus_extra(locus, len(detections)))
    source_id = _positive_id(own.get("diaSourceId"), f"{LSST}diaSourceId")
    band = own.get("band")
    history = _lsst_history(detections, latest)
    return Alert(
        alert_id=str(source_id) if source_id is not None else _synthetic_id(object_id, time),
        object_id=object_id, survey="LSST", ra_deg=ra, dec_deg=dec, time=time,
        band=band if isinstance(band, str) else None, magnitude=mag, magnitude_err=mag_err,
        first_detection=first, quality=quality, broker="ANTARES",
        history=finish_history(history, time, FIRST_LIGHT),
        history_source=None if history is None else HISTORY_SOURCE,
    )


def _alert_ztf(locus: Mapping[str, Any], rows: list[Mapping[str, Any]]) -> Alert:
    cands = [{k[len(ZTF):]: v for k, v in r.items() if k.startswith(ZTF)} for r in rows]
    detections = [c for c in cands
                  if history_jd(c.get("jd")) is not None and _finite(c.get("magpsf")) is not None]
    if not detections:
        raise MissingField("locus has no ZTF alert with a valid ztf_jd and a finite ztf_magpsf")
    newest = max(detections, key=lambda c: c["jd"])
    latest = dict(newest)
    latest["jdstarthist"] = min(c["jd"] for c in detections)  # earliest detection in the locus
    object_id = latest.get("object_id") or latest.get("objectId") or locus["locus_id"]
    # The locus id stands in for a ZTF row without its objectId.
    pattern = ids.ANTARES_LOCUS if object_id == locus["locus_id"] else ids.ZTF_OBJECT
    candid = latest.get("candid")
    extra = _locus_extra(locus, len(detections))
    history = light_curve_times(detections, newest)
    if _positive_id(candid, f"{ZTF}candid") is not None:
        return alert_from_candidate(latest, object_id=object_id, candid=candid,
                                    broker="ANTARES", extra_quality=extra, history=history,
                                    history_source=HISTORY_SOURCE, object_pattern=pattern)
    # No candid: build with a placeholder, then give the synthetic id (see module doc).
    latest.pop("candid", None)
    alert = alert_from_candidate(latest, object_id=object_id, candid=1,
                                 broker="ANTARES", extra_quality=extra, history=history,
                                 history_source=HISTORY_SOURCE, object_pattern=pattern)
    return dataclasses.replace(
        alert, alert_id=_synthetic_id(alert.object_id, jd_to_datetime(latest["jd"])),
        quality={**alert.quality, "candid": None})


def alert_from_locus(locus: Mapping[str, Any]) -> Alert:
    """Map one decoded ANTARES locus to the Alert of its latest detection."""
    locus_id = ids.text_id(locus.get("locus_id"), field="locus_id", pattern=ids.ANTARES_LOCUS,
                           what="an ANTARES locus id (ANT, year, base-36 serial)")
    alerts = locus.get("alerts")
    if not isinstance(alerts, list):
        raise MissingField("locus has no 'alerts' list")
    rows = [_fields(a) for a in alerts]
    if any(k.startswith(LSST) for r in rows for k in r):
        return _alert_lsst(locus, [r for r in rows if any(k.startswith(LSST) for k in r)])
    if any(k.startswith(ZTF) for r in rows for k in r):
        return _alert_ztf(locus, rows)
    raise MissingField(f"locus {locus_id} has no lsst_diaSource_* or ztf_* alert fields")


def sniff(raw: bytes) -> bool:
    """True for a JSON object with ``locus_id``, ``alerts`` and survey-prefixed alert fields."""
    return (_JSON_OBJECT.match(raw[:64]) is not None and b'"locus_id"' in raw[:4096]
            and b'"alerts"' in raw and (b'"lsst_diaSource_' in raw or b'"ztf_' in raw))


def parse(raw: bytes, *, topic: str) -> Alert:
    """Decode one ANTARES locus (JSON).

    Raises
    ------
    HostileMessage, MalformedMessage
        Oversized or not strict JSON.
    MissingField, InvalidValue
        No locus id, no detection, non-finite position, time outside 1972–2100.
    """
    doc = load_json(raw, max_bytes=MAX_MESSAGE_BYTES)
    if "locus_id" not in doc:
        raise MalformedMessage("JSON object is not an ANTARES locus (no locus_id)")
    return alert_from_locus(doc)
