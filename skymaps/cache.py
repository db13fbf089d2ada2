"""Content-addressed on-disk cache of downloaded sky maps.

Layout under ``directory``::

    objects/<sha[:2]>/<sha256>    the bytes, named by their SHA-256
    index/<sha256(url)>.json      {"url": ..., "sha256": ..., "stored": unix time [s]}

Every file is written to a temporary name in its own directory and renamed into
place (``os.replace`` is atomic on POSIX), so a reader never sees a partial file
and two processes (two daemons sharing a cache directory) can write the same
entry concurrently: the last rename wins and both versions are complete. One
index file per URL, rather than one shared index, is what makes that lock-free.
Objects are verified against their name when read, so a damaged file is a miss,
never wrong data. :meth:`SkymapCache.prune` leaves objects younger than
``grace_s`` alone, so it cannot delete an object whose index entry another
process is about to write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Collection
from pathlib import Path

__all__ = ("SkymapCache",)

log = logging.getLogger(__name__)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class SkymapCache:
    """Downloaded sky maps by URL, stored once per content.

    Parameters
    ----------
    directory : str or pathlib.Path
        Cache root (e.g. the service's ``CacheDirectory``); created if missing.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._objects = self.directory / "objects"
        self._index = self.directory / "index"
        self._objects.mkdir(parents=True, exist_ok=True)
        self._index.mkdir(parents=True, exist_ok=True)

    def _object_path(self, sha256: str) -> Path:
        return self._objects / sha256[:2] / sha256

    def _index_path(self, url: str) -> Path:
        return self._index / f"{_sha256(url.encode())}.json"

    def _entry(self, path: Path) -> dict[str, object] | None:
        try:
            entry = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("unreadable cache index entry %s: %s", path, exc)
            return None
        return entry if isinstance(entry, dict) else None

    def get(self, url: str, *, max_age_s: float | None = None) -> bytes | None:
        """The bytes last stored for ``url``, or None (absent, older than ``max_age_s``
        [s], or damaged)."""
        entry = self._entry(self._index_path(url))
        if entry is None or entry.get("url") != url:
            return None
        stored = entry.get("stored")
        if max_age_s is not None and (not isinstance(stored, int | float)
                                      or time.time() - stored > max_age_s):
            return None
        sha = entry.get("sha256")
        if not isinstance(sha, str):
            return None
        try:
            data = self._object_path(sha).read_bytes()
        except FileNotFoundError:
            return None
        if _sha256(data) != sha:
            log.warning("cache object %s is damaged; ignoring it", sha)
            return None
        return data

    def put(self, url: str, data: bytes) -> str:
        """Store ``data`` as the content of ``url``; return its SHA-256 (hex)."""
        sha = _sha256(data)
        path = self._object_path(sha)
        if not path.exists():
            _atomic_write(path, data)
        else:
            # Touch so prune's age test sees it as in use.
            with contextlib.suppress(OSError):
                os.utime(path)
        entry = {"url": url, "sha256": sha, "stored": time.time()}
        _atomic_write(self._index_path(url), json.dumps(entry).encode())
        log.debug("cached %s (%d bytes) as %s", url, len(data), sha)
        return sha

    def prune(self, *, keep: Collection[str] = (), max_age_s: float | None = None,
              grace_s: float = 60.0) -> int:
        """Delete index entries and unreferenced objects; return how many files went.

        Parameters
        ----------
        keep : collection of str
            URLs or SHA-256 digests that stay whatever their age (e.g. the maps of
            regions whose windows are still open).
        max_age_s : float, optional
            Index entries stored longer ago than this [s] are dropped unless kept;
            None keeps every entry and only removes orphaned objects.
        grace_s : float
            Objects modified within this many seconds are never deleted (another
            process may be between writing an object and its index entry).
        """
        now = time.time()
        removed = 0
        referenced: set[str] = set()
        for path in self._index.glob("*.json"):
            if path.name.startswith(".tmp-"):
                # A crashed writer's temporary file: remove once surely abandoned.
                with contextlib.suppress(OSError):
                    if now - path.stat().st_mtime > grace_s:
                        path.unlink()
                        removed += 1
                continue
            entry = self._entry(path)
            if entry is None:
                continue
            url, sha, stored = entry.get("url"), entry.get("sha256"), entry.get("stored")
            kept = url in keep or sha in keep
            old = (max_age_s is not None and isinstance(stored, int | float)
                   and now - stored > max_age_s)
            if old and not kept:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
            elif isinstance(sha, str):
                referenced.add(sha)
        for path in self._objects.glob("*/*"):
            name = path.name
            if name in referenced or name in keep:
                continue
            try:
                # Stray temporary files of a crashed writer age out the same way.
                if now - path.stat().st_mtime <= grace_s:
                    continue
                path.unlink()
                removed += 1
            except FileNotFoundError:
                continue
        log.info("skymap cache prune: %d files removed", removed)
        return removed
