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

import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Engine, func, insert, select, update

from mma.config import Config
from mma.db.actions import is_human
from mma.db.schema import coincidences, events, outbox, regions
from mma.emitters import Delivery, DigestEmitter, Emitter
from mma.errors import ConfigError, DeliveryError
from mma.printable import printable
from mma.report import record_of
from mma.skymaps.region import Region

log = logging.getLogger(__name__)

CHANNELS = ("kafka", "slack", "email")


def subscriber_channel(address: str) -> str:
    """Outbox channel name of a per-recipient email subscription (fits the 32-char column)."""
    return "email:" + hashlib.sha1(address.strip().lower().encode()).hexdigest()[:12]


def enabled_channels(config: Config) -> dict[str, Mapping[str, Any]]:
    """Rules of each enabled channel, by outbox channel name.

    Each ``[[channels.email.subscribers]]`` entry is a channel of its own
    (``email:<hash of the address>``) whose rules are the email rules with the
    entry's keys on top, so recipients are retried and parked independently.
    Each ``[[channels.slack.destinations]]`` entry likewise is channel
    ``slack:<name>``; the plain ``slack`` channel is then kept only when its
    own webhook secret is set.

    Raises
    ------
    ConfigError
        A Slack destination's name or webhook secret name is invalid, or a
        name is used twice.
    """
    channels = {name: config.section(f"channels.{name}.rules") for name in CHANNELS
                if config.section(f"channels.{name}")["enabled"]}
    email = config.section("channels.email")
    if email["enabled"]:
        if not email["recipients"]:
            channels.pop("email")
        base = config.section("channels.email.rules")
        for sub in email["subscribers"]:
            rules = {**base, **{k: v for k, v in sub.items() if k != "address"}}
            channels[subscriber_channel(sub["address"])] = rules
    slack = config.section("channels.slack")
    if slack["enabled"] and slack["destinations"]:
        if not config.secret("slack_webhook_url"):
            channels.pop("slack")
        base = config.section("channels.slack.rules")
        for dest in _checked_destinations(slack["destinations"]):
            rules = {**base, **{k: v for k, v in dest.items()
                                if k not in ("name", "webhook_secret")}}
            channels[f"slack:{dest['name']}"] = rules
    return channels


# Slack destination names: short, so that "slack:<name>" fits the 32-character
# outbox.channel column and reads well in logs and metrics.
DESTINATION_NAME = re.compile(r"[a-z0-9_-]{1,26}")
# The webhook is named by its environment variable or credential file, never given.
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _checked_destinations(destinations: Iterable[Mapping[str, Any]]
                          ) -> list[Mapping[str, Any]]:
    """The ``[[channels.slack.destinations]]`` tables, their names checked."""
    seen: set[str] = set()
    for i, dest in enumerate(destinations):
        where = f"channels.slack.destinations[{i}]"
        name, secret = dest.get("name"), dest.get("webhook_secret")
        if not isinstance(name, str) or not DESTINATION_NAME.fullmatch(name):
            raise ConfigError(f"{where}.name must be 1-26 characters of a-z, 0-9, _ "
                              f"and -, got {printable(repr(name))[:80]}")
        if name in seen:
            raise ConfigError(f"{where}.name {name!r} is used twice")
        seen.add(name)
        if not isinstance(secret, str) or not SECRET_NAME.fullmatch(secret):
            raise ConfigError(f"{where}.webhook_secret must be the NAME of the environment "
                              "variable or systemd credential holding the webhook URL "
                              "(letters, digits and _), never the URL itself")
    return list(destinations)


def digest_minutes(config: Config, channel: str) -> float:
    """Digest period of an outbox channel [minutes]; 0 = one message per delivery."""
    name = channel.split(":", 1)[0]
    return float(config.section(f"channels.{name}").get("digest_minutes", 0))


def has_flag(flags: Iterable[str], name: str) -> bool:
    """*flags* hold *name* or a qualified form of it (``not_grb:classification``)."""
    return any(f == name or f.startswith(name if name.endswith(":") else name + ":")
               for f in flags)


def excluded_flags(rules: Mapping[str, Any]) -> set[str]:
    """The flags a channel refuses: ``exclude_flags``, with ``test`` as ``include_test`` says.

    ``include_test`` is the older spelling of excluding ``test``: false adds
    it, true lets test events through even when ``exclude_flags`` names it.
    """
    excluded = {str(f) for f in rules.get("exclude_flags") or ()}
    if rules.get("include_test"):
        excluded.discard("test")
    else:
        excluded.add("test")
    return excluded


