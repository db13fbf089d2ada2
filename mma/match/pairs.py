"""Event x event coincidences: a GW, GRB, X-ray or neutrino event against the others.

When an event arrives, gets a region or is retracted, :func:`pair_event` tests
it against every other event whose time lies within a coincidence window of
it (``[joint.windows]``), computes the sky overlap and the joint false alarm
rates (:mod:`mma.match.joint`, RAVEN's formulas) and keeps one coincidence per
pair in ``coincidences`` (``other_event_pk`` set), with the candidates' life
cycle: a new pair is published, a changed one is revised only on material
change, a retraction of either event withdraws it. The pair's order is fixed:
the *first* event is the one whose FAR the joint FAR scales (GW, else
neutrino, else GRB, else X-ray); the *second* plays RAVEN's external trigger.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row

from mma.config import Config
from mma.db import pairs as stored
from mma.db.candidates import revise
from mma.match import joint
from mma.match.active import ActiveRegion
from mma.match.candidate import SCHEMA_VERSION, iso, significance
from mma.match.finite import finite_or_none
from mma.match.revisions import Ledger
from mma.models import StoredEvent

log = logging.getLogger(__name__)

#: Instrument (and notice handler) of joint events (:mod:`mma.ingest.joint_events`),
#: which are never paired nor merged themselves.
JOINT = "joint"
PAIR_NS = uuid.UUID("8b0b4c52-7d0e-5a4e-9d7e-3f1f6c1e2a90")
# Which event of a pair is first: the one whose FAR RAVEN scales by the other's rate.
_RANK = {"gw": 0, "neutrino": 1, "grb": 2, "xray": 3}
# Relative change of a joint number that is material (published as an update).
MATERIAL = 0.2
MATERIAL_DT_S = 0.5
NUMBERS = ("overlap_integral", "temporal_far_hz", "space_time_far_hz")


@dataclass(frozen=True)
class PairRules:
    """The ``[joint]`` settings: windows [s] by pair key, rates [Hz] by messenger."""

    enabled: bool
    windows: Mapping[str, tuple[float, float]]
    sources: Mapping[str, str]
    rates_hz: Mapping[str, float]
    targeted_hz: Mapping[str, tuple[float, float]]
    joint_min_overlap: float = 1.0

    @classmethod
    def of(cls, config: Config) -> PairRules:
        """Read ``[joint]`` (rates stated per year, thresholds in Hz)."""
        section = config.section("joint")
        windows = {k: (float(v[0]), float(v[1]))
                   for k, v in config.section("joint.windows").items()}
        # RAVEN's year (365 d), so that the FARs are RAVEN's to rounding.
        rates = {k: float(v) / joint.YEAR_S
                 for k, v in config.section("joint.rates_per_year").items()}
        targeted = {k: (float(v[0]), float(v[1]))
                    for k, v in config.section("joint.targeted_thresholds_hz").items()}
        return cls(bool(section["enabled"]), windows,
                   dict(config.section("joint.window_sources")), rates, targeted,
                   float(section["joint_region_min_overlap"]))

    @property
    def span_s(self) -> float:
        """The widest window's reach either side [s]."""
        return max((max(abs(lo), abs(hi)) for lo, hi in self.windows.values()), default=0.0)

    def window(self, first: StoredEvent, second: StoredEvent) -> str | None:
        """The key of the window that applies to the pair, or None (not sought)."""
        for key in (f"{first.event_class}:{second.messenger}",
                    f"{first.messenger}:{second.messenger}"):
            if key in self.windows:
                return key
        return None


def ordered(a: StoredEvent, b: StoredEvent) -> tuple[StoredEvent, StoredEvent]:
    """(first, second) of a pair: by messenger rank, then time, then pk."""
    return tuple(sorted((a, b), key=lambda e: (_RANK.get(e.messenger, 9), e.event_time,
                                               e.pk)))  # type: ignore[return-value]


def pair_id(first: StoredEvent, second: StoredEvent) -> str:
    """Stable id of the coincidence of two events (their canonical ids)."""
    return str(uuid.uuid5(PAIR_NS, f"event-event|{first.event_id}|{second.event_id}"))


