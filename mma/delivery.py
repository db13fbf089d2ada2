"""Channels from configuration, and the drain loops over them.

:func:`build_emitters` turns the enabled ``[channels.*]`` sections (secrets
from the environment or systemd credentials) into emitters;
:func:`deliver_due` drains the outbox until nothing is due (``mma deliver``
runs it once); :class:`DeliveryWorker` runs one thread per channel in the
daemon, so that one channel's outage delays no other.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import Engine

from mma import outbox
from mma.config import Config
from mma.db import region_store
from mma.emitters import Emitter
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
    channels = outbox.enabled_channels(config)
    if "kafka" in channels:
        from mma.emitters.kafka import KafkaEmitter

        emitters["kafka"] = KafkaEmitter.from_config(config)
    if "slack" in channels:
        from mma.emitters.slack import SlackEmitter

        url = config.secret("slack_webhook_url")
        if not url:
            raise ConfigError("channels.slack is enabled but the webhook secret "
                              f"({config.section('secrets')['slack_webhook_url']}) is not set")
        emitters["slack"] = SlackEmitter(
            url, min_interval_s=config.section("channels.slack")["min_interval_seconds"])
    email_channels = [c for c in channels if c.split(":", 1)[0] == "email"]
    if email_channels:
        from mma.emitters.email import EmailEmitter

        conf = config.section("channels.email")
        addresses = {outbox.subscriber_channel(sub["address"]): [sub["address"]]
                     for sub in conf["subscribers"]}
        addresses["email"] = list(conf["recipients"])
        for channel in email_channels:
            emitters[channel] = EmailEmitter(
                host=conf["host"], port=conf["port"], security=conf["security"],
                username=conf["username"] or None, password=config.secret("smtp_password"),
                sender=conf["sender"], recipients=addresses[channel], picture=conf["picture"])
    for channel, emitter in emitters.items():
        if outbox.digest_minutes(config, channel) and not hasattr(emitter, "send_digest"):
            raise ConfigError(f"channel {channel} cannot send digests (digest_minutes)")
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


def deliver_due(engine: Engine, config: Config, emitters: dict[str, Emitter],
                now: datetime | None = None, owner: str | None = None) -> Counter[str]:
    """Drain the outbox until no delivery is due; return the counts.

    *owner* (the daemon instance) is recorded with each claim.
    """
    now = now or datetime.now(UTC)
    load = region_loader(engine)
    total: Counter[str] = Counter()
    while True:
        counts = outbox.drain(engine, emitters, config, now, region_loader=load, owner=owner)
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
