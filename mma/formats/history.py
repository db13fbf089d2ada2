"""Packet history: earlier detections in an alert's container → ``Alert.history``.

The rules here are shared by every alert handler that fills ``Alert.history``
(ZTF, Rubin and the brokers re-publishing them), so that a detection counts the
same whatever container carried it:

* ZTF records (``prv_candidates``, broker light-curve rows): ``isdiffpos`` true and
  ``sigmapsf`` <= :data:`SIGMAPSF_MAX` (S/N >= 5), epoch ``jd`` [JD UTC]; see
  :func:`detection_time`, :func:`prv_candidate_times` and :func:`light_curve_times`.
  Upper limits (no ``candid``) are never history.
* Rubin records (``prvDiaSources``, broker rows): ``psfFlux / psfFluxErr >= 5``,
  ``psfFlux > 0`` and ``isNegative`` not true, epoch [MJD TAI]; see
  :func:`is_positive_detection`, :func:`mjd_tai_time` and
  :func:`prv_dia_source_times`.

One entry with a bad value (NaN, wrong type, impossible epoch) is skipped rather
than raised: it must not cost the alert. :func:`finish_history` makes the final
tuple: earlier than the alert, sorted, unique, the newest :data:`HISTORY_CAP`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from mma.errors import InvalidValue
from mma.formats.ids import shown
from mma.formats.rubin import MJD_MAX, MJD_MIN, tai_mjd_to_utc

__all__ = [
    "DETECTION_SNR", "HISTORY_CAP", "JD_MAX", "JD_MIN", "SIGMAPSF_MAX", "detection_time",
    "finish_history", "history_jd", "is_positive_detection", "isdiffpos_to_bool",
    "jd_to_datetime", "light_curve_times", "mjd_tai_time", "prv_candidate_times",
    "prv_dia_source_times",
]

HISTORY_CAP = 256
"""Most history times an Alert keeps: the newest. A ZTF packet lists 30 days, usually
a few dozen entries but over a thousand in high-cadence fields (1,382 detections in
one row of the Fink night of 2024-01-15); a Rubin packet repeats up to a year of
``prvDiaSources``. Coincidence windows are days long, so the newest 256 keep what
matching needs while an Alert stays bounded whatever a packet holds (the database
keeps fewer still: ``mma.db.schema.HISTORY_CAP``)."""

DETECTION_SNR = 5.0
"""Signal-to-noise of a history detection: the Rubin pipeline's own difference-image
detection threshold (``psfFlux / psfFluxErr``), and ZTF's through :data:`SIGMAPSF_MAX`."""
SIGMAPSF_MAX = 2.5 / math.log(10) / DETECTION_SNR
"""Largest ``sigmapsf`` [mag] of a >= 5 sigma detection: 1.0857/5 = 0.2171 mag, since
sigma_mag = 2.5/ln(10) * sigma_flux/flux."""

_JD_UNIX_EPOCH = 2440587.5
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# ZTF started in 2017; a JD outside 1970–2100 is a corrupt field, not a time.
JD_MIN, JD_MAX = 2440587.5, 2488069.5


def jd_to_datetime(jd: float) -> datetime:
    """Convert a Julian date on the UTC time scale to an aware UTC datetime.

    Exact arithmetic from the Unix epoch (JD 2440587.5), which, like ZTF's
    ``jd``, ignores leap seconds; resolution is the float's, about 40 µs.
    """
    return _UNIX_EPOCH + timedelta(days=jd - _JD_UNIX_EPOCH)


def isdiffpos_to_bool(value: Any) -> bool | None:
    """Normalise ZTF ``isdiffpos`` ('t'/'1' or 'f'/'0'; int in prototypes) to a bool.

    True means a positive difference (the source brightened against the template).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("t", "1", "true"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("f", "0", "false"):
        return False
    raise InvalidValue(f"candidate.isdiffpos {shown(value)} is not t/f/1/0")


def _real(value: Any) -> float | None:
    """A finite int or float as float; None for anything else (bool, str, None, NaN, inf...)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def history_jd(value: Any) -> datetime | None:
    """A history entry's ``jd`` [JD UTC] as an aware UTC datetime; None if not a valid time.

    Unlike the alert's own ``jd`` (which raises), a NaN, ill-typed or out-of-range
    (1970–2100) epoch in one history entry must not cost the alert: it is skipped.
    """
    jd = _real(value)
    if jd is None or not JD_MIN <= jd <= JD_MAX:
        return None
    return jd_to_datetime(jd)


def detection_time(entry: Any) -> datetime | None:
    """Time of a ZTF detection record if it is positive and at >= 5 sigma, else None.

    Parameters
    ----------
    entry : mapping
        A ZTF ``prv_candidate`` or ``candidate``-like record: ``jd`` [JD UTC],
        ``isdiffpos`` and ``sigmapsf`` [mag].

    Returns
    -------
    datetime or None
        Aware UTC time of ``jd`` when ``isdiffpos`` is true and
        0 < ``sigmapsf`` <= :data:`SIGMAPSF_MAX`; None otherwise, and for any
        ill-typed, NaN or out-of-range value: one bad history entry must not
        cost the alert, so it is skipped rather than raised.
    """
    if not isinstance(entry, Mapping):
        return None
    try:
        positive = isdiffpos_to_bool(entry.get("isdiffpos"))
    except InvalidValue:
        return None
    sigma = _real(entry.get("sigmapsf"))
    if positive is not True or sigma is None or not 0 < sigma <= SIGMAPSF_MAX:
        return None
    return history_jd(entry.get("jd"))


