"""What an event page shows, gathered from the database into typed, checked values.

The stored JSON (candidate payloads, flags, notice properties) is the published
record as it was written, possibly by an older version of mma, and every field
of it may be missing or of the wrong type: the helpers here turn anything
unexpected into None or an empty tuple. The strings kept are still untrusted
(object ids, flags, broker classes come from packets and notices):
:mod:`mma.page.html` escapes every one of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from mma.db import pages as db
from mma.db.pairs import event_event_records
from mma.emitters.joint_message import clean, counterpart, pair_label
from mma.page.links import Link, event_links, object_links

__all__ = ("CandidateView", "EventPage", "JointView", "gather", "number", "strings", "text")

MAX_TEXT = 200  # characters kept of one stored string (an id, a flag, a class)


def number(value: Any) -> float | None:
    """A finite float, else None (bools, strings and NaN included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def text(value: Any) -> str | None:
    """A string (numbers and bools written out), cut to :data:`MAX_TEXT`; else None."""
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, bool | int | float):
        return str(value)
    return None


def strings(value: Any) -> tuple[str, ...]:
    """The strings of a stored list (other items dropped); () for anything but a list."""
    if not isinstance(value, list):
        return ()
    return tuple(s for s in (text(v) for v in value[:100]) if s is not None)


def _classes(value: Any) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """Broker classes (``payload.classes``): broker -> ((field, value), ...), sorted."""
    if not isinstance(value, Mapping):
        return ()
    out = []
    for broker, fields in sorted(value.items(), key=lambda kv: str(kv[0]))[:20]:
        if not isinstance(fields, Mapping):
            continue
        pairs = tuple((str(k)[:MAX_TEXT], _class_value(v))
                      for k, v in sorted(fields.items(), key=lambda kv: str(kv[0]))[:20])
        if pairs:
            out.append((str(broker)[:MAX_TEXT], pairs))
    return tuple(out)


def _class_value(value: Any) -> str:
    x = number(value)
    if x is not None and not isinstance(value, int):
        return f"{x:.3g}"
    return text(value) or "-"


@dataclass(frozen=True)
class CandidateView:
    """One candidate as the page shows it (``n``: its position on the page, from 1).

    ``ra``/``dec`` [deg, ICRS], ``dt_days`` [days] since t0, ``peak_magnitude`` [AB mag].
    """

    n: int
    coincidence_id: str
    status: str
    vetoed: bool
    rank: int | None
    revision: int
    object_id: str
    survey: str
    ra: float | None
    dec: float | None
    dt_days: float | None
    credible_level: float | None
    log_bayes_factor: float | None
    p_chance: float | None
    n_detections: float | None
    flags: tuple[str, ...]
    peak_magnitude: float | None
    peak_band: str | None
    classes: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    links: tuple[Link, ...]
    history: tuple[db.PageRevision, ...]

    @property
    def live(self) -> bool:
        """Live and ranked: shown in the table and marked on the sky map."""
        return self.status in db.LIVE and self.rank is not None


@dataclass(frozen=True)
class JointView:
    """One event x event coincidence of the page's event (GW x GRB...), seen from it.

    ``dt_s`` [s] is the other event's t0 minus this event's; ``window`` the
    coincidence window on the record's own Δt (its first event's) [s];
    ``overlap`` the sky overlap integral (dimensionless); FARs [Hz].
    """

    coincidence_id: str
    status: str
    revision: int
    other_event_id: str
    messengers: str
    dt_s: float | None
    window: tuple[float, float] | None
    window_source: str | None
    overlap: float | None
    overlap_method: str | None
    temporal_far_hz: float | None
    space_time_far_hz: float | None
    far_method: str | None
    joint_event_id: str | None


def _joint_view(found: Mapping[str, Any]) -> JointView:
    """A row of :func:`mma.db.pairs.event_event_records` as the page shows it."""
    p = found["payload"]
    other, dt = counterpart(p, primary=bool(found["primary"]))
    window = p.get("window_s")
    lo, hi = (number(window[0]), number(window[1])) \
        if isinstance(window, list) and len(window) == 2 else (None, None)
    return JointView(
        coincidence_id=clean(p.get("coincidence_id"), 64), status=found["status"],
        revision=found["revision"], other_event_id=clean(other.get("event_id"), 80),
        messengers=pair_label(p), dt_s=number(dt),
        window=(lo, hi) if lo is not None and hi is not None else None,
        window_source=text(p.get("window_source")), overlap=number(p.get("overlap_integral")),
        overlap_method=text(p.get("overlap_method")),
        temporal_far_hz=number(p.get("temporal_far_hz")),
        space_time_far_hz=number(p.get("space_time_far_hz")),
        far_method=text(p.get("far_method")), joint_event_id=text(p.get("joint_event_id")))


