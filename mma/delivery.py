"""Channels from configuration, and the drain loop over them.

:func:`build_emitters` turns the enabled ``[channels.*]`` sections (secrets
from the environment or systemd credentials) into emitters;
:func:`deliver_due` drains the outbox until nothing is due. ``mma deliver``
runs it once; the daemon will run it on its scheduler.
"""

from __future__ import annotations

import logging
import threading
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
                now: datetime | None = None) -> Counter[str]:
    """Drain the outbox until no delivery is due; return the counts."""
    now = now or datetime.now(UTC)
    load = region_loader(engine)
    total: Counter[str] = Counter()
    while True:
        counts = outbox.drain(engine, emitters, config, now, region_loader=load)
        total.update(counts)
        if not counts:
            return total


class DeliveryWorker:
    """The daemon's delivery thread: drains the outbox when woken, or every period.

    :meth:`wake` after a transaction created or changed coincidences sends them
    at once (latency) instead of at the next ``daemon.deliver_interval_seconds``.
    :meth:`reconfigure` swaps channels on a configuration reload.
    """

    def __init__(self, engine: Engine, config: Config,
                 on_counts: Callable[[Counter[str]], None] | None = None) -> None:
        self.engine = engine
        self.config = config
        self.emitters = build_emitters(config)
        self._on_counts = on_counts
        self._lock = threading.Lock()  # a drain against a reconfiguration
        self._wake = threading.Event()
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread."""
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="mma-delivery")
        self._thread.start()

    def wake(self) -> None:
        """Drain now (from any thread)."""
        self._wake.set()

    def deliver(self) -> Counter[str]:
        """Drain the outbox once, in the calling thread."""
        with self._lock:
            if not self.emitters:
                return Counter()
            counts = deliver_due(self.engine, self.config, self.emitters)
        if self._on_counts is not None:
            self._on_counts(counts)
        return counts

    def reconfigure(self, config: Config, emitters: dict[str, Emitter]) -> None:
        """Use *config* and *emitters* (built from it) from the next drain on."""
        with self._lock:
            old, self.emitters, self.config = self.emitters, emitters, config
        for emitter in old.values():
            emitter.close()

    def stop(self) -> None:
        """Stop the thread, drain once more, and close the channels."""
        self._running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.deliver()  # what the last messages produced goes out before exit
        for emitter in self.emitters.values():
            emitter.close()

    def _loop(self) -> None:
        while self._running:
            self._wake.wait(float(self.config.section("daemon")["deliver_interval_seconds"]))
            self._wake.clear()
            if not self._running:
                return
            try:
                self.deliver()
            except Exception:  # a failing drain logs and runs again when next woken
                log.exception("outbox delivery failed")
