"""Writing the pages to disk, atomically: a reader sees the old page or the new one.

An event page is built whole (HTML and pictures) in a temporary directory
beside its place, then put there by renames: the old directory is renamed
aside, the new one renamed in, the old one removed. The index is one file,
written to a temporary file and renamed over the old one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine

from mma.db import pages as db
from mma.page.cache import ImageCache
from mma.page.data import gather
from mma.page.html import event_html, index_html
from mma.page.images import draw_images

__all__ = ("event_path", "safe_name", "write_event_page", "write_index")

log = logging.getLogger(__name__)

CACHE_DIR = ".cache"
"""Under the pages directory: the pictures of earlier pages (:mod:`mma.page.cache`)."""

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def safe_name(event_id: str) -> str:
    """The directory name of an event's page: *event_id* with every character outside
    ``[A-Za-z0-9._-]`` replaced by ``_`` (``.`` and ``..`` become ``_`` and ``__``)."""
    name = "".join(c if c in _SAFE else "_" for c in event_id)
    return "_" * len(name) if name in (".", "..") else (name or "_")


def event_path(out_dir: Path, event_id: str) -> Path:
    """Where the page of *event_id* is written under the pages directory *out_dir*."""
    return Path(out_dir) / "events" / safe_name(event_id) / "index.html"


@contextlib.contextmanager
def _connection(engine_or_conn: Engine | Connection) -> Iterator[Connection]:
    if isinstance(engine_or_conn, Connection):
        yield engine_or_conn
    else:
        with engine_or_conn.connect() as conn:
            yield conn


def _swap_in(built: Path, target: Path) -> None:
    """Put the directory *built* at *target*, replacing what was there."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "page")
    os.replace(built, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_event_page(engine_or_conn: Engine | Connection, event_id: str, out_dir: Path, *,
                     max_candidates: int = 200, now: datetime | None = None) -> Path:
    """Write the page of one event (by id or alias) under the pages directory *out_dir*.

    Parameters
    ----------
    engine_or_conn : Engine or Connection
        The database (read only).
    event_id : str
        The event's id or one of its aliases; the page is named after its id.
    out_dir : Path
        The pages directory; the page goes to ``events/<safe_name>/index.html``.
    max_candidates : int
        Candidates shown at most, best first.
    now : datetime, optional
        The time written on the page (UTC; default: the clock).

    Returns
    -------
    Path
        The page's ``index.html``.

    Raises
    ------
    LookupError
        No event of that name.
    """
    now = now or datetime.now(UTC)
    with _connection(engine_or_conn) as conn:
        page = gather(conn, event_id, max_candidates=max_candidates, now=now)
        if page is None:
            raise LookupError(f"no event {event_id!r}")
        target = event_path(Path(out_dir), page.event.event_id).parent
        target.parent.mkdir(parents=True, exist_ok=True)
        built = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
        try:
            images = draw_images(conn, page, built, ImageCache(Path(out_dir) / CACHE_DIR))
            (built / "index.html").write_text(event_html(page, images), encoding="utf-8")
            built.chmod(0o755)  # mkdtemp makes it private; the page is for a web server
            _swap_in(built, target)
        except BaseException:
            shutil.rmtree(built, ignore_errors=True)
            raise
    log.info("event %s: page written to %s (%d candidates shown of %d)", page.event.event_id,
             target, len(page.candidates), page.n_total)
    return target / "index.html"


def _write_file(path: Path, text: str) -> None:
    """Write *path* whole or not at all (temporary file, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_index(conn: Engine | Connection, out_dir: Path, *,
                now: datetime | None = None) -> Path:
    """Write ``index.html`` under the pages directory *out_dir*: the active events at *now*.

    An event is active when it is not retracted and its active region's window has
    not ended by *now* (UTC; default: the clock). Each links to its page
    (``events/<safe_name>/index.html``), written or not.

    Returns
    -------
    Path
        The index file.
    """
    now = now or datetime.now(UTC)
    with _connection(conn) as c:
        active = db.active_events(c, now)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    links = {a.event_id: f"events/{safe_name(a.event_id)}/index.html" for a in active}
    path = out / "index.html"
    _write_file(path, index_html(active, links, now))
    log.info("pages: index of %d active events written to %s", len(active), path)
    return path


def active_event_ids(engine_or_conn: Engine | Connection, now: datetime) -> list[str]:
    """Ids of the events the index lists at *now*."""
    with _connection(engine_or_conn) as conn:
        return [a.event_id for a in db.active_events(conn, now)]