@dataclass(frozen=True)
class EventPage:
    """Everything one event page shows.

    ``n_ranked`` and ``n_total`` count the event's live ranked candidates and all
    its candidates; ``candidates`` holds the first ``max_candidates`` of them,
    best first. ``region`` is the current region version (the newest active one,
    else the newest), None without any. ``coincident`` holds its event x event
    coincidences (GW x GRB, GW x neutrino...).
    """

    event: db.PageEvent
    notices: tuple[db.PageNotice, ...]
    regions: tuple[db.PageRegion, ...]
    region: db.PageRegion | None
    candidates: tuple[CandidateView, ...]
    n_ranked: int
    n_total: int
    links: tuple[Link, ...]
    generated_at: datetime
    coincident: tuple[JointView, ...] = ()

    @property
    def ranked(self) -> tuple[CandidateView, ...]:
        """The live ranked candidates shown."""
        return tuple(c for c in self.candidates if c.live)

    @property
    def others(self) -> tuple[CandidateView, ...]:
        """The vetoed and retracted candidates shown."""
        return tuple(c for c in self.candidates if not c.live)


def _view(n: int, row: db.PageCandidate, history: Sequence[db.PageRevision]) -> CandidateView:
    p = row.payload if isinstance(row.payload, Mapping) else {}
    object_id = text(p.get("object_id")) or "?"
    survey = text(p.get("survey")) or "?"
    ra, dec = number(p.get("ra")), number(p.get("dec"))
    band = text(p.get("peak_band"))
    return CandidateView(
        n=n, coincidence_id=row.coincidence_id, status=row.status, vetoed=row.vetoed,
        rank=row.rank, revision=row.revision, object_id=object_id, survey=survey, ra=ra,
        dec=dec, dt_days=number(p.get("dt_days")),
        credible_level=number(p.get("credible_level")),
        log_bayes_factor=number(row.log_bayes_factor), p_chance=number(row.p_chance),
        n_detections=number(p.get("n_detections")), flags=strings(p.get("flags")),
        peak_magnitude=number(p.get("peak_magnitude")), peak_band=band,
        classes=_classes(p.get("classes")),
        links=tuple(object_links(p)), history=tuple(history))


def current_region(regions: Sequence[db.PageRegion]) -> db.PageRegion | None:
    """The newest active region version, else the newest version; None without any."""
    active = [r for r in regions if r.status == "active"]
    pool = active or list(regions)
    return max(pool, key=lambda r: r.version) if pool else None


def gather(conn: Connection, event_id: str, *, max_candidates: int,
           now: datetime) -> EventPage | None:
    """Read what the page of *event_id* (or an alias) shows; None for an unknown event.

    Parameters
    ----------
    max_candidates : int
        Candidates shown at most (best first); the page says how many more there are.
    now : datetime
        Time the page is generated (UTC), written on it.
    """
    event = db.find_event(conn, event_id)
    if event is None:
        return None
    notices = tuple(db.event_notices(conn, event.pk))
    regions = tuple(db.event_regions(conn, event.pk))
    n_ranked, n_total = db.count_candidates(conn, event.pk)
    rows = db.event_candidates(conn, event.pk, limit=max_candidates)
    history = db.revisions_of(conn, [r.coincidence_id for r in rows])
    views = tuple(_view(i, row, history.get(row.coincidence_id, ()))
                  for i, row in enumerate(rows, start=1))
    urls = [n.properties.get("urls") if isinstance(n.properties, Mapping) else None
            for n in notices]
    links = event_links({"event_id": event.event_id, "aliases": list(event.aliases),
                         "messenger": event.messenger, "event_class": event.event_class,
                         "instrument": event.instrument}, event.properties, urls)
    coincident = tuple(_joint_view(f) for f in event_event_records(conn, event.pk))
    return EventPage(event=event, notices=notices, regions=regions,
                     region=current_region(regions), candidates=views, n_ranked=n_ranked,
                     n_total=n_total, links=tuple(links), generated_at=now,
                     coincident=coincident)
