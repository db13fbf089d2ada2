"""AMPEL ``LSSTReport`` Avro (one report per Rubin diaObject) → :class:`~mma.models.Alert`.

AMPEL publishes, per LSST object, a report (Avro object container, schema
``ampel.contrib.hu.model.LSSTReport.LSSTReport``) with the object (``id`` =
``diaObjectId``, mean ``ra``/``dec``), the ``photometry`` light curve, classifier
outputs, host matches and features. A report is a light curve, not one alert:
it becomes ONE Alert for its latest detection.

Field mapping:

* A *detection* is a photometric point that is a DIA source (``source`` =
  ``LSST_DP``), or a forced-photometry point (``LSST_FP``, id =
  ``diaForcedSourceId``) with ``flux/fluxerr ≥ 5``, the threshold at which the
  Rubin pipeline itself detects on difference images. Forced points below it
  are measurements, not detections, and a point whose ``time`` is NaN or not
  in 1972–2100 is skipped (one corrupt point does not cost the report). The
  latest detection gives ``alert_id``
  (its own ``id``: a diaSourceId or diaForcedSourceId), ``time``, ``band``
  (``lsstr`` → ``r``) and the magnitude; ``first_detection`` is the earliest.
* ``time``: AMPEL writes ``time`` as a Julian date made from ``midpointMjdTai``
  (JD = MJD + 2400000.5, still on the TAI scale), so it goes through the Rubin
  MJD TAI → UTC conversion (:func:`mma.formats.rubin.tai_mjd_to_utc`).
* ``magnitude`` from ``flux`` with the point's ``zp`` (``zpsys`` ``ab``; 31.4 = nJy),
  via :func:`mma.handlers.rubin.flux_to_mag`; None for a non-positive flux.
* Position: the report's object position (points carry none) [deg ICRS].
* ``distance_mpc``: the first ``host`` with a finite positive ``redshift``,
  converted with ``astropy.cosmology.Planck18.luminosity_distance`` (AMPEL gives
  a redshift, not a distance; Planck 2018 is astropy's default cosmology). The
  host ``distance`` field (the host–transient separation, not a luminosity
  distance) goes to ``quality["ampel_host_distance"]`` unconverted.
* ``history`` (``history_source="ampel.photometry"``): the times of the other
  photometric points with a positive flux at >= 5 sigma (``flux > 0``,
  ``flux / fluxerr >= 5``), DIA or forced alike: a forced point at that level is a
  detection here (above), and a DIA point below it is not history. Points
  with a NaN flux or an impossible time are skipped.
* ``quality``: a report has no Rubin vetting fields (no reliability, dipole or
  pixel flags); ``isNegative`` is derived from the sign of the flux
  (``isNegative_derived`` = True), plus ``snr``, ``n_detections``, ``n_points`` and
  AMPEL's ids and outputs under ``ampel_``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from mma.errors import BadMessage, InvalidValue, MalformedMessage, MissingField
from mma.formats import avro, ids
from mma.formats.history import finish_history, is_positive_detection, mjd_tai_time
from mma.formats.rubin import tai_mjd_to_utc
from mma.handlers import rubin
from mma.handlers.rubin import AB_ZEROPOINT_NJY, flux_to_mag
from mma.models import Alert

__all__ = [
    "DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "alert_from_report", "parse", "sniff", "split",
]

logger = logging.getLogger(__name__)

NAME = "ampel"
KIND = "alert"
DEFAULT_TOPICS: tuple[str, ...] = ()  # users configure their AMPEL channel topics
FIRST_LIGHT = rubin.FIRST_LIGHT  # AMPEL's LSST reports carry Rubin's own epochs

SCHEMA_SUFFIX = "LSSTReport"  # ampel.contrib.hu.model.LSSTReport.LSSTReport
MAX_MESSAGE_BYTES = 16 * 2**20
MAX_FILE_BYTES = 2**30
MAX_FILE_RECORDS = avro.MAX_FILE_RECORDS
JD_MJD_OFFSET = 2400000.5
DETECTION_SNR = 5.0
DIA_SOURCE = "LSST_DP"
HISTORY_SOURCE = "ampel.photometry"


def _schema_ok(name: Any) -> bool:
    return isinstance(name, str) and name.rsplit(".", 1)[-1] == SCHEMA_SUFFIX


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _is_detection(point: Mapping[str, Any]) -> bool:
    time = _finite(point.get("time"))
    # A point at an impossible time (NaN, outside 1972–2100) is skipped, not fatal:
    # one corrupt point must not cost the report (nor yield an out-of-range time).
    if time is None or mjd_tai_time(time - JD_MJD_OFFSET) is None:
        return False
    if point.get("source") == DIA_SOURCE:
        return True
    flux, err = _finite(point.get("flux")), _finite(point.get("fluxerr"))
    return flux is not None and err is not None and err > 0 and flux / err >= DETECTION_SNR


def _utc(jd: float) -> Any:
    return tai_mjd_to_utc(jd - JD_MJD_OFFSET)


def _history(points: list[Any]) -> list[datetime]:
    """Times (UTC) of the points with a positive flux at >= 5 sigma; bad points skipped."""
    times = []
    for point in points:
        if isinstance(point, Mapping) and is_positive_detection(point.get("flux"),
                                                                point.get("fluxerr")):
            jd = _finite(point.get("time"))  # JD on the TAI scale (module docstring)
            when = None if jd is None else mjd_tai_time(jd - JD_MJD_OFFSET)
            if when is not None:
                times.append(when)
    return times


def _magnitude(point: Mapping[str, Any]) -> tuple[float | None, float | None]:
    zp = _finite(point.get("zp"))
    if zp is None or str(point.get("zpsys", "")).lower() != "ab":
        return None, None
    mag, err = flux_to_mag(_finite(point.get("flux")), _finite(point.get("fluxerr")))
    return (None if mag is None else mag + zp - AB_ZEROPOINT_NJY), err


def _host(hosts: Any) -> tuple[Mapping[str, Any] | None, float | None]:
    """The first host with a usable redshift, and its Planck18 luminosity distance [Mpc]."""
    for host in hosts if isinstance(hosts, list) else []:
        z = _finite(host.get("redshift")) if isinstance(host, Mapping) else None
        if z is not None and 0 < z < 20:
            from astropy.cosmology import Planck18  # slow import: only when needed

            return host, float(Planck18.luminosity_distance(z).to_value("Mpc"))
    return None, None


def _classifications(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        for model in item.get("models") or []:
            if isinstance(model, Mapping) and isinstance(model.get("probabilities"), Mapping):
                key = f"{item.get('name')}/{model.get('model')}"
                out[key] = {str(k): _finite(v) for k, v in model["probabilities"].items()}
    return out


def alert_from_report(report: Mapping[str, Any]) -> Alert:
    """Map one decoded ``LSSTReport`` record to the Alert of its latest detection."""
    obj = report.get("object")
    if not isinstance(obj, Mapping):
        raise MissingField("LSSTReport.object is missing")
    object_id = ids.integer_id(obj.get("id"), field="LSSTReport.object.id")
    ra, dec = _finite(obj.get("ra")), _finite(obj.get("dec"))
    if ra is None or dec is None:
        raise InvalidValue(f"LSSTReport.object position ra={ids.shown(obj.get('ra'))} "
                           f"dec={ids.shown(obj.get('dec'))} is not finite")
    points = report.get("photometry")
    if not isinstance(points, list):
        raise MissingField("LSSTReport.photometry is missing")
    detections = [p for p in points if isinstance(p, Mapping) and _is_detection(p)]
    if not detections:
        raise MissingField(f"LSSTReport of object {object_id} holds no detection")
    latest = max(detections, key=lambda p: p["time"])
    first = min(p["time"] for p in detections)
    point_id = ids.integer_id(latest.get("id"), field="LSSTReport.photometry.id")
    mag, mag_err = _magnitude(latest)
    flux, flux_err = _finite(latest.get("flux")), _finite(latest.get("fluxerr"))
    band = latest.get("band")
    if isinstance(band, str) and band.startswith("lsst"):
        band = band[len("lsst"):]
    host, distance = _host(report.get("host"))
    features = report.get("features")
    quality: dict[str, Any] = {
        "diaObjectId": object_id,
        "isNegative": None if flux is None else flux < 0,
        "isNegative_derived": True,
        "psfFlux": flux,
        "psfFluxErr": flux_err,
        "snr": None if flux is None or not flux_err else flux / flux_err,
        "n_detections": len(detections),
        "n_points": len(points),
        "ampel_state": report.get("state"),
        "ampel_object_source": obj.get("source"),
        "ampel_external_id": obj.get("external_id"),
        "ampel_photometry_source": latest.get("source"),
        "ampel_classification": _classifications(report.get("classification")),
        "ampel_features": {
            str(f.get("name")): {str(k): _finite(v) for k, v in (f.get("features") or {}).items()}
            for f in (features if isinstance(features, list) else [])
            if isinstance(f, Mapping)
        },
        "ampel_host_name": host.get("name") if host else None,
        "ampel_host_source": host.get("source") if host else None,
        "ampel_host_redshift": _finite(host.get("redshift")) if host else None,
        "ampel_host_redshift_error": _finite(host.get("redshift_error")) if host else None,
        "ampel_host_distance": _finite(host.get("distance")) if host else None,
    }
    time = _utc(latest["time"])
    return Alert(
        alert_id=str(point_id),
        object_id=str(object_id),
        survey="LSST",
        ra_deg=ra,
        dec_deg=dec,
        time=time,
        band=band if isinstance(band, str) else None,
        magnitude=mag,
        magnitude_err=mag_err,
        first_detection=_utc(first),
        quality=quality,
        broker="AMPEL",
        distance_mpc=distance,
        # The latest point is not earlier than itself: finish_history leaves it out.
        history=finish_history(_history(points), time, FIRST_LIGHT),
        history_source=HISTORY_SOURCE,
    )


def sniff(raw: bytes) -> bool:
    """True for an Avro container whose writer schema is AMPEL's ``LSSTReport``."""
    if not avro.is_container(raw):
        return False
    try:
        return _schema_ok(avro.container_schema(raw, max_bytes=MAX_FILE_BYTES).get("name"))
    except BadMessage:
        return False


def split(raw: bytes) -> Iterator[bytes]:
    """One-record containers from an AMPEL report container file."""
    return avro.split_container(raw, max_bytes=MAX_FILE_BYTES, max_records=MAX_FILE_RECORDS)


def parse(raw: bytes, *, topic: str) -> Alert:
    """Decode one AMPEL report (a one-record ``LSSTReport`` Avro container).

    Raises
    ------
    HostileMessage, MalformedMessage
        Oversized, not Avro, corrupt, several records, or another schema.
    MissingField, InvalidValue
        No object id, no detection, non-finite position, time outside 1972–2100.
    """
    container = avro.read_container(raw, max_bytes=MAX_MESSAGE_BYTES, max_records=1,
                                    max_block_bytes=MAX_MESSAGE_BYTES)
    name = container.schema.get("name")
    if not _schema_ok(name) or len(container.records) != 1:
        raise MalformedMessage(f"Avro container ({ids.shown(name)}) is not one AMPEL "
                               "LSSTReport record")
    return alert_from_report(container.records[0])
