"""The outbox: every message a channel should get, written with the coincidence.

:func:`enqueue` runs inside the transaction that created or changed the
coincidences, so a message exists if and only if the change committed: a
crash after the commit loses nothing (the next drain sends it), a crash
before it sends nothing. :func:`drain` delivers pending rows through the
emitters: each row is first *claimed* (its next attempt moved a lease into the
future by a conditional UPDATE, with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
so several daemons take disjoint rows), then sent outside any transaction, then
marked sent, or rescheduled with exponential backoff, or parked after
``outbox.max_attempts`` failures. A sender that dies mid-send leaves its row to
be retried when the lease runs out: delivery is at least once, and every
message carries the coincidence id and revision so consumers keep the latest.
Only the newest pending revision of a coincidence is sent to a channel.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from mma.config import Config
from mma.db.schema import coincidences, events, outbox, regions
from mma.emitters import Delivery, Emitter, MessageKind
from mma.errors import DeliveryError
from mma.report import record_of
from mma.skymaps.region import Region

log = logging.getLogger(__name__)

CHANNELS = ("kafka", "slack", "email")


def enabled_channels(config: Config) -> dict[str, Mapping[str, Any]]:
    """Rules of each enabled channel, by channel name."""
    return {name: config.section(f"channels.{name}.rules") for name in CHANNELS
            if config.section(f"channels.{name}")["enabled"]}


def passes(rules: Mapping[str, Any], record: Mapping[str, Any], event: Mapping[str, Any],
           area90_deg2: float) -> bool:
    """Whether a channel's subscription rules accept a new or updated coincidence."""
    props = event.get("properties") or {}
    far = props.get("far")
    has_ns = (props.get("properties") or {}).get("HasNS")
    checks = (
        not rules["messengers"] or record["messenger"] in rules["messengers"],
        not rules["surveys"] or record["survey"] in rules["surveys"],
        rules["include_test"] or "test" not in record["flags"],
        record["p_chance"] <= rules["max_p_chance"],
        record["log_bayes_factor"] >= rules["min_log_bayes_factor"],
        record["credible_level"] <= rules["max_credible_level"],
        not rules["max_area90_deg2"] or area90_deg2 <= rules["max_area90_deg2"],
        not rules["max_far_hz"] or (far is not None and far <= rules["max_far_hz"]),
        not rules["min_has_ns"] or (has_ns is not None and has_ns >= rules["min_has_ns"]),
    )
    return all(checks)


def _kind(status: str, revision: int) -> MessageKind:
    if status == "retracted":
        return "retraction"
    return "new" if revision == 1 else "update"


def enqueue(conn: Connection, channels: Mapping[str, Mapping[str, Any]],
            coincidence_ids: Iterable[str], now: datetime) -> int:
    """Write the deliveries that *coincidence_ids*' latest revisions call for.

    Call inside the transaction that changed them. Returns the rows written.
    """
    if not channels:
        return 0
    written = 0
    for cid in sorted(set(coincidence_ids)):
        row = conn.execute(
            select(coincidences, events.c.properties, events.c.test, regions.c.area90_deg2)
            .join(events, events.c.id == coincidences.c.event_pk)
            .join(regions, regions.c.id == coincidences.c.region_pk)
            .where(coincidences.c.coincidence_id == cid)).one()
        record = record_of(row.payload, row.status, row.rank)
        kind = _kind(row.status, row.revision)
        event = {"properties": row.properties, "area90_deg2": row.area90_deg2,
                 "test": row.test}
        carried = set(conn.execute(select(outbox.c.channel).where(
            outbox.c.coincidence_id == cid, outbox.c.status.in_(("sent", "pending")))
        ).scalars())
        for channel, rules in channels.items():
            if kind == "retraction":
                wanted = channel in carried  # say so wherever it was said
            else:
                wanted = not row.vetoed and passes(rules, record, event, row.area90_deg2)
            if not wanted:
                continue
            conn.execute(update(outbox).where(
                outbox.c.coincidence_id == cid, outbox.c.channel == channel,
                outbox.c.status == "pending").values(status="superseded"))
            conn.execute(insert(outbox).values(
                coincidence_id=cid, revision=row.revision, channel=channel,
                payload={"kind": kind, "record": record, "event": event,
                         "region_pk": row.region_pk},
                status="pending", attempts=0, next_attempt_at=now, created_at=now))
            written += 1
    return written


