"""Process helpers shared by the service harness: free ports, PID bookkeeping, stopping.

Every process the harness starts is registered here.  It is stopped by its PID by the
owner (a pytest finalizer), and as a backstop by an :mod:`atexit` hook.  A small PID file
in the cache directory lets a later session stop processes orphaned by a session that was
killed with SIGKILL (where neither finalizers nor ``atexit`` run).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Protocol, TypeVar

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

_live: dict[int, ManagedProcess] = {}
_live_lock = threading.Lock()


def cache_root() -> Path:
    """Return the harness cache directory: env ``MMA_TEST_CACHE``, else ``~/.cache/mma-test``."""
    env = os.environ.get("MMA_TEST_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mma-test"


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 60) -> str:
    """Return the last ``lines`` lines of a text file, or a note if it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def error_lines(path: Path, pattern: str = " ERROR ", limit: int = 10) -> str:
    """Return the first ``limit`` lines of a log that contain ``pattern`` ("" if none)."""
    try:
        with open(path, errors="replace") as handle:
            found = [line.rstrip() for line in handle if pattern in line]
    except OSError:
        return ""
    return "\n".join(found[:limit])


def children(pid: int) -> list[int]:
    """Return the PIDs whose parent is ``pid`` (from ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, ...
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(stat.parent.name))
    return found


def _pid_dir() -> Path:
    return cache_root() / "pids"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class ManagedProcess:
    """A child process started in its own session, with its output going to a log file.

    ``marker`` is a string that occurs in the command line (normally the process's temp dir);
    it is used to recognise the process again before killing an orphan by PID.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        marker: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.stop_signal = stop_signal
        self.argv = list(argv)
        self.log_path = log_path
        self.marker = marker
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        logger.info("starting %s: %s", name, " ".join(self.argv))
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        with _live_lock:
            _live[self.pid] = self
        self._write_pid_file()

    def _pid_file(self) -> Path:
        return _pid_dir() / f"{self.pid}.json"

    def _write_pid_file(self) -> None:
        try:
            _pid_dir().mkdir(parents=True, exist_ok=True)
            self._pid_file().write_text(
                json.dumps({"pid": self.pid, "owner": os.getpid(), "marker": self.marker,
                            "name": self.name})
            )
        except OSError as exc:
            logger.warning("cannot write PID file for %s: %s", self.name, exc)

    def running(self) -> bool:
        """Return whether the process has not exited yet."""
        return self.popen.poll() is None

    def stop(self, sig: signal.Signals | None = None, timeout: float = 30.0) -> int | None:
        """Send ``sig`` (default: the process's ``stop_signal``) to the PID and wait up to
        ``timeout`` s; if it is still alive then, SIGKILL its whole process group.

        SIGKILL itself always goes to the process group (so PostgreSQL backends die with a
        SIGKILLed postmaster).  The group is signalled only while its leader is not yet
        reaped, so its id cannot have been reused.  Returns the exit code (``None`` only if
        even SIGKILL did not end it within 10 s).
        """
        sig = sig or self.stop_signal
        if self.running():
            logger.info("stopping %s (pid %d) with %s", self.name, self.pid, sig.name)
            try:
                self._signal(sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s (pid %d) ignored %s for %.0f s: SIGKILL",
                               self.name, self.pid, sig.name, timeout)
                self._signal(signal.SIGKILL)
        code: int | None = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = self.popen.wait(10)
        if code is None:
            logger.error("%s (pid %d) survived SIGKILL", self.name, self.pid)
            return None
        with _live_lock:
            _live.pop(self.pid, None)
        with contextlib.suppress(OSError):
            self._pid_file().unlink()
        self._log.close()
        return code

    def _signal(self, sig: signal.Signals) -> None:
        """Signal the PID; SIGKILL also goes to its process group and its direct children
        (PostgreSQL backends are group leaders of their own).  Gone processes are fine."""
        targets = children(self.pid) if sig == signal.SIGKILL else []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if sig == signal.SIGKILL:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        for child in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, sig)


def reap_orphans() -> None:
    """SIGKILL harness processes left behind by a dead pytest session (recorded PID files).

    A process is killed only if its recorded owner is gone, it is still alive, and its
    command line still contains the recorded marker (so a reused PID is never hit).
    """
    directory = _pid_dir()
    if not directory.is_dir():
        return
    for pid_file in directory.glob("*.json"):
        try:
            info = json.loads(pid_file.read_text())
            pid, owner, marker = int(info["pid"]), int(info["owner"]), str(info["marker"])
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                pid_file.unlink()
            continue
        if _alive(owner) and owner != os.getpid():
            continue  # another live session owns it
        if _alive(pid) and marker and marker in _cmdline(pid):
            logger.warning("killing orphaned %s (pid %d)", info.get("name"), pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
            _remove_workdir(marker)
        with contextlib.suppress(OSError):
            pid_file.unlink()


def _remove_workdir(marker: str) -> None:
    """Delete an orphan's temp dir if the marker is one made by the harness (``/tmp/mma-*``)."""
    path = Path(marker)
    if path.is_dir() and path.parent == Path(tempfile.gettempdir()) and \
            path.name.startswith("mma-"):
        shutil.rmtree(path, ignore_errors=True)


def stop_all(timeout: float = 10.0) -> None:
    """Stop every process still registered (the ``atexit`` backstop)."""
    with _live_lock:
        procs = list(_live.values())
    for proc in procs:
        proc.stop(timeout=timeout)


atexit.register(stop_all)


class _Service(Protocol):
    def start(self) -> None: ...

    def cleanup(self) -> None: ...


ServiceT = TypeVar("ServiceT", bound=_Service)


def start_with_port_retry(make: Callable[[], ServiceT], *, port_taken: str,
                          what: str) -> ServiceT:
    """Start ``make()``; if its free port was grabbed before it bound, retry once.

    Free ports are chosen before the service binds them, so another process can
    take one in between; the start error then contains *port_taken*.
    """
    for attempt in (1, 2):
        service = make()
        try:
            service.start()
        except BaseException as exc:
            service.cleanup()
            if attempt == 1 and port_taken in str(exc):
                logger.warning("%s port taken meanwhile; retrying on new ports", what)
                continue
            raise
        return service
    raise AssertionError("unreachable")


class ProcessService:
    """Stop, kill, restart and clean up a service the harness started, by PID.

    Subclasses set ``proc`` (with its own ``stop_signal``) in ``start`` and own
    ``workdir``.
    """

    proc: ManagedProcess | None
    workdir: Path

    def start(self, timeout: float = 60.0) -> None:
        """Start the service and wait until it answers."""
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> None:
        """Stop by PID with the process's stop signal, then SIGKILL after ``timeout`` s."""
        if self.proc is not None:
            self.proc.stop(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the service at once (a crash: what is not flushed may be lost)."""
        if self.proc is not None:
            self.proc.stop(signal.SIGKILL, 5)

    def restart(self, timeout: float = 60.0) -> None:
        """Stop and start the same service (same ports, same data dir); wait until ready."""
        self.stop()
        self.start(timeout)

    def running(self) -> bool:
        """Return whether the service's process is alive."""
        return self.proc is not None and self.proc.running()

    def cleanup(self) -> None:
        """Stop the service and delete its temp dir."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
