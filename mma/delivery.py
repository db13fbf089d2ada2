"""Channels from configuration, and the drain loops over them.

:func:`build_emitters` turns the enabled ``[channels.*]`` sections (secrets
from the environment or systemd credentials) into emitters;
:func:`deliver_due` drains the outbox until nothing is due (``mma deliver``
runs it once); :class:`DeliveryWorker` runs one thread per channel in the
daemon, so that one channel's outage delays no other.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np
from ligo.skymap.distance import parameters_to_marginal_moments
from sqlalchemy import Engine

from mma import channels as channel_rules
from mma import outbox
from mma.config import Config
from mma.db import region_store
from mma.db.context import candidate_context
from mma.db.notice_types import newest_notice_type
from mma.emitters import Delivery, Emitter
from mma.emitters.links import page_url
from mma.errors import ConfigError
from mma.skymaps.region import Region

log = logging.getLogger(__name__)


def build_emitters(config: Config) -> dict[str, Emitter]:
    """One emitter per enabled channel.

    Raises
    ------
    ConfigError
        A channel is enabled but its secret or a required key is missing.
    """
    emitters: dict[str, Emitter] = {}
    channels = channel_rules.enabled_channels(config)
    if "kafka" in channels:
        from mma.emitters.kafka import KafkaEmitter

        emitters["kafka"] = KafkaEmitter.from_config(config)
    emitters.update(_slack_emitters(config, channels))
    email_channels = [c for c in channels if c.split(":", 1)[0] == "email"]
    if email_channels:
        from mma.emitters.email import EmailEmitter

        conf = config.section("channels.email")
        addresses = {channel_rules.subscriber_channel(sub["address"]): [sub["address"]]
                     for sub in conf["subscribers"]}
        addresses["email"] = list(conf["recipients"])
        for channel in email_channels:
            emitters[channel] = EmailEmitter(
                host=conf["host"], port=conf["port"], security=conf["security"],
                username=conf["username"] or None, password=config.secret("smtp_password"),
                sender=conf["sender"], recipients=addresses[channel], picture=conf["picture"])
    for channel, emitter in emitters.items():
        if channel_rules.digest_minutes(config, channel) and not hasattr(emitter, "send_digest"):
            raise ConfigError(f"channel {channel} cannot send digests (digest_minutes)")
    return emitters


def _slack_emitters(config: Config, channels: Iterable[str]) -> dict[str, Emitter]:
    """The plain ``slack`` channel and one emitter per ``[[channels.slack.destinations]]``
    entry (channel ``slack:<name>``), each with the webhook its ``webhook_secret`` names.

    Raises
    ------
    ConfigError
        A webhook secret is not set (its environment variable or credential).
    """
    wanted = [c for c in channels if c.split(":", 1)[0] == "slack"]
    if not wanted:
        return {}
    from mma.emitters.slack import SlackEmitter

    conf = config.section("channels.slack")
    secrets = {f"slack:{d['name']}": d["webhook_secret"] for d in conf.get("destinations", ())}
    emitters: dict[str, Emitter] = {}
    for channel in wanted:
        if channel == "slack":
            var = config.section("secrets")["slack_webhook_url"]
            url = config.secret("slack_webhook_url")
        else:
            var = secrets.get(channel, "?")
            url = config.named_secret(var) if channel in secrets else None
        if not url:
            raise ConfigError(f"channel {channel} is enabled but its webhook secret ({var}: "
                              "environment variable or systemd credential) is not set")
        emitters[channel] = SlackEmitter(url, min_interval_s=conf["min_interval_seconds"],
                                         name=channel)
    return emitters


def region_loader(engine: Engine) -> Callable[[int], Region | None]:
    """Load stored regions by primary key (for pictures), keeping the last few in memory."""

    @lru_cache(maxsize=16)
    def load(region_pk: int) -> Region | None:
        with engine.connect() as conn:
            tiles = region_store.region_tiles_of(conn, region_pk)
        if len(tiles.lo) == 0:
            return None
        return Region.from_tiles(tiles.lo, tiles.hi, tiles.probdensity, distmu=tiles.distmu,
                                 distsigma=tiles.distsigma, distnorm=tiles.distnorm)

    return load


def marginal_distance(region: Region) -> tuple[float, float] | None:
    """All-sky mean and standard deviation of a 3-D map's distance [Mpc].

    Tiles without distance information (DISTMU or DISTSIGMA not finite) are left
    out and the probability of the others renormalised; None for maps without
    distance layers or without any informative tile.
    """
    if region.distmu is None or region.distsigma is None:
        return None
    prob = region.probdensity * region.area_sr
    mu, sigma = region.distmu, region.distsigma
    ok = np.isfinite(mu) & np.isfinite(sigma) & (sigma > 0) & np.isfinite(prob) & (prob > 0)
    if not ok.any():
        return None
    mean, std = parameters_to_marginal_moments(prob[ok] / prob[ok].sum(), mu[ok], sigma[ok])
    if not (math.isfinite(mean) and math.isfinite(std) and mean > 0):
        return None
    return float(mean), float(std)


class MessageExtras:
    """What human channels show beside the record, loaded as a delivery is built.

    Called by :func:`mma.outbox.drain` for each delivery: channels other than Kafka get
    the event's newest notice type, the marginal distance of a 3-D map [Mpc] (GW), the
    event page's URL (``[pages] base_url``), and, for single email messages, the
    object's light curve and cutouts (:func:`mma.db.context.candidate_context`).
    A failure to load any of these is logged and the message goes without it.
    """

    def __init__(self, engine: Engine, config: Config,
                 regions: Callable[[int], Region | None]) -> None:
        self.engine = engine
        self.regions = regions
        pages = config.data.get("pages") or {}
        self.base_url = str(pages.get("base_url") or "")

        @lru_cache(maxsize=64)
        def distance(region_pk: int) -> tuple[float, float] | None:
            region = self.regions(region_pk)
            return None if region is None else marginal_distance(region)

        self._distance = distance

    def __call__(self, delivery: Delivery, region_pk: int | None, pictures: bool) -> Delivery:
        """*delivery* with event extras, page URL and (email pictures) context added."""
        if delivery.channel.split(":", 1)[0] == "kafka":
            return delivery
        if region_pk is None:  # an event x event pair on time alone: nothing to add
            return dataclasses.replace(delivery, page_url=page_url(
                self.base_url, delivery.payload.get("event_id")))
        p = delivery.payload
        event = dict(delivery.event)
        context = None
        try:
            with self.engine.connect() as conn:
                event["notice_type"] = newest_notice_type(conn, region_pk)
                if (pictures and delivery.kind != "retraction"
                        and delivery.channel.split(":", 1)[0] == "email"):
                    context = candidate_context(conn, delivery.coincidence_id)
            distance = self._distance(region_pk) if p.get("messenger") == "gw" else None
            if distance is not None:
                event["distance_mpc"] = {"mean": distance[0], "std": distance[1]}
        except Exception:  # extras are a nicety: the message goes without them
            log.warning("coincidence %s r%d: %s message extras failed, sending without",
                        delivery.coincidence_id, delivery.revision, delivery.channel,
                        exc_info=True)
        return dataclasses.replace(delivery, event=event, context=context,
                                   page_url=page_url(self.base_url, p.get("event_id")))


def deliver_due(engine: Engine, config: Config, emitters: dict[str, Emitter],
                now: datetime | None = None, owner: str | None = None) -> Counter[str]:
    """Drain the outbox until no delivery is due; return the counts.

    *owner* (the daemon instance) is recorded with each claim.
    """
    now = now or datetime.now(UTC)
    load = region_loader(engine)
    extras = MessageExtras(engine, config, load)
    total: Counter[str] = Counter()
    while True:
        counts = outbox.drain(engine, emitters, config, now, region_loader=load, owner=owner,
                              extras=extras)
        total.update(counts)
        if not counts:
            return total


class ChannelWorker:
    """One channel's delivery thread: drains that channel's rows when woken, or every period.

    Each channel has its own thread, so a channel that is down or slow (a Kafka
    broker that does not answer, an SMTP server that times out) delays no other.
    """

    def __init__(self, engine: Engine, config: Config, channel: str, emitter: Emitter,
                 owner: str | None, on_counts: Callable[[Counter[str]], None] | None) -> None:
        self.engine = engine
        self.config = config
        self.channel = channel
        self.emitter = emitter
        self.owner = owner
        self._on_counts = on_counts
        self._wake = threading.Event()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name=f"mma-deliver-{channel}",
                                        daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def wake(self) -> None:
        """Drain now (from any thread)."""
        self._wake.set()

    def finish(self) -> None:
        """Ask the thread to drain once more, close the channel, and end."""
        self._running = False
        self._wake.set()

    def join(self, timeout_s: float) -> bool:
        """Wait up to *timeout_s* for the thread to end; whether it did."""
        self._thread.join(max(0.0, timeout_s))
        return not self._thread.is_alive()

    def deliver(self) -> Counter[str]:
        """Drain this channel once, in the calling thread."""
        counts = deliver_due(self.engine, self.config, {self.channel: self.emitter},
                             owner=self.owner)
        if self._on_counts is not None and counts:
            self._on_counts(counts)
        return counts

    def _loop(self) -> None:
        period = float(self.config.section("daemon")["deliver_interval_seconds"])
        while True:
            self._wake.wait(period)
            self._wake.clear()
            # Read before the drain: a finish() during a drain gets one more round, so the
            # last round starts after it and sends what was committed until then.
            last = not self._running
            try:
                self.deliver()
            except Exception:  # a failing drain logs and runs again when next woken
                log.exception("outbox delivery to %s failed", self.channel)
            if last:
                break
        self.emitter.close()


class DeliveryWorker:
    """The daemon's delivery: one :class:`ChannelWorker` thread per enabled channel.

    :meth:`wake` after a transaction created or changed coincidences sends them
    at once (latency) instead of at the next ``daemon.deliver_interval_seconds``.
    :meth:`reconfigure` swaps channels on a configuration reload.
    """

    def __init__(self, engine: Engine, config: Config, *, owner: str | None = None,
                 on_counts: Callable[[Counter[str]], None] | None = None) -> None:
        self.engine = engine
        self.config = config
        self.owner = owner
        self._on_counts = on_counts
        self._lock = threading.Lock()  # workers against a reconfiguration
        self.workers = self._workers(config, build_emitters(config))
        self._started = False

    def _workers(self, config: Config, emitters: dict[str, Emitter]) -> list[ChannelWorker]:
        return [ChannelWorker(self.engine, config, channel, emitter, self.owner,
                              self._on_counts) for channel, emitter in emitters.items()]

    @property
    def emitters(self) -> dict[str, Emitter]:
        """The channels' emitters, by outbox channel name."""
        return {w.channel: w.emitter for w in self.workers}

    def start(self) -> None:
        """Take back a killed predecessor's claims, then start one thread per channel."""
        if self.owner is not None:
            outbox.release_claims(self.engine, self.owner, datetime.now(UTC))
        with self._lock:
            for worker in self.workers:
                worker.start()
            self._started = True

    def wake(self) -> None:
        """Drain every channel now (from any thread)."""
        with self._lock:
            for worker in self.workers:
                worker.wake()

    def deliver(self) -> Counter[str]:
        """Drain every channel once, in the calling thread (tests, one-shot use)."""
        total: Counter[str] = Counter()
        for worker in list(self.workers):
            total.update(worker.deliver())
        return total

    def reconfigure(self, config: Config, emitters: dict[str, Emitter]) -> None:
        """Use *config* and *emitters* (built from it) from now on.

        The old threads finish their round, drain once more and close their
        channels on their own; nothing waits for them.
        """
        with self._lock:
            old, self.workers = self.workers, self._workers(config, emitters)
            self.config = config
            if self._started:
                for worker in self.workers:
                    worker.start()
        for worker in old:
            worker.finish()

    def stop(self, timeout_s: float) -> bool:
        """Drain each channel once more and close it, within *timeout_s* in all.

        A channel still busy at the deadline is left behind (its thread is a
        daemon thread); its claimed deliveries are released when the next
        daemon of this instance starts. Returns whether every channel finished.
        """
        deadline = time.monotonic() + timeout_s
        with self._lock:
            workers = list(self.workers)
            started = self._started
        for worker in workers:
            if started:
                worker.finish()
            else:
                worker.emitter.close()
        done = all([w.join(deadline - time.monotonic()) for w in workers]) if started \
            else True
        if not done:
            late = [w.channel for w in workers if not w.join(0)]
            log.warning("delivery to %s still busy after %.0f s: left to the next start",
                        ", ".join(late), timeout_s)
        return done