def prv_candidate_times(prv: Any, *, candid: Any = None) -> list[datetime] | None:
    """Times of the positive >= 5 sigma detections in a ZTF ``prv_candidates`` array.

    Parameters
    ----------
    prv : list or None
        The packet's ``prv_candidates``: detections (``candid`` set) and upper
        limits (``candid`` null), each with ``jd`` [JD UTC].
    candid : int, optional
        The alert's own ``candid``: an entry repeating it is the current
        detection, not history.

    Returns
    -------
    list of datetime or None
        Aware UTC times, unsorted (see :func:`finish_history`); None when *prv*
        is not an array at all (null or absent: the packet tells nothing).
        Upper limits, negative and < 5 sigma detections and entries with bad
        values are left out.
    """
    if not isinstance(prv, list | tuple):
        return None
    times = []
    for entry in prv:
        if not isinstance(entry, Mapping):
            continue
        own = entry.get("candid")
        # An upper limit has no candid; a string or float id is not a ZTF detection.
        if isinstance(own, bool) or not isinstance(own, int) or own == candid:
            continue
        when = detection_time(entry)
        if when is not None:
            times.append(when)
    return times


def light_curve_times(rows: Iterable[Mapping[str, Any]],
                      latest: Mapping[str, Any]) -> list[datetime] | None:
    """History from a broker's ZTF light curve: rows that are all detections.

    Parameters
    ----------
    rows : iterable of mapping
        The detections (``jd`` [JD UTC], ``isdiffpos``, ``sigmapsf``), the
        alert's own among them.
    latest : mapping
        The row that became the alert (left out, compared by identity).

    Returns
    -------
    list of datetime or None
        Times of the other rows passing :func:`detection_time`; None when there
        are other rows but none carries ``isdiffpos`` and ``sigmapsf`` (the
        light curve cannot tell a positive 5-sigma detection: not told). With no
        other row, an empty list: the light curve says there is no earlier one.
    """
    earlier = [r for r in rows if r is not latest]
    if earlier and not any("isdiffpos" in r and "sigmapsf" in r for r in earlier):
        return None
    return [t for r in earlier if (t := detection_time(r)) is not None]


def is_positive_detection(flux: Any, err: Any, negative: Any = None) -> bool:
    """True for a positive difference flux at >= 5 sigma.

    Parameters
    ----------
    flux, err : float
        PSF difference flux and its 1-sigma error, in any one unit (nJy for Rubin).
    negative : bool, optional
        The pipeline's ``isNegative``; True excludes the source whatever the flux
        (None or absent, as in v7: the flux sign alone decides).

    Returns
    -------
    bool
        ``flux > 0``, ``err > 0`` and ``flux / err >= 5``, all finite, and
        *negative* not True. False for any NaN, infinite or ill-typed value.
    """
    f, e = _real(flux), _real(err)
    if negative is True or f is None or e is None or f <= 0 or e <= 0:
        return False
    return f / e >= DETECTION_SNR


def mjd_tai_time(mjd_tai: Any) -> datetime | None:
    """:func:`~mma.formats.rubin.tai_mjd_to_utc` for a history entry: None, not an error.

    A NaN, ill-typed or out-of-range (1972–2100) epoch in one history entry must
    not cost the alert: the entry is skipped.
    """
    mjd = _real(mjd_tai)
    if mjd is None or not MJD_MIN <= mjd <= MJD_MAX:
        return None
    return tai_mjd_to_utc(mjd)


def prv_dia_source_times(history: Any, *, time_key: str = "midpointMjdTai",
                         flux_key: str = "psfFlux",
                         err_key: str = "psfFluxErr") -> list[datetime] | None:
    """Times of the positive >= 5 sigma sources in a ``prvDiaSources`` array.

    Parameters
    ----------
    history : list or None
        ``prvDiaSources`` items: at least *time_key* [MJD TAI], *flux_key* and
        *err_key* [nJy], and ``isNegative`` where the schema has it (v8+).
    time_key, flux_key, err_key : str
        Field names (ELAsTiCC: ``midPointTai``, ``psFlux``, ``psFluxErr``).

    Returns
    -------
    list of datetime or None
        Aware UTC times, unsorted (see :func:`finish_history`); None when
        *history* is not an array (null: the packet tells nothing). Entries
        failing :func:`is_positive_detection` or with a bad epoch are left out.
    """
    if not isinstance(history, list | tuple):
        return None
    times = []
    for entry in history:
        if not isinstance(entry, Mapping) or not is_positive_detection(
                entry.get(flux_key), entry.get(err_key), entry.get("isNegative")):
            continue
        when = mjd_tai_time(entry.get(time_key))
        if when is not None:
            times.append(when)
    return times


def finish_history(times: Iterable[datetime] | None, before: datetime,
                   since: datetime | None = None) -> tuple[datetime, ...]:
    """Make ``Alert.history`` from detection times: earlier only, sorted, unique, capped.

    Parameters
    ----------
    times : iterable of datetime, or None
        Aware UTC times of qualifying detections (None: no history told).
    before : datetime
        The alert's own detection time (UTC): that time and later ones are not
        *earlier* detections (the current one, or a packet listing later epochs).
    since : datetime, optional
        The source's first light (the handler's ``FIRST_LIGHT``): an entry
        before it is a corrupt epoch, skipped like any other bad entry.

    Returns
    -------
    tuple of datetime
        Ascending, without repeats (two CCD quadrants of one exposure give one
        time), the newest :data:`HISTORY_CAP`.
    """
    if times is None:
        return ()
    kept = sorted({t for t in times if t < before and (since is None or t >= since)})
    return tuple(kept[-HISTORY_CAP:])