def passes(rules: Mapping[str, Any], record: Mapping[str, Any], event: Mapping[str, Any],
           area90_deg2: float) -> bool:
    """Whether a channel's subscription rules accept a new or updated candidate.

    An update passes only if it changed something the channel's ``updates``
    names (empty: anything), e.g. not a rank shift alone on Slack and email.
    ``min_p_astro`` and ``significant_only`` read the record's ``significance``:
    an event whose notices state no p_astro fails a ``min_p_astro`` above 0;
    ``significant_only`` drops only events stated not significant (LVK's
    ``significant`` = false, or the ``low_significance`` flag the LVK VOEvent
    handler sets from ``Significant``; no other messenger states it).
    """
    props = event.get("properties") or {}
    far = props.get("far")
    has_ns = (props.get("properties") or {}).get("HasNS")
    flags = [str(f) for f in record.get("flags") or ()]
    stated = record.get("significance") or {}
    p_astro = stated.get("p_astro") if isinstance(stated, Mapping) else None
    significant = stated.get("significant") if isinstance(stated, Mapping) else None
    min_p_astro = rules.get("min_p_astro") or 0.0
    checks = (
        not rules["messengers"] or record["messenger"] in rules["messengers"],
        not rules["surveys"] or record["survey"] in rules["surveys"],
        not any(has_flag(flags, name) for name in excluded_flags(rules)),
        all(has_flag(flags, str(name)) for name in rules.get("require_flags") or ()),
        not min_p_astro or (isinstance(p_astro, int | float) and p_astro >= min_p_astro),
        not rules.get("significant_only")
        or (significant is not False and not has_flag(flags, "low_significance")),
        record["p_chance"] <= rules["max_p_chance"],
        record["log_bayes_factor"] >= rules["min_log_bayes_factor"],
        record["credible_level"] <= rules["max_credible_level"],
        not rules["max_area90_deg2"] or area90_deg2 <= rules["max_area90_deg2"],
        not rules["max_far_hz"] or (far is not None and far <= rules["max_far_hz"]),
        not rules["min_has_ns"] or (has_ns is not None and has_ns >= rules["min_has_ns"]),
        record.get("kind") != "update" or not rules.get("updates")
        or bool(set(record.get("changes") or ()) & set(rules["updates"])),
    )
    return all(checks)


CHUNK = 500  # ids per IN (...) list
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
    found: dict[str, Any] = {}
    carried: dict[str, set[str]] = {cid: set() for cid in ids}
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        for row in conn.execute(
                select(coincidences, events.c.properties, events.c.test, events.c.muted_at,
                       regions.c.area90_deg2)
                .join(events, events.c.id == coincidences.c.event_pk)
                .join(regions, regions.c.id == coincidences.c.region_pk)
                .where(coincidences.c.coincidence_id.in_(chunk))):
            found[row.coincidence_id] = row
        for cid, channel in conn.execute(select(outbox.c.coincidence_id, outbox.c.channel).where(
                outbox.c.coincidence_id.in_(chunk), outbox.c.status.in_(("sent", "pending")))):
            carried[cid].add(channel)
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
                          and passes(rules, record, event, row.area90_deg2))
            if wanted:
                rows.append({"coincidence_id": cid, "revision": row.revision,
                             "channel": channel, "status": "pending", "attempts": 0,
                             "next_attempt_at": now, "created_at": now,
                             "payload": {"kind": kind, "record": record, "event": event,
                                         "region_pk": row.region_pk}})
    # Only the newest revision is sent: older pending rows of the same channel give way.
    for channel in channels:
        mine = [r["coincidence_id"] for r in rows if r["channel"] == channel]
        for i in range(0, len(mine), CHUNK):
            conn.execute(update(outbox).where(
                outbox.c.coincidence_id.in_(mine[i:i + CHUNK]), outbox.c.channel == channel,
                outbox.c.status == "pending").values(status="superseded"))
    if rows:
        conn.execute(insert(outbox), rows)
    return len(rows)