def joint_event_id(first: StoredEvent, second: StoredEvent) -> str:
    """The id of a pair's joint event (:mod:`mma.ingest.joint_events`): both canonical
    ids, cut to the column's 64 characters."""
    return f"{first.event_id}+{second.event_id}"[:64]


def pair_event(conn: Connection, ledger: Ledger, rules: PairRules, event: StoredEvent,
               active: Mapping[int, ActiveRegion], now: datetime) -> int:
    """Find, revise or withdraw the event's coincidences with other events.

    Call in the transaction that changed *event* (regions lock held). *active*
    is the active region of each event by pk (the correlator's, already
    showing this transaction's change). Returns the pairs published.
    """
    if not rules.enabled or event.messenger not in _RANK or event.instrument == JOINT:
        return 0
    before = len(ledger.published)
    seen: set[str] = set()
    for other in stored.events_near(conn, event.event_time, rules.span_s, event.pk):
        if (other.messenger not in _RANK or other.test != event.test
                or other.instrument == JOINT):
            continue
        first, second = ordered(event, other)
        key = rules.window(first, second)
        if key is None:
            continue
        seen.add(pair_id(first, second))
        _judge(conn, ledger, rules, key, first, second, active)
    for row in stored.pairs_of(conn, event.pk):  # pairs the event no longer makes
        if row.coincidence_id not in seen and row.status != "retracted":
            _withdraw(conn, ledger, row, "left_window" if event.status != "retracted"
                      else f"retracted:{event.event_id}")
    return len(ledger.published) - before


def _judge(conn: Connection, ledger: Ledger, rules: PairRules, key: str,
           first: StoredEvent, second: StoredEvent,
           active: Mapping[int, ActiveRegion]) -> None:
    """Insert, revise or withdraw the coincidence of one pair."""
    row = stored.pair_of(conn, first.pk, second.pk)
    dt_s = (second.event_time - first.event_time).total_seconds()
    lo, hi = rules.windows[key]
    retracted = next((e for e in (first, second) if e.status == "retracted"), None)
    if retracted is not None or not lo <= dt_s <= hi:
        if row is not None and row.status != "retracted":
            _withdraw(conn, ledger, row, "left_window" if retracted is None
                      else f"retracted:{retracted.event_id}")
        return
    record = pair_record(rules, key, first, second, active)
    cid = record["coincidence_id"]
    region = _region_key(active.get(first.pk))
    if row is None:
        stored.insert_pair(conn, cid, first_pk=first.pk, second_pk=second.pk,
                           region_pk=region[0], payload=record)
        ledger.note(cid, 1, True, "new", [], region, "active", record)
        log.info("event %s x %s: new %s coincidence, dt %+.2f s, I %s, space-time FAR %s Hz",
                 first.event_id, second.event_id, key, dt_s, record["overlap_integral"],
                 record["space_time_far_hz"])
        return
    changes = material_changes(row.payload, record)
    if row.status == "retracted":
        changes = ["status", *changes]
    if changes:
        record["changes"] = changes
        revise(conn, cid, status="updated", revision=row.revision + 1, payload=record,
               region_pk=region[0])
        ledger.note(cid, row.revision + 1, True, "region", changes, region, "updated", record)
        log.info("event %s x %s: coincidence revised (%s)", first.event_id,
                 second.event_id, ", ".join(changes))
    # Otherwise the row keeps the record last published: later drifts are measured
    # from what consumers saw, so small ones cannot add up unannounced.


def _withdraw(conn: Connection, ledger: Ledger, row: Row[Any], flag: str) -> None:
    """Retract a live pair coincidence with *flag* (``left_window``, ``retracted:<id>``)."""
    payload = dict(row.payload)
    payload["flags"] = [*payload.get("flags", []), flag]
    payload["changes"] = ["status", "flags"]
    revise(conn, row.coincidence_id, status="retracted", revision=row.revision + 1,
           payload=payload)
    ledger.note(row.coincidence_id, row.revision + 1, True, "retraction",
                ["status", "flags"], (row.region_pk, payload.get("region_version")),
                "retracted", payload)
    log.warning("event %s x %s: coincidence withdrawn (%s)", payload.get("event_id"),
                (payload.get("other") or {}).get("event_id"), flag)


def _region_key(active: ActiveRegion | None) -> tuple[Any, Any]:
    return (None, None) if active is None else active.key


