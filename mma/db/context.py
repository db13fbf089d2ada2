"""What a human needs beside a candidate's score: its object's light curve and cutouts.

Read-only queries for the event page and the email. :func:`candidate_context`
gives, for one candidate, every stored alert of its object as a light-curve
point (vetted or not: a human judges the failed ones too, drawn apart) and the
image stamps of the newest alert of the object that has any. The stamps are
returned as the packet gave them (:class:`Stamp`): rendering them
(:mod:`mma.emitters.stamps`) parses them defensively.

Every value read here may be missing or malformed (rows written by older
versions, hostile packets): a magnitude that is not a finite number becomes
None, a row without a time or a band of the wrong type is read as None or
skipped, never raised on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from mma.db.queries import number
from mma.db.schema import alerts, coincidences, cutouts

__all__ = ["LIGHT_CURVE_CAP", "CandidateContext", "LightPoint", "Stamp", "candidate_context",
           "object_context"]

log = logging.getLogger(__name__)

LIGHT_CURVE_CAP = 2000
"""Most light-curve points returned: the object's newest alerts (a Rubin object of a
year can have thousands; a page needs no more)."""

KINDS = ("science", "template", "difference")
"""The stamp kinds, in the order they are drawn."""


@dataclass(frozen=True)
class LightPoint:
    """One stored alert of an object, as a point of its light curve.

    Attributes
    ----------
    time : datetime
        Detection time, timezone-aware UTC.
    magnitude, magnitude_err : float or None
        Difference-image PSF magnitude and its 1-sigma error [AB mag]; None when the
        survey gives none (a negative difference flux) or it is not finite.
    band : str or None
        Filter name (``g``, ``r``...).
    vetted : bool
        True when the alert passed vetting.
    alert_id : str
        Survey id of the alert.
    """

    time: datetime
    magnitude: float | None
    magnitude_err: float | None
    band: str | None
    vetted: bool
    alert_id: str


@dataclass(frozen=True)
class Stamp:
    """One image stamp of an alert, as the packet carried it.

    Attributes
    ----------
    kind : str
        ``science``, ``template`` or ``difference``.
    format : str
        ``fits.gz`` or ``fits`` as stored; readers detect gzip from the bytes anyway.
    data : bytes
        The FITS file (possibly gzip-compressed), unparsed.
    """

    kind: str
    format: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class CandidateContext:
    """A candidate's object: its light curve and its newest stamps.

    Attributes
    ----------
    object_pk : int
        ``objects.id``.
    light : tuple of LightPoint
        Every stored alert of the object (the newest :data:`LIGHT_CURVE_CAP`), oldest first.
    stamps : mapping of str to Stamp
        Kind → stamp of the newest alert of the object that has cutouts; empty if none.
    stamps_alert_id : str or None
        Survey id of the alert the stamps come from.
    """

    object_pk: int
    light: tuple[LightPoint, ...]
    stamps: Mapping[str, Stamp]
    stamps_alert_id: str | None = None


def candidate_context(conn: Connection, coincidence_id: str) -> CandidateContext | None:
    """Light curve and stamps of a candidate's object; None for no such candidate or object."""
    row = conn.execute(select(coincidences.c.object_pk).where(
        coincidences.c.coincidence_id == coincidence_id)).first()
    if row is None or row.object_pk is None:
        return None
    return object_context(conn, int(row.object_pk))


def object_context(conn: Connection, object_pk: int, *,
                   cap: int = LIGHT_CURVE_CAP) -> CandidateContext:
    """Light curve (newest *cap* alerts, oldest first) and newest stamps of an object."""
    rows = conn.execute(
        select(alerts.c.id, alerts.c.alert_id, alerts.c.time, alerts.c.band,
               alerts.c.magnitude, alerts.c.magnitude_err, alerts.c.passes_vetting)
        .where(alerts.c.object_pk == object_pk)
        .order_by(alerts.c.time.desc(), alerts.c.id.desc()).limit(cap)).all()
    points = [p for p in map(_point, rows) if p is not None]
    points.sort(key=lambda p: p.time)
    stamps, source = _newest_stamps(conn, object_pk)
    return CandidateContext(object_pk=object_pk, light=tuple(points), stamps=stamps,
                            stamps_alert_id=source)


def _newest_stamps(conn: Connection, object_pk: int) -> tuple[dict[str, Stamp], str | None]:
    """Stamps of the object's newest alert with cutouts, and that alert's survey id."""
    newest = conn.execute(
        select(alerts.c.id, alerts.c.alert_id)
        .join(cutouts, cutouts.c.alert_pk == alerts.c.id)
        .where(alerts.c.object_pk == object_pk)
        .order_by(alerts.c.time.desc(), alerts.c.id.desc()).limit(1)).first()
    if newest is None:
        return {}, None
    stamps: dict[str, Stamp] = {}
    for row in conn.execute(select(cutouts.c.kind, cutouts.c.format, cutouts.c.data)
                            .where(cutouts.c.alert_pk == newest.id)):
        if isinstance(row.kind, str) and isinstance(row.data, bytes | memoryview):
            stamps[row.kind] = Stamp(row.kind, str(row.format), bytes(row.data))
    ordered = {k: stamps[k] for k in (*KINDS, *sorted(set(stamps) - set(KINDS))) if k in stamps}
    return ordered, str(newest.alert_id)


def _point(row: Any) -> LightPoint | None:
    """A light-curve point from an alerts row; None when its time is unusable."""
    when = row.time
    if not isinstance(when, datetime):
        log.warning("alert %r has no usable time; left out of the light curve", row.alert_id)
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return LightPoint(time=when, magnitude=number(row.magnitude),
                      magnitude_err=number(row.magnitude_err),
                      band=row.band if isinstance(row.band, str) else None,
                      vetted=bool(row.passes_vetting), alert_id=str(row.alert_id))
