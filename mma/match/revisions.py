"""A candidate's life: inserted, revised on material change, retracted, ranked.

Every scoring that changed anything is appended to the revision history
(``coincidence_revisions``), whether or not it was published; the candidate
row keeps the last *published* record, so the thresholds of
:func:`mma.match.candidate.material_changes` are measured from what
consumers last saw, and small drifts cannot add up unannounced. A published
revision bumps ``revision`` and is returned to the caller, which queues its
messages in the same transaction (:mod:`mma.outbox`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row

from mma.db import candidates as rows
from mma.match.candidate import Thresholds, material_changes
from mma.match.scoring import Score

# Relative change below which a re-score changed nothing at all (not even kept in
# the history): float noise of the same computation.
SAME = 1e-9


@dataclass
class Ledger:
    """What one transaction did to candidates: published ids and history rows."""

    thresholds: Thresholds
    published: set[str] = field(default_factory=set)
    history: list[dict[str, Any]] = field(default_factory=list)
    new: list[dict[str, Any]] = field(default_factory=list)  # candidates to insert

    def note(self, cid: str, row_revision: int, published: bool, reason: str,
             changes: list[str], region: tuple[int | None, int | None], status: str,
             record: Mapping[str, Any], rank: int | None = None) -> None:
        """Append a history row (flushed by :meth:`flush`); *region* is (region_pk,
        version), (None, None) for an event x event pair without a region."""
        if published:
            self.published.add(cid)
        self.history.append({
            "coincidence_id": cid, "revision": row_revision, "published": published,
            "reason": reason, "changes": list(changes), "region_pk": region[0],
            "region_version": region[1], "status": status,
            "credible_level": _finite(record.get("credible_level")),
            "log_bayes_factor": _finite(record.get("log_bayes_factor")),
            "p_chance": _finite(record.get("p_chance")),
            "n_detections": record.get("n_detections"), "rank": rank})

    def insert(self, conn: Connection) -> None:
        """Insert the new candidates gathered so far (one statement for many)."""
        rows.insert_candidates(conn, self.new)
        self.new = []

    def flush(self, conn: Connection) -> None:
        """Insert pending candidates, then write the history rows gathered so far."""
        self.insert(conn)
        rows.add_revisions(conn, self.history)
        self.history = []


def record(conn: Connection, ledger: Ledger, existing: Row[Any] | None, cid: str,
           payload: dict[str, Any], score: Score, *, event_pk: int, object_pk: int,
           alert_pk: int, region: tuple[int, int], vetoed: bool, reason: str,
           event_retracted: bool) -> None:
    """Insert the candidate, or revise it if the re-score is material.

    Parameters
    ----------
    existing
        The stored candidate, locked by the caller (:func:`mma.db.candidates.lock_many`),
        or None. A new one is inserted by :meth:`Ledger.insert`.
    region
        (region_pk, region version) the score is against.
    reason
        Why it was scored (``new_detection``, ``region``, ``rescore``...).
    """
    if existing is None:
        if event_retracted:
            return
        ledger.new.append({
            "coincidence_id": cid, "event_pk": event_pk, "object_pk": object_pk,
            "alert_pk": alert_pk, "region_pk": region[0], "vetoed": vetoed,
            "log_bayes_factor": score.log_bayes_factor, "p_chance": score.p_chance,
            "payload": payload})
        ledger.note(cid, 1, not vetoed, "new", [], region, "active", payload)
        return
    if existing.status == "retracted" and event_retracted:
        return
    kw = {"region_pk": region[0], "alert_pk": alert_pk, "vetoed": vetoed,
          "log_bayes_factor": score.log_bayes_factor, "p_chance": score.p_chance}
    old = existing.payload
    if existing.status != "retracted" and existing.vetoed:
        # Never published: nothing to compare with. It is announced as new once a
        # vetted detection arrives, and kept quietly up to date until then.
        rows.revise(conn, cid, payload=payload, **kw)
        ledger.note(cid, existing.revision, not vetoed, "new" if not vetoed else reason,
                    [], region, "active", payload)
        return
    if existing.status == "retracted" and vetoed:
        rows.revise(conn, cid, **kw)  # stays withdrawn
        return
    changes = material_changes(old, payload, ledger.thresholds)
    if existing.status == "retracted" or vetoed:
        # Back in the region or a vetted detection again (revived), or every detection
        # now fails vetting (withdrawn: consumers who saw it must hear so).
        changes = ["status", *(c for c in changes if c != "status")]
    if changes:
        status = "retracted" if vetoed else "updated"
        payload = {**payload, "changes": changes, "rank": old.get("rank")}
        rows.revise(conn, cid, status=status, revision=existing.revision + 1,
                    payload=payload, **kw)
        ledger.note(cid, existing.revision + 1, True, reason, changes, region, status,
                    payload)
        return
    if _differs(old, payload) or existing.region_pk != region[0]:
        rows.revise(conn, cid, region_pk=region[0], alert_pk=alert_pk)
        ledger.note(cid, existing.revision, False, reason, [], region, existing.status,
                    payload)


def retract(conn: Connection, ledger: Ledger, row: Row[Any], flag: str, reason: str,
            region: tuple[int, int]) -> None:
    """Retract a live candidate (*row* locked by the caller) with *flag*."""
    payload = dict(row.payload)
    payload["flags"] = [*payload.get("flags", []), flag]
    payload["changes"] = ["status", "flags"]
    rows.revise(conn, row.coincidence_id, status="retracted", revision=row.revision + 1,
                payload=payload)
    ledger.note(row.coincidence_id, row.revision + 1, not row.vetoed, reason,
                ["status", "flags"], region, "retracted", payload)


def rerank(conn: Connection, ledger: Ledger, event_pks: set[int],
           versions: Mapping[int, int]) -> None:
    """Rank each event's live, unvetoed candidates by ln B (1 = best); others get none.

    A rank change is published when :meth:`Thresholds.rank_is_material` says so
    (a candidate already revised in this transaction just carries its new rank);
    the records of candidates moving below the top ranks are not read
    (:meth:`Thresholds.below_top`).

    Parameters
    ----------
    versions
        Region version by region_pk, for the history rows.
    """
    for event_pk in sorted(event_pks):
        ranked = rows.ranking(conn, event_pk)
        position = 0
        new_ranks: dict[str, int | None] = {}
        look: dict[str, Any] = {}  # rows whose published rank may need to follow
        for row in ranked:
            new: int | None = None
            if row.status != "retracted" and not row.vetoed:
                position += 1
                new = position
            if new != row.rank:
                new_ranks[row.coincidence_id] = new
            if new is not None and (row.coincidence_id in ledger.published or (
                    new != row.rank and not ledger.thresholds.below_top(row.rank, new))):
                look[row.coincidence_id] = row
        rows.set_ranks(conn, list(new_ranks.items()))
        _publish_ranks(conn, ledger, look, new_ranks, versions)


def _publish_ranks(conn: Connection, ledger: Ledger, look: Mapping[str, Any],
                   new_ranks: Mapping[str, int | None], versions: Mapping[int, int]) -> None:
    """Carry new ranks into the published records, as a revision where material."""
    carried, revised = [], []
    for cid, payload in rows.payloads(conn, look).items():
        row = look[cid]
        new = new_ranks.get(cid, row.rank)
        published_rank = payload.get("rank")
        if published_rank == new:
            continue
        if cid in ledger.published:  # revised in this transaction: it carries its rank
            carried.append({"cid": cid, "payload": {**payload, "rank": new},
                            "revision": row.revision, "status": row.status})
        elif ledger.thresholds.rank_is_material(published_rank, new):
            payload = {**payload, "rank": new, "changes": ["rank"]}
            revised.append({"cid": cid, "payload": payload, "revision": row.revision + 1,
                            "status": "updated"})
            ledger.note(cid, row.revision + 1, True, "rank", ["rank"],
                        (row.region_pk, versions.get(row.region_pk, 0)), "updated",
                        payload, new)
    rows.revise_many(conn, carried + revised)


def _differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """True if a re-score changed any number at all (kept in the history, not published)."""
    for key in ("credible_level", "log_bayes_factor", "p_chance", "prob_density_sr",
                "searched_area_deg2", "region_version"):
        a, b = old.get(key), new.get(key)
        if isinstance(a, float) and isinstance(b, float) and math.isfinite(a) \
                and math.isfinite(b):
            if not math.isclose(a, b, rel_tol=SAME, abs_tol=1e-300):
                return True
        elif a != b:
            return True
    return False


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
