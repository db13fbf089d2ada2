"""The outbox: every message a channel should get, written with the coincidence.

:func:`enqueue` runs inside the transaction that created or changed the
coincidences, so a message exists if and only if the change committed: a
crash after the commit loses nothing (the next drain sends it), a crash
before it sends nothing. :func:`drain` delivers pending rows through the
emitters: each row is first *claimed* (its next attempt moved a lease into the
future, so that several daemons take disjoint rows: :func:`mma.db.deliveries.claim`),
then sent outside any transaction, then
marked sent, or rescheduled with exponential backoff, or parked after
``outbox.max_attempts`` failures. A sender that dies mid-send leaves its row to
be retried when the lease runs out: delivery is at least once, and every
message carries the coincidence id and revision so consumers keep the latest.
Only the newest pending revision of a coincidence is sent to a channel.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Engine

from mma.channels import digest_minutes, passes, passes_pair
from mma.config import Config
from mma.db import deliveries
from mma.db.actions import is_human
from mma.emitters import Delivery, DigestEmitter, Emitter
from mma.errors import DeliveryError
from mma.report import record_of
from mma.skymaps.region import Region
from mma.watch import watch_passes

log = logging.getLogger(__name__)


MARK_EVERY_S = 1.0  # sent rows are marked at least this often (seconds)


def enqueue(conn: Connection, channels: Mapping[str, Mapping[str, Any]],
            coincidence_ids: Iterable[str], now: datetime) -> int:
    """Write the deliveries that *coincidence_ids*' latest revisions call for.

    Call inside the transaction that changed them. Returns the rows written.
    A few statements for all of them (a Rubin visit can touch hundreds), not
    four per coincidence. While an event is muted (``events.muted_at``), its
    candidates get no new deliveries on the human channels (all but ``kafka``,
    :func:`mma.db.actions.is_human`), except retractions of what was said.
    """
    ids = sorted(set(coincidence_ids))
    if not channels or not ids:
        return 0
    found, carried = deliveries.to_deliver(conn, ids)
    missing = [cid for cid in ids if cid not in found]
    if missing:
        raise LookupError(f"coincidences not stored: {', '.join(missing[:5])}")
    rows: list[dict[str, Any]] = []
    for cid in ids:
        row = found[cid]
        record = record_of(row.payload, row.status, row.rank, row.revision)
        kind = record["kind"]
        event = {"properties": row.properties, "area90_deg2": row.area90_deg2,
                 "test": row.test}
        for channel, rules in channels.items():
            if kind == "retraction":
                wanted = channel in carried[cid]  # say so wherever it was said
            else:  # a muted event (``mma mute``): nothing new about it reaches people
                wanted = (not row.vetoed and (row.muted_at is None or not is_human(channel))
                          and _accepts(channel, rules, row, record, event))
            if wanted:
                rows.append({"coincidence_id": cid, "revision": row.revision,
                             "channel": channel, "status": "pending", "attempts": 0,
                             "next_attempt_at": now, "created_at": now,
                             "payload": {"kind": kind, "record": record, "event": event,
                                         "region_pk": row.region_pk}})
    deliveries.replace_pending(conn, rows)
    return len(rows)


def _accepts(channel: str, rules: Mapping[str, Any], row: Any, record: Mapping[str, Any],
             event: Mapping[str, Any]) -> bool:
    """Whether *channel*'s rules take a new or updated record: an event x event pair's
    rules, a watch's own channels (:mod:`mma.watch`), or the candidate rules."""
    if row.other_event_pk is not None:
        return passes_pair(rules, record)
    verdict = watch_passes(channel, rules, record, row.properties or {})
    return passes(rules, record, event, row.area90_deg2) if verdict is None else verdict


def release_claims(engine: Engine, owner: str, now: datetime) -> int:
    """Make the deliveries *owner* had claimed due now; return how many.

    A daemon calls this as it starts: the claims under its name are its killed
    predecessor's, whose sends may or may not have happened (delivery is at
    least once), and need not wait out their lease.
    """
    with engine.begin() as conn:
        released = deliveries.release(conn, owner, now)
    if released:
        log.warning("outbox: %d deliveries claimed by %s before a restart are due again",
                    released, owner)
    return released


def _claim(engine: Engine, now: datetime, lease: timedelta, batch: int,
           channels: Iterable[str], owner: str | None) -> list[Any]:
    """Claim up to *batch* due rows of *channels*; another drainer will not take them."""
    with engine.begin() as conn:
        return deliveries.claim(conn, now, lease, batch, channels, owner)