def _claim(engine: Engine, now: datetime, lease: timedelta, batch: int,
           channels: Iterable[str]) -> list[Any]:
    """Claim up to *batch* due rows of *channels*; another drainer will not take them."""
    with engine.begin() as conn:
        query = (select(outbox.c.id).where(
            outbox.c.status == "pending", outbox.c.next_attempt_at <= now,
            outbox.c.channel.in_(list(channels))).order_by(outbox.c.id).limit(batch))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(conn.execute(query).scalars())
        claimed = []
        for pk in ids:
            # Conditional: on SQLite (no row locks) a second drainer's UPDATE matches nothing.
            done = conn.execute(update(outbox).where(
                outbox.c.id == pk, outbox.c.status == "pending",
                outbox.c.next_attempt_at <= now).values(
                next_attempt_at=now + lease, attempts=outbox.c.attempts + 1))
            if done.rowcount == 1:
                claimed.append(pk)
        return list(conn.execute(select(outbox).where(outbox.c.id.in_(claimed))
                                 .order_by(outbox.c.id)))


def drain(engine: Engine, emitters: Mapping[str, Emitter], config: Config, now: datetime,
          region_loader: Callable[[int], Region | None] | None = None) -> Counter[str]:
    """Send the due deliveries once; return counts of ``sent``, ``retry``, ``parked``."""
    conf = config.section("outbox")
    rows = _claim(engine, now, timedelta(seconds=conf["lease_seconds"]), int(conf["batch"]),
                  emitters)
    counts: Counter[str] = Counter()
    for row in rows:
        body = row.payload
        delivery = Delivery(
            outbox_id=row.id, channel=row.channel, coincidence_id=row.coincidence_id,
            revision=row.revision, kind=body["kind"], payload=body["record"],
            event=body["event"],
            region=(region_loader(body["region_pk"]) if region_loader
                    and row.channel == "email" and body["kind"] != "retraction" else None))
        try:
            emitters[row.channel].send(delivery)
        except Exception as exc:  # DeliveryError, or an emitter bug: never lose the row
            if not isinstance(exc, DeliveryError):
                log.exception("coincidence %s: %s emitter failed", row.coincidence_id,
                              row.channel)
            counts[_failed(engine, row, exc, conf, now)] += 1
            continue
        with engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == row.id).values(
                status="sent", sent_at=now, last_error=None))
        log.info("coincidence %s r%d: %s sent to %s", row.coincidence_id, row.revision,
                 body["kind"], row.channel)
        counts["sent"] += 1
    return counts


def _failed(engine: Engine, row: Any, exc: Exception, conf: Mapping[str, Any],
            now: datetime) -> str:
    """Reschedule with exponential backoff, or park; return which."""
    permanent = isinstance(exc, DeliveryError) and exc.permanent
    retry_after = exc.retry_after if isinstance(exc, DeliveryError) else None
    attempts = row.attempts  # already counted when claimed
    park = permanent or attempts >= conf["max_attempts"]
    backoff = min(conf["backoff_seconds"] * 2 ** (attempts - 1), conf["max_backoff_seconds"])
    delay = max(backoff, retry_after or 0.0)
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == row.id).values(
            status="parked" if park else "pending", last_error=str(exc)[:2000],
            next_attempt_at=now + timedelta(seconds=delay)))
    level = logging.ERROR if park else logging.WARNING
    log.log(level, "coincidence %s r%d: %s delivery %s after attempt %d: %s",
            row.coincidence_id, row.revision, row.channel,
            "parked" if park else f"retried in {delay:.0f} s", attempts, exc)
    return "parked" if park else "retry"
