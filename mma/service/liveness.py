"""The main loop's signs of life, and waiting for the database without losing them.

systemd kills a service whose watchdog is not pinged within ``WatchdogSec``, and
``/healthz`` reports a loop that has not pinged for a while as degraded. The main
loop pings both on every round (:class:`Liveness`), and keeps pinging while it
backs off from a database outage (:class:`Retrier`): an outage of any length is
waited out, not turned into a restart loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mma.errors import TransientError
from mma.service.health import HealthServer
from mma.service.systemd import Notifier

log = logging.getLogger(__name__)

T = TypeVar("T")

SLICE_S = 0.5  # longest sleep between two signs of life while backing off [s]


class Liveness:
    """Pings the health endpoint every call, and systemd's watchdog when it is due.

    Parameters
    ----------
    notifier
        systemd's notification socket (a no-op outside systemd).
    interval_s
        Ping the watchdog at least this often [s] (half of ``WatchdogSec``);
        None: no watchdog.
    """

    def __init__(self, notifier: Notifier, interval_s: float | None) -> None:
        self.notifier = notifier
        self.interval_s = interval_s
        self.health: HealthServer | None = None
        self._last_watchdog = time.monotonic()

    def ping(self) -> None:
        """The main loop is alive (cheap; call as often as convenient)."""
        if self.health is not None:
            self.health.ping()
        if self.interval_s is not None and (
                time.monotonic() - self._last_watchdog >= self.interval_s):
            self.notifier.watchdog()
            self._last_watchdog = time.monotonic()


class Retrier:
    """Runs a step until the database takes it, backing off and staying alive meanwhile.

    Parameters
    ----------
    settings
        Returns the ``[daemon]`` section (``retry_seconds``, ``max_retry_seconds``);
        read at each retry, so a reload applies at once.
    liveness
        Pinged at least every :data:`SLICE_S` while waiting.
    stopping
        True once a stop was requested: the wait ends and the next failure raises.
    """

    def __init__(self, settings: Callable[[], Mapping[str, Any]], liveness: Liveness,
                 stopping: Callable[[], bool]) -> None:
        self.settings = settings
        self.liveness = liveness
        self.stopping = stopping

    def __call__(self, step: Callable[[], T]) -> T:
        """Run *step* until it does not raise :class:`TransientError`.

        Raises
        ------
        TransientError
            The step failed and a stop was requested (the caller commits nothing).
        """
        delay = float(self.settings()["retry_seconds"])
        while True:
            try:
                return step()
            except TransientError as exc:
                if self.stopping():
                    raise
                log.warning("%s; retrying in %.0f s", exc, delay)
                self._wait(delay)
                delay = min(delay * 2, float(self.settings()["max_retry_seconds"]))

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping():
            self.liveness.ping()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(SLICE_S, left))
