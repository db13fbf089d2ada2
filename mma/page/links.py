"""Links of an event page: those of every channel (:mod:`mma.emitters.links`), plus notice URLs.

The object's links (TNS cone search, Fink, ALeRCE, Lasair) and the event's
(GraceDB, GCN pages, Circulars) are the ones Slack and email show. The page adds
the other URLs the event's notices gave (``urls`` in a notice's properties), kept
only when they are plain ``http``/``https`` URLs (no ``javascript:``); the HTML
writer escapes every URL once more as an attribute value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from mma.emitters import links as channel_links

__all__ = ("Link", "event_links", "object_links", "safe_url")

Link = tuple[str, str]
"""A link: (label, URL)."""


def safe_url(value: Any) -> str | None:
    """*value* if it is an absolute http(s) URL with a host and no whitespace, else None."""
    if not isinstance(value, str) or len(value) > 2000 or any(c.isspace() for c in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def object_links(payload: Mapping[str, Any]) -> list[Link]:
    """Pages about a candidate's object (its record: ``object_id``, ``survey``, ``ra``, ``dec``)."""
    return channel_links.object_links(payload)


def event_links(event: Mapping[str, Any], properties: Any,
                notice_urls: Sequence[Any]) -> list[Link]:
    """Links of an event: those every channel shows, then the URLs its notices gave.

    Parameters
    ----------
    event : mapping
        ``event_id``, ``aliases``, ``messenger``, ``event_class``, ``instrument``.
    properties : mapping
        The event's properties (its latest notice's), as stored.
    notice_urls : sequence
        The ``urls`` property of each notice (a mapping label -> URL, as stored;
        anything else is ignored), oldest first; each distinct URL is listed once.
    """
    links = channel_links.event_links(event, {"properties": properties})
    seen = {url for _label, url in links}
    for urls in notice_urls:
        if not isinstance(urls, Mapping):
            continue
        for label, value in urls.items():
            checked = safe_url(value)
            if checked is not None and checked not in seen:
                seen.add(checked)
                links.append((str(label)[:40], checked))
    return links
