"""A coincidence as a row: its stable id, its payload, its revisions and its rank.

The correlator decides what matched and how it scores; this module writes the
result in the caller's transaction. A row is revised only when something a
consumer would act on changed (:func:`record`), and is read ``FOR UPDATE``
first: two daemons re-scoring the same coincidence would otherwise both write
revision r + 1, and the same message would be published twice.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from mma.db.schema import coincidences
from mma.match.scoring import Score

# Namespace of coincidence ids: uuid5(event_id|survey|alert_id) is stable across re-scoring.
COINCIDENCE_NS = uuid.UUID("5d1c3e0a-6f55-4c36-9a38-8f0e3e0b8a11")
# Relative change in a score below which a re-scored coincidence is "unchanged".
RESCORE_TOLERANCE = 1e-9


def coincidence_id(event_id: str, survey: str, alert_id: str) -> str:
    """Stable identifier of the pairing of an event and an alert."""
    return str(uuid.uuid5(COINCIDENCE_NS, f"{event_id}|{survey}|{alert_id}"))


def payload_of(cid: str, event: Mapping[str, Any], version: int, alert: Mapping[str, Any],
               score: Score, object_first: datetime) -> dict[str, Any]:
    """The published fields of a coincidence (README "One coincidence"), rank aside.

    Parameters
    ----------
    event
        The event row with ``aliases`` (:func:`mma.db.store.event_row`).
    version
        The matching region's version.
    alert
        The stored alert (``alert_id``, ``object_id``, ``survey``, ``ra_deg``,
        ``dec_deg`` [deg ICRS], ``time`` UTC, ``vetoes``).
    object_first
        First detection of the alert's object (UTC): before the event, the
        coincidence is flagged ``prior_activity``.
    """
    flags = list(alert["vetoes"] and [f"veto:{v}" for v in alert["vetoes"]])
    if object_first < event["event_time"]:
        flags.append("prior_activity")
    if event["test"]:
        flags.append("test")
    flags += [f for f in event["flags"] if f not in flags]
    return {
        "coincidence_id": cid,
        "event_id": event["event_id"],
        "aliases": list(event["aliases"]),
        "messenger": event["messenger"],
        "instrument": event["instrument"],
        "event_time": _iso(event["event_time"]),
        "region_version": version,
        "alert_id": alert["alert_id"],
        "object_id": str(alert["object_id"]),
        "survey": alert["survey"],
        "ra": alert["ra_deg"],
        "dec": alert["dec_deg"],
        "alert_time": _iso(alert["time"]),
        "dt_days": score.dt_days,
        "prob_density_sr": score.prob_density_sr,
        "credible_level": score.credible_level,
        "searched_area_deg2": score.searched_area_deg2,
        "log_bayes_factor": score.log_bayes_factor,
        "components": score.components(),
        "p_chance": score.p_chance,
        "flags": flags,
    }


def record(conn: Connection, cid: str, payload: Mapping[str, Any], score: Score, *,
           event_pk: int, region_pk: int, alert_pk: int, vetoed: bool,
           event_retracted: bool) -> bool:
    """Insert the coincidence, or revise it if its numbers changed; True if announced."""
    # Locked (PostgreSQL) until this transaction ends: another daemon re-scoring the
    # same coincidence waits, then sees this revision and finds nothing to change.
    existing = conn.execute(select(coincidences).where(
        coincidences.c.coincidence_id == cid).with_for_update()).first()
    if existing is None:
        conn.execute(insert(coincidences).values(
            coincidence_id=cid, event_pk=event_pk, alert_pk=alert_pk, region_pk=region_pk,
            status="active", vetoed=vetoed, log_bayes_factor=score.log_bayes_factor,
            p_chance=score.p_chance, revision=1, payload=payload))
        return True
    if existing.status == "retracted" and event_retracted:
        return False
    if existing.status == "retracted" or _differs(existing.payload, payload):
        conn.execute(update(coincidences).where(coincidences.c.coincidence_id == cid).values(
            region_pk=region_pk, status="updated", log_bayes_factor=score.log_bayes_factor,
            p_chance=score.p_chance, revision=existing.revision + 1, payload=payload))
        return True
    if existing.region_pk != region_pk:
        # A new region version that scores the same: follow it, announce nothing.
        conn.execute(update(coincidences).where(coincidences.c.coincidence_id == cid)
                     .values(region_pk=region_pk, payload=payload))
    return False


def withdraw_others(conn: Connection, event_pk: int, version: int, kept: set[str]) -> set[str]:
    """Retract the event's coincidences that region *version* no longer holds."""
    gone = conn.execute(
        select(coincidences.c.coincidence_id, coincidences.c.payload,
               coincidences.c.revision).where(
            coincidences.c.event_pk == event_pk, coincidences.c.status != "retracted")
        .order_by(coincidences.c.coincidence_id).with_for_update()
    ).all()
    out = set()
    for row in gone:
        if row.coincidence_id in kept:
            continue
        payload = dict(row.payload)
        payload["flags"] = [*payload["flags"], "left_region"]
        payload["region_version"] = version
        conn.execute(update(coincidences).where(
            coincidences.c.coincidence_id == row.coincidence_id).values(
            status="retracted", revision=row.revision + 1, payload=payload))
        out.add(row.coincidence_id)
    return out


def rerank(conn: Connection, event_pks: set[int]) -> None:
    """Rank each event's live, unvetoed coincidences by ln B (1 = best); others get none."""
    for event_pk in event_pks:
        rows = conn.execute(
            select(coincidences.c.coincidence_id, coincidences.c.rank,
                   coincidences.c.status, coincidences.c.vetoed)
            .where(coincidences.c.event_pk == event_pk)
            .order_by(coincidences.c.log_bayes_factor.desc(), coincidences.c.p_chance,
                      coincidences.c.coincidence_id)
        ).all()
        rank = 0
        changed = []
        for row in rows:
            new: int | None = None
            if row.status != "retracted" and not row.vetoed:
                rank += 1
                new = rank
            if new != row.rank:
                changed.append({"cid": row.coincidence_id, "new_rank": new})
        if changed:  # one executemany: a batch can shift the ranks of many rows
            conn.execute(update(coincidences).where(
                coincidences.c.coincidence_id == bindparam("cid")).values(
                rank=bindparam("new_rank")), changed)


def _differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """True if a re-scored coincidence changed in anything a consumer would act on."""
    for key in ("credible_level", "log_bayes_factor", "p_chance", "prob_density_sr",
                "searched_area_deg2"):
        a, b = old.get(key), new.get(key)
        if isinstance(a, float) and isinstance(b, float):
            if not math.isclose(a, b, rel_tol=RESCORE_TOLERANCE, abs_tol=1e-300):
                return True
        elif a != b:
            return True
    return sorted(old.get("flags", [])) != sorted(new.get("flags", []))


def _iso(value: datetime) -> str:
    """ISO 8601 UTC with a ``Z`` suffix and millisecond precision."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