def release_claims(engine: Engine, owner: str, now: datetime) -> int:
    """Make the deliveries *owner* had claimed due now; return how many.

    A daemon calls this as it starts: the claims under its name are its killed
    predecessor's, whose sends may or may not have happened (delivery is at
    least once), and need not wait out their lease.
    """
    with engine.begin() as conn:
        released = conn.execute(update(outbox).where(
            outbox.c.status == "pending", outbox.c.claimed_by == owner,
            outbox.c.next_attempt_at > now).values(next_attempt_at=now))
    if released.rowcount:
        log.warning("outbox: %d deliveries claimed by %s before a restart are due again",
                    released.rowcount, owner)
    return int(released.rowcount or 0)


def _claim(engine: Engine, now: datetime, lease: timedelta, batch: int,
           channels: Iterable[str], owner: str | None) -> list[Any]:
    """Claim up to *batch* due rows of *channels*; another drainer will not take them."""
    with engine.begin() as conn:
        query = (select(outbox.c.id).where(
            outbox.c.status == "pending", outbox.c.next_attempt_at <= now,
            outbox.c.channel.in_(list(channels))).order_by(outbox.c.id).limit(batch))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(conn.execute(query).scalars())
        if not ids:
            return []
        # Conditional: on SQLite (no row locks) a second drainer's UPDATE matches nothing.
        claimed = list(conn.execute(update(outbox).where(
            outbox.c.id.in_(ids), outbox.c.status == "pending",
            outbox.c.next_attempt_at <= now).values(
            next_attempt_at=now + lease, attempts=outbox.c.attempts + 1, claimed_by=owner)
            .returning(outbox.c.id)).scalars())
        return list(conn.execute(select(outbox).where(outbox.c.id.in_(claimed))
                                 .order_by(outbox.c.id)))


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


Extras = Callable[[Delivery, int, bool], Delivery]
"""Adds what human channels show to a delivery: (delivery, region_pk, pictures wanted)
-> delivery (:class:`mma.delivery.MessageExtras`)."""


def _delivery(row: Any, region_loader: Callable[[int], Region | None] | None,
              extras: Extras | None = None) -> Delivery:
    """The Delivery of an outbox row; pictures (region, light curve) only for single
    email messages, when a *region_loader* is given."""
    body = row.payload
    wants_picture = (region_loader is not None and row.channel.startswith("email")
                     and body["kind"] != "retraction")
    delivery = Delivery(
        outbox_id=row.id, channel=row.channel, coincidence_id=row.coincidence_id,
        revision=row.revision, kind=body["kind"], payload=body["record"], event=body["event"],
        region=region_loader(body["region_pk"]) if wants_picture and region_loader else None)
    return extras(delivery, body["region_pk"], wants_picture) if extras else delivery


def _mark_sent(engine: Engine, rows: list[Any], now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id.in_([r.id for r in rows])).values(
            status="sent", sent_at=now, last_error=None))
    for row in rows:
        log.info("coincidence %s r%d: %s sent to %s", row.coincidence_id, row.revision,
                 row.payload["kind"], row.channel)


def _postpone(engine: Engine, rows: list[Any], until: datetime) -> None:
    """Give back claimed rows untried (their channel is down): due again at *until*."""
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id.in_([r.id for r in rows])).values(
            next_attempt_at=until, attempts=outbox.c.attempts - 1))
    log.info("outbox: %d deliveries to %s wait until %s (channel down)", len(rows),
             ", ".join(sorted({r.channel for r in rows})), until.isoformat())


def _digest_due(engine: Engine, channel: str, now: datetime, minutes: float) -> bool:
    """True once the oldest pending delivery of *channel* has waited *minutes*."""
    with engine.connect() as conn:
        oldest = conn.execute(select(func.min(outbox.c.created_at)).where(
            outbox.c.channel == channel, outbox.c.status == "pending",
            outbox.c.next_attempt_at <= now)).scalar_one()
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
        conn.execute(update(outbox).where(outbox.c.id == row.id).values(
            status="parked" if park else "pending", last_error=str(exc)[:2000],
            next_attempt_at=now + timedelta(seconds=delay)))
    level = logging.ERROR if park else logging.WARNING
    log.log(level, "coincidence %s r%d: %s delivery %s after attempt %d: %s",
            row.coincidence_id, row.revision, row.channel,
            "parked" if park else f"retried in {delay:.0f} s", attempts, exc)
    return "parked" if park else "retry"
