"""A dependency-free client for systemd's service notification protocol (sd_notify).

systemd passes ``NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for the
abstract namespace) to ``Type=notify`` services; the service sends datagrams
of newline-separated ``KEY=value`` assignments to it. Without the variable
every call here is a no-op, so the daemon runs unchanged from a terminal.
Sending never raises into the caller: a failure is logged once, at WARNING,
and later failures at DEBUG.

Typical use in the daemon::

    notifier = Notifier.from_environ()
    interval = watchdog_interval_s()        # None: no watchdog configured
    ...                                     # bind, connect, open the DB
    notifier.ready(status="consuming")
    ...                                     # every `interval` seconds:
    notifier.watchdog()
    ...                                     # on SIGHUP:
    notifier.reloading(); reload(); notifier.ready()
    ...                                     # on SIGTERM:
    notifier.stopping()
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)

__all__ = ["Notifier", "watchdog_interval_s"]


def _address(value: str) -> str | None:
    """Socket address for a ``NOTIFY_SOCKET`` value, or None if it is not usable.

    Parameters
    ----------
    value : str
        ``/path/to/socket`` or ``@abstract-name``.

    Returns
    -------
    str or None
        The path, or ``"\\0name"`` for an abstract-namespace socket.
    """
    if len(value) < 2 or value[0] not in "/@":
        return None
    if value[0] == "@":
        return "\0" + value[1:]
    return value


class Notifier:
    """Sends state notifications to systemd over ``NOTIFY_SOCKET``.

    Parameters
    ----------
    address : str or None
        The ``NOTIFY_SOCKET`` value (``/path`` or ``@abstract``); None makes
        every method a no-op.

    Notes
    -----
    Thread-safe: one lock serialises sends, so the watchdog may be pinged from
    a scheduler thread while the main thread reports status.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._target = _address(address) if address else None
        if address and self._target is None:
            log.warning("NOTIFY_SOCKET=%r is neither a path nor @abstract; not notifying", address)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, *, unset: bool = False
    ) -> Notifier:
        """Build a notifier from ``NOTIFY_SOCKET`` in *environ*.

        Parameters
        ----------
        environ : mapping, optional
            The environment; :data:`os.environ` by default.
        unset : bool
            Remove ``NOTIFY_SOCKET`` from *environ* (which must then be
            mutable) so that child processes do not talk to systemd as if they
            were the service.

        Returns
        -------
        Notifier
            Enabled if the variable names a socket, otherwise a no-op notifier.
        """
        env = os.environ if environ is None else environ
        value = env.get("NOTIFY_SOCKET") or None
        if unset and isinstance(env, MutableMapping):
            env.pop("NOTIFY_SOCKET", None)
        return cls(value)

    @property
    def enabled(self) -> bool:
        """True if notifications are sent somewhere."""
        return self._target is not None

    def notify(self, **fields: str | int) -> bool:
        """Send one datagram of ``KEY=value`` lines.

        Parameters
        ----------
        **fields : str or int
            Assignments, e.g. ``READY=1, STATUS="consuming"``; keys are sent
            upper-cased, newlines in values are replaced by spaces.

        Returns
        -------
        bool
            True if the datagram was sent; False if disabled or sending failed.
        """
        if self._target is None or not fields:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\r", " ").replace("\n", " ")
            lines.append(f"{key.upper()}={text}")
        payload = "\n".join(lines).encode("utf-8")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                self._sock.sendto(payload, self._target)
            except OSError as exc:
                self._close_locked()
                if not self._warned:
                    self._warned = True
                    log.warning("cannot notify systemd at %s: %s", self.address, exc)
                else:
                    log.debug("cannot notify systemd at %s: %s", self.address, exc)
                return False
        return True

    # The messages the daemon sends: each returns whether its datagram was sent.

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete; *status* is one line for ``systemctl status``."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def reloading(self) -> bool:
        """A configuration reload has begun; call :meth:`ready` when done.

        Sends ``MONOTONIC_USEC`` (``CLOCK_MONOTONIC`` in µs) as
        ``Type=notify-reload`` requires; harmless under ``Type=notify``.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING=1, MONOTONIC_USEC=usec)

    def stopping(self) -> bool:
        """The service is shutting down."""
        return self.notify(STOPPING=1)

    def watchdog(self) -> bool:
        """Ping the watchdog (``WATCHDOG=1``); call every :func:`watchdog_interval_s`."""
        return self.notify(WATCHDOG=1)

    def status(self, text: str) -> bool:
        """Set the one-line status shown by ``systemctl status`` (newlines become spaces)."""
        return self.notify(STATUS=text)

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for *seconds* [s] more to start, reload or stop (``EXTEND_TIMEOUT_USEC``)."""
        return self.notify(EXTEND_TIMEOUT_USEC=max(0, round(seconds * 1_000_000)))

    def close(self) -> None:
        """Close the datagram socket (it is reopened by the next send)."""
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __repr__(self) -> str:
        return f"Notifier({self.address!r})"


def watchdog_interval_s(
    environ: Mapping[str, str] | None = None, *, pid: int | None = None
) -> float | None:
    """How often to ping the watchdog: half of ``WATCHDOG_USEC``, in seconds.

    Parameters
    ----------
    environ : mapping, optional
        The environment; :data:`os.environ` by default.
    pid : int, optional
        This process's id, compared with ``WATCHDOG_PID``; :func:`os.getpid`
        by default.

    Returns
    -------
    float or None
        Half the watchdog period [s], or None when no watchdog is configured,
        the value is malformed or zero, or ``WATCHDOG_PID`` names another
        process (the variables were inherited from a parent service).
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r", raw)
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            log.warning("ignoring malformed WATCHDOG_PID=%r", owner)
            return None
    return usec / 2_000_000
