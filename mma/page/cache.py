"""Pictures drawn for earlier pages, kept by what they show, so a page is redrawn cheaply.

The daemon rewrites an event's page whenever the event or one of its candidates
changes; most of its pictures have not (a new alert of one object changes one
light curve). Drawing a light curve costs ~0.4 s of matplotlib, so every picture
is filed under a digest of everything it shows (its kind, title, the points or
stamps, the region version and the marks) in ``<pages>/.cache/``, and a page
takes the file from there when it exists. Files not used for
:data:`MAX_AGE_S` are removed by :meth:`ImageCache.prune`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Hashable
from pathlib import Path

__all__ = ("MAX_AGE_S", "ImageCache")

log = logging.getLogger(__name__)

MAX_AGE_S = 7 * 86400.0
"""A cached picture unused for this long [s] is pruned."""


class ImageCache:
    """PNG files by the digest of what they show, in the directory *root*."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @staticmethod
    def digest(key: Hashable) -> str:
        """The file name of a picture: a SHA-256 of ``repr(key)`` (bytes go in as digests)."""
        return hashlib.sha256(repr(key).encode("utf-8")).hexdigest() + ".png"

    def place(self, out: Path, name: str, key: Hashable,
              render: Callable[[], bytes | None]) -> bool:
        """Put the picture of *key* at ``out/name``, drawing it only if not cached.

        Returns False when *render* draws nothing (the picture is left out).
        """
        cached = self.root / self.digest(key)
        target = Path(out) / name
        if cached.is_file():
            with contextlib.suppress(OSError):
                os.utime(cached)  # used: not pruned
                _link_or_copy(cached, target)
                return True
        png = render()
        if png is None:
            return False
        target.write_bytes(png)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".", suffix=".png", dir=self.root)
            with os.fdopen(fd, "wb") as fh:
                fh.write(png)
            os.chmod(tmp, 0o644)
            os.replace(tmp, cached)
        except OSError as exc:  # a cache that cannot be written costs time, not the page
            log.warning("pages: picture cache %s not written: %s", self.root, exc)
        return True

    def prune(self, max_age_s: float = MAX_AGE_S, now: float | None = None) -> int:
        """Remove the pictures not used for *max_age_s* seconds; return how many."""
        limit = (time.time() if now is None else now) - max_age_s
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for path in self.root.iterdir():
                with contextlib.suppress(OSError):
                    if path.stat().st_mtime < limit:
                        path.unlink()
                        removed += 1
        return removed


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link (the cache and the pages share a file system), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
