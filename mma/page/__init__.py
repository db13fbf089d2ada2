"""Static HTML event pages for the on-call astronomer (docs/pages.md).

Under a pages directory: ``index.html`` lists the active events, and
``events/<safe_name(event_id)>/index.html`` shows one event (its sky map with the
ranked candidates marked, a sortable candidate table, each candidate's light
curve, cutouts, broker classes and revision history, the event's notices and
region versions, and its retraction state), with its pictures beside it. The
daemon rewrites them as candidates change (:mod:`mma.service.pages`); ``mma page``
and ``mma pages`` write them on demand.
"""

from __future__ import annotations

from pathlib import Path

from mma.config import Config
from mma.page.write import event_path, safe_name, write_event_page, write_index

__all__ = ("event_path", "page_url", "pages_dir", "safe_name", "write_event_page",
           "write_index")


def pages_dir(config: Config) -> Path:
    """The configured pages directory: ``[pages] dir``, else ``<state_dir>/pages``."""
    configured = str(config.section("pages")["dir"])
    return Path(configured).expanduser() if configured else config.state_dir / "pages"


def page_url(config: Config, event_id: str) -> str | None:
    """The public URL of an event's page (``[pages] base_url``); None without a base URL."""
    base = str(config.section("pages")["base_url"])
    if not base:
        return None
    return f"{base.rstrip('/')}/events/{safe_name(event_id)}/index.html"
