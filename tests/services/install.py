"""Idempotent "install what is missing" helpers for the service harness.

* :func:`ensure_kafka_jars` copies the Kafka broker jars from Maven Central into the cache
  (``$MMA_TEST_CACHE/kafka-4.4.0/libs``, default ``~/.cache/mma-test/...``) once.
* :func:`ensure_postgres_bin` installs PostgreSQL from Debian packages if no ``initdb`` exists.
* :func:`ensure_java` / :func:`ensure_maven` install a JRE / Maven from Debian packages if absent.
* :func:`ensure_chromium` installs Debian's Chromium (the browser tests) if absent.

Installing Debian packages needs root; without root a clear error says what to install.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import glob
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.services.procs import cache_root

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.4.0"
POM = Path(__file__).with_name("kafka-pom.xml")
_COMPLETE = ".complete"


class InstallError(RuntimeError):
    """A dependency of the harness could not be installed."""


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (serialises concurrent pytest sessions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], what: str, timeout: float, env: dict[str, str] | None = None) -> None:
    """Run a command, raising :class:`InstallError` with its output if it fails."""
    logger.info("%s: %s", what, " ".join(argv))
    try:
        result = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            env=env, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{what} failed: {exc}") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-6000:]
        raise InstallError(f"{what} failed (exit {result.returncode}):\n{output}")


def _apt_env() -> dict[str, str]:
    return dict(os.environ, DEBIAN_FRONTEND="noninteractive")


@functools.cache
def _apt_update() -> None:
    """``apt-get update``, once per process."""
    _run(["apt-get", "update"], "apt-get update", 600, _apt_env())


def apt_install(*packages: str) -> None:
    """``apt-get install -y`` the packages (running ``apt-get update`` first, once).

    Service start-up by the packages' maintainer scripts is suppressed with a temporary
    ``policy-rc.d``, so installing ``postgresql`` does not leave a system cluster running.
    """
    if os.geteuid() != 0:
        raise InstallError(
            f"{', '.join(packages)} missing and not root: run "
            f"'apt-get update && apt-get install -y {' '.join(packages)}' as root"
        )
    env = _apt_env()
    with _file_lock(cache_root() / "apt.lock"):
        _apt_update()
        policy = Path("/usr/sbin/policy-rc.d")
        created = False
        if not policy.exists():
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
            created = True
        try:
            _run(["apt-get", "install", "-y", "--no-install-recommends", *packages],
                 f"apt-get install {' '.join(packages)}", 1200, env)
        finally:
            if created:
                policy.unlink()


def ensure_java() -> str:
    """Return the path of ``java``, installing a headless JRE if there is none."""
    java = shutil.which("java")
    if java is None:
        apt_install("default-jre-headless")
        java = shutil.which("java")
    if java is None:
        raise InstallError("java not found after installing default-jre-headless")
    return java


def ensure_maven() -> str:
    """Return the path of ``mvn``, installing Maven if there is none."""
    mvn = shutil.which("mvn")
    if mvn is None:
        apt_install("maven")
        mvn = shutil.which("mvn")
    if mvn is None:
        raise InstallError("mvn not found after installing maven")
    return mvn


def kafka_home() -> Path:
    """Return the cache directory of the Kafka broker (``<cache>/kafka-<version>``)."""
    return cache_root() / f"kafka-{KAFKA_VERSION}"


def kafka_libs_complete(libs: Path) -> bool:
    """Return whether ``libs`` holds a complete copy (marker file lists jars that all exist)."""
    marker = libs / _COMPLETE
    if not marker.is_file():
        return False
    names = [line for line in marker.read_text().splitlines() if line]
    return bool(names) and all((libs / name).is_file() for name in names)


def ensure_kafka_jars() -> Path:
    """Return the directory of the Kafka broker jars, fetching them with Maven if needed.

    Runs ``mvn -q -B dependency:copy-dependencies`` on ``kafka-pom.xml`` with a Maven
    local repository inside the cache, into a temporary directory that is renamed into
    place only when complete.  Takes ≈10 s cold; nothing when the cache is complete.
    """
    home = kafka_home()
    libs = home / "libs"
    if kafka_libs_complete(libs):
        return libs
    with _file_lock(home.parent / f"kafka-{KAFKA_VERSION}.lock"):
        if kafka_libs_complete(libs):
            return libs
        ensure_java()
        mvn = ensure_maven()
        home.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=home))
        started = time.monotonic()
        try:
            _run(
                [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(POM),
                 f"-Dmaven.repo.local={home / 'm2'}",
                 "dependency:copy-dependencies",
                 "-DincludeScope=runtime", f"-DoutputDirectory={staging}"],
                "fetching Kafka jars from Maven Central", 900,
            )
            jars = sorted(p.name for p in staging.glob("*.jar"))
            if not any(name.startswith(f"kafka_2.13-{KAFKA_VERSION}") for name in jars):
                raise InstallError(f"Maven copied no kafka_2.13 jar into {staging}: {jars}")
            (staging / _COMPLETE).write_text("\n".join(jars) + "\n")
            if libs.exists():
                shutil.rmtree(libs)
            staging.rename(libs)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        logger.info("fetched %d Kafka jars into %s in %.1f s",
                    len(jars), libs, time.monotonic() - started)
    return libs


def find_postgres_bin() -> Path | None:
    """Return the newest ``/usr/lib/postgresql/<major>/bin`` holding ``initdb``, if any."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")

    def major(path: str) -> float:
        try:
            return float(Path(path).parent.parent.name)
        except ValueError:
            return 0.0

    if not found:
        return None
    return Path(max(found, key=major)).parent


def ensure_postgres_bin() -> Path:
    """Return the PostgreSQL ``bin`` directory, installing ``postgresql`` via apt if needed."""
    bindir = find_postgres_bin()
    if bindir is None:
        apt_install("postgresql")
        bindir = find_postgres_bin()
    if bindir is None:
        raise InstallError("no /usr/lib/postgresql/*/bin/initdb after installing postgresql")
    return bindir


CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> Path:
    """Return Debian's Chromium (``/usr/bin/chromium``), installing ``chromium`` if absent.

    The browser tests drive this binary with Playwright; Playwright's own browser
    download is never used.
    """
    if not CHROMIUM.is_file():
        apt_install("chromium")
    if not CHROMIUM.is_file():
        raise InstallError(f"no {CHROMIUM} after installing chromium")
    return CHROMIUM