def drain(engine: Engine, emitters: Mapping[str, Emitter], config: Config, now: datetime,
          region_loader: Callable[[int], Region | None] | None = None,
          owner: str | None = None, extras: Extras | None = None) -> Counter[str]:
    """Send the due deliveries once; return counts of ``sent``, ``retry``, ``parked``.

    Channels with a digest period get one combined message for everything
    pending, once the oldest pending delivery has waited that long. *owner*
    (the daemon instance) is recorded with each claim (:func:`release_claims`).
    *extras* adds what human channels show (notice type, distance, event page,
    light curve) to each delivery as it is built.
    """
    conf = config.section("outbox")
    lease = timedelta(seconds=conf["lease_seconds"])
    single = [c for c in emitters if not digest_minutes(config, c)]
    counts: Counter[str] = Counter()
    # Sent rows are marked a second's worth at a time, not one transaction per
    # message (that was ~9 % of the daemon's profile samples in a burst), and well
    # within the lease. A crash in between re-sends them after the lease: delivery
    # is at least once.
    sent: list[Any] = []
    # A channel that failed with a retryable error is down for this round: its other
    # claimed rows wait one backoff untried, instead of one timeout each.
    down: set[str] = set()
    untried: list[Any] = []
    marked_at = time.monotonic()
    try:
        for row in _claim(engine, now, lease, int(conf["batch"]), single, owner) if single else []:
            if row.channel in down:
                untried.append(row)
                continue
            try:
                emitters[row.channel].send(_delivery(row, region_loader, extras))
            except Exception as exc:  # DeliveryError, or an emitter bug: never lose the row
                if not isinstance(exc, DeliveryError):
                    log.exception("coincidence %s: %s emitter failed", row.coincidence_id,
                                  row.channel)
                outcome = _failed(engine, row, exc, conf, now)
                counts[outcome] += 1
                if outcome == "retry":
                    down.add(row.channel)
                continue
            sent.append(row)
            if time.monotonic() - marked_at >= MARK_EVERY_S:
                _mark_sent(engine, sent, now)
                counts["sent"] += len(sent)
                sent, marked_at = [], time.monotonic()
    finally:
        if sent:
            _mark_sent(engine, sent, now)
            counts["sent"] += len(sent)
        if untried:
            _postpone(engine, untried, now + timedelta(seconds=conf["backoff_seconds"]))
    for channel in emitters:
        minutes = digest_minutes(config, channel)
        if minutes and _digest_due(engine, channel, now, minutes):
            rows = _claim(engine, now, lease, 10_000, [channel], owner)
            if rows:
                counts.update(_send_digest(engine, emitters[channel], rows, conf, now, extras))
    return counts


Extras = Callable[[Delivery, int | None, bool], Delivery]
"""Adds what human channels show to a delivery: (delivery, region_pk, pictures wanted)
-> delivery (:class:`mma.delivery.MessageExtras`)."""


def _delivery(row: Any, region_loader: Callable[[int], Region | None] | None,
              extras: Extras | None = None) -> Delivery:
    """The Delivery of an outbox row; pictures (region, light curve) only for single
    email messages, when a *region_loader* is given."""
    body = row.payload
    # An event x event coincidence has no object to picture (and maybe no region).
    wants_picture = (region_loader is not None and row.channel.startswith("email")
                     and body["kind"] != "retraction" and body.get("region_pk") is not None
                     and body["record"].get("coincidence_type") != "event-event")
    delivery = Delivery(
        outbox_id=row.id, channel=row.channel, coincidence_id=row.coincidence_id,
        revision=row.revision, kind=body["kind"], payload=body["record"], event=body["event"],
        region=region_loader(body["region_pk"]) if wants_picture and region_loader else None)
    return extras(delivery, body["region_pk"], wants_picture) if extras else delivery


def _mark_sent(engine: Engine, rows: list[Any], now: datetime) -> None:
    with engine.begin() as conn:
        deliveries.mark_sent(conn, [r.id for r in rows], now)
    for row in rows:
        log.info("coincidence %s r%d: %s sent to %s", row.coincidence_id, row.revision,
                 row.payload["kind"], row.channel)


def _postpone(engine: Engine, rows: list[Any], until: datetime) -> None:
    """Give back claimed rows untried (their channel is down): due again at *until*."""
    with engine.begin() as conn:
        deliveries.postpone(conn, [r.id for r in rows], until)
    log.info("outbox: %d deliveries to %s wait until %s (channel down)", len(rows),
             ", ".join(sorted({r.channel for r in rows})), until.isoformat())


def _digest_due(engine: Engine, channel: str, now: datetime, minutes: float) -> bool:
    """True once the oldest pending delivery of *channel* has waited *minutes*."""
    with engine.connect() as conn:
        oldest = deliveries.oldest_due(conn, channel, now)
    return oldest is not None and oldest <= now - timedelta(minutes=minutes)


def _send_digest(engine: Engine, emitter: Emitter, rows: list[Any], conf: Mapping[str, Any],
                 now: datetime, extras: Extras | None = None) -> Counter[str]:
    counts: Counter[str] = Counter()
    try:
        cast(DigestEmitter, emitter).send_digest([_delivery(row, None, extras) for row in rows])
    except Exception as exc:  # the whole digest failed: every row follows the same fate
        if not isinstance(exc, DeliveryError):
            log.exception("digest of %d to %s failed", len(rows), rows[0].channel)
        for row in rows:
            counts[_failed(engine, row, exc, conf, now)] += 1
        return counts
    _mark_sent(engine, rows, now)
    counts["sent"] += len(rows)
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
        deliveries.reschedule(conn, row.id, park=park, error=str(exc),
                              at=now + timedelta(seconds=delay))
    level = logging.ERROR if park else logging.WARNING
    log.log(level, "coincidence %s r%d: %s delivery %s after attempt %d: %s",
            row.coincidence_id, row.revision, row.channel,
            "parked" if park else f"retried in {delay:.0f} s", attempts, exc)
    return "parked" if park else "retry"