def pair_record(rules: PairRules, key: str, first: StoredEvent, second: StoredEvent,
                active: Mapping[int, ActiveRegion]) -> dict[str, Any]:
    """The published record of a pair (docs/joint.md), status and revision aside."""
    a, b = active.get(first.pk), active.get(second.pk)
    window = rules.windows[key]
    overlap = None if a is None or b is None else joint.overlap_integral(a.region, b.region)
    far = _fars(rules, window, first, second, overlap)
    flags = ["test"] if first.test else []
    return {
        "schema_version": SCHEMA_VERSION, "coincidence_type": "event-event",
        "coincidence_id": pair_id(first, second),
        **_event_fields(first, a),
        "other": _event_fields(second, b),
        "dt_s": round((second.event_time - first.event_time).total_seconds(), 3),
        "window_s": list(window), "window_source": rules.sources.get(key, key),
        "overlap_integral": finite_or_none(overlap), "overlap_method": None if overlap is None
        else "skymap", **far,
        # Optical candidates are scored on the product of the two regions where the two
        # agree (the joint event, mma.ingest.joint_events).
        "joint_event_id": joint_event_id(first, second)
        if overlap is not None and overlap >= rules.joint_min_overlap else None,
        "flags": flags, "changes": []}


def _event_fields(event: StoredEvent, active: ActiveRegion | None) -> dict[str, Any]:
    return {"event_id": event.event_id, "aliases": list(event.aliases),
            "messenger": event.messenger, "event_class": event.event_class,
            "instrument": event.instrument, "event_time": iso(event.event_time),
            "significance": significance(event),
            "region_version": None if active is None else active.version}


def _fars(rules: PairRules, window: tuple[float, float], first: StoredEvent,
          second: StoredEvent, overlap: float | None) -> dict[str, Any]:
    """Temporal and space-time FARs [Hz] of the pair (null when no FAR is stated)."""
    far_first = significance(first)["far_hz"]
    far_second = significance(second)["far_hz"]
    thresholds = rules.targeted_hz.get(second.instrument)
    rate = rules.rates_hz.get(second.messenger)
    out: dict[str, Any] = {"temporal_far_hz": None, "space_time_far_hz": None,
                           "far_method": None, "external_rate_hz": rate}
    if far_first is None:
        return out
    p_value = _search_p_value(second)
    if p_value is not None:
        # IceCube's search around this GW already weighs the neutrinos against the GW
        # map and the +-500 s window: its p-value is the chance of a background result
        # as significant, so the pair's FAR is FAR_gw x p (no extra rate, no 1/I).
        out.update(far_method="search_p_value", external_rate_hz=None,
                   space_time_far_hz=far_first * p_value)
        return out
    if thresholds is not None and far_second is not None:
        temporal = joint.temporal_far_targeted(window, far_second, far_first, *thresholds)
        out["far_method"] = "targeted"
    elif rate is not None:
        temporal = joint.temporal_far_untargeted(window, rate, far_first)
        out["far_method"] = "untargeted"
    else:
        return out
    out["temporal_far_hz"] = temporal
    if overlap is not None:
        out["space_time_far_hz"] = finite_or_none(joint.space_time_far(temporal, overlap))
    return out


def _search_p_value(event: StoredEvent) -> float | None:
    """The p-value of IceCube's neutrino search around a GW (``neutrino.gw_followup``:
    ``pval_generic``), or None for any other event."""
    if event.event_class != "neutrino.gw_followup":
        return None
    value = event.properties.get("pval_generic")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return None


def material_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Fields of a pair record whose change is worth a message."""
    changes = []
    for name in NUMBERS:
        a, b = old.get(name), new.get(name)
        moved = (a is None) != (b is None) or (
            a is not None and b is not None and abs(b - a) > MATERIAL * max(abs(a), abs(b)))
        if moved:
            changes.append(name)
    if abs(float(new.get("dt_s") or 0) - float(old.get("dt_s") or 0)) > MATERIAL_DT_S:
        changes.append("dt_s")
    if sorted(old.get("flags") or []) != sorted(new.get("flags") or []):
        changes.append("flags")
    if old.get("joint_event_id") != new.get("joint_event_id"):
        changes.append("joint_event_id")
    return changes
