"""Slack Block Kit messages for coincidences and digests (pure functions).

Posting them is :mod:`mma.emitters.slack`'s job.
"""

from __future__ import annotations

import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from mma.emitters import Delivery

_KIND_TITLES = {
    "new": "🆕 New coincidence",
    "update": "🔄 Updated coincidence",
    "retraction": "❌ Retracted coincidence",
}
_SUPEREVENT = re.compile(r"^(?:M|T)?S\d{6}[a-z]{1,3}$")
_GRB = re.compile(r"^GRB ?\d{6}[A-Z]?$")
_ZTF_OBJECT = re.compile(r"^ZTF\d{2}[a-z]{7}$")
_TNS_SURVEYS = {"ZTF", "LSST", "RUBIN"}


def _escape(text: object) -> str:
    """Escape the three characters Slack's mrkdwn treats as control (``& < >``)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _number(value: Any, spec: str, default: str = "n/a") -> str:
    """Format a finite number with ``spec``; ``default`` for missing/NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return default
    return format(value, spec)


def format_dt(dt_days: Any) -> str:
    """A signed time difference in hours (below 2 days) or days.

    Parameters
    ----------
    dt_days : float
        alert_time - event_time [days].

    Returns
    -------
    str
        E.g. ``+20.0 h`` or ``-3.42 d``; ``n/a`` when not a number.
    """
    if isinstance(dt_days, bool) or not isinstance(dt_days, (int, float)) \
            or not math.isfinite(dt_days):
        return "n/a"
    if abs(dt_days) < 2.0:
        return f"{dt_days * 24.0:+.1f} h"
    return f"{dt_days:+.2f} d"


def _gracedb_url(payload: Mapping[str, Any], event: Mapping[str, Any]) -> str | None:
    properties = event.get("properties") or {}
    urls = properties.get("urls") if isinstance(properties, Mapping) else None
    if isinstance(urls, Mapping):
        url = urls.get("gracedb")
        if isinstance(url, str) and url.startswith("https://"):
            return url
    event_id = str(payload.get("event_id") or "")
    if payload.get("messenger") == "gw" and _SUPEREVENT.match(event_id):
        return f"https://gracedb.ligo.org/superevents/{urllib.parse.quote(event_id)}/view/"
    return None


def _grb_name(payload: Mapping[str, Any]) -> str | None:
    names = [payload.get("event_id"), *(payload.get("aliases") or [])]
    for name in names:
        if isinstance(name, str) and _GRB.match(name.strip()):
            return name.strip()
    return None


def message_links(payload: Mapping[str, Any], event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (label, URL) links that the ids and position of a coincidence allow.

    Parameters
    ----------
    payload : mapping
        The coincidence record.
    event : mapping
        Event extras (``properties.urls.gracedb`` is used when present).

    Returns
    -------
    list of (str, str)
        GraceDB (LVK superevents), GCN Circulars (GRB names), TNS cone search
        (ZTF/LSST positions), Fink and ALeRCE (ZTF object ids).
    """
    links: list[tuple[str, str]] = []
    gracedb = _gracedb_url(payload, event)
    if gracedb:
        links.append(("GraceDB", gracedb))
    grb = _grb_name(payload)
    if grb:
        links.append(("GCN Circulars",
                      "https://gcn.nasa.gov/circulars?" + urllib.parse.urlencode({"query": grb})))
    survey = str(payload.get("survey") or "").upper()
    ra, dec = payload.get("ra"), payload.get("dec")
    if survey in _TNS_SURVEYS and _number(ra, ".6f", "") and _number(dec, ".6f", ""):
        links.append(("TNS", "https://www.wis-tns.org/search?ra="
                      f"{_number(ra, '.6f')}&decl={_number(dec, '.6f')}"
                      "&radius=5&coords_unit=arcsec"))
    object_id = str(payload.get("object_id") or "")
    if _ZTF_OBJECT.match(object_id):
        links.append(("Fink", f"https://fink-portal.org/{object_id}"))
        links.append(("ALeRCE", f"https://alerce.online/object/{object_id}"))
    return links


def _title(delivery: Delivery) -> str:
    payload = delivery.payload
    prefix = "[TEST] " if delivery.event.get("test") else ""
    title = (f"{prefix}{_KIND_TITLES.get(delivery.kind, delivery.kind)}: "
             f"{payload.get('event_id', '?')} × {payload.get('object_id', '?')}")
    return title if len(title) <= 150 else title[:149] + "…"


def slack_message(delivery: Delivery) -> dict[str, Any]:
    """Build the Block Kit message of one delivery (pure function).

    Parameters
    ----------
    delivery : Delivery
        Kind, revision, coincidence record and event extras.

    Returns
    -------
    dict
        ``{"text": <plain-text fallback>, "blocks": [...]}``: a header with
        the kind, a section on the event, one on the candidate, one with the
        scores, a context line (flags, rank, ids) and link buttons.
    """
    p = delivery.payload
    event = delivery.event
    properties = event.get("properties") or {}
    title = _title(delivery)

    event_lines = [
        f"*Event* {_escape(p.get('event_id', '?'))}",
        f"{_escape(p.get('messenger', '?'))} · {_escape(p.get('instrument', '?'))}",
        f"t₀ {_escape(p.get('event_time', '?'))}",
    ]
    area90 = event.get("area90_deg2")
    if _number(area90, ".0f", ""):
        event_lines.append(f"90% area {_number(area90, ',.0f')} deg²")
    far = properties.get("FAR") if isinstance(properties, Mapping) else None
    if _number(far, ".3g", ""):
        event_lines.append(f"FAR {_number(far, '.3g')} Hz")

    candidate_lines = [
        f"*Candidate* {_escape(p.get('object_id', '?'))} ({_escape(p.get('survey', '?'))})",
        f"alert {_escape(p.get('alert_time', '?'))}",
        f"Δt {format_dt(p.get('dt_days'))}",
        f"RA {_number(p.get('ra'), '.4f')}°, Dec {_number(p.get('dec'), '+.4f')}°",
    ]

    cl = p.get("credible_level")
    cl_percent = _number(cl * 100.0, ".1f") if isinstance(cl, (int, float)) else "n/a"
    score_fields = [
        f"*Credible level*\n{_number(cl, '.3f')} ({cl_percent} %)",
        f"*Searched area*\n{_number(p.get('searched_area_deg2'), '.3g')} deg²",
        f"*ln B*\n{_number(p.get('log_bayes_factor'), '.2f')}",
        f"*P_chance*\n{_number(p.get('p_chance'), '.3g')}",
        f"*Rank*\n{_escape(p.get('rank', 'n/a'))}",
        f"*Revision*\n{int(delivery.revision)} (region v{_escape(p.get('region_version', '?'))})",
    ]
    flags = [str(flag) for flag in (p.get("flags") or [])]
    flag_text = ", ".join(flags) if flags else "none"

    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": "\n".join(event_lines)},
            {"type": "mrkdwn", "text": "\n".join(candidate_lines)},
        ]},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in score_fields]},
        {"type": "context", "elements": [{
            "type": "mrkdwn",
            "text": (f"Flags: {_escape(flag_text)} · status {_escape(p.get('status', '?'))}"
                     f" · alert {_escape(p.get('alert_id', '?'))}"
                     f" · id `{_escape(delivery.coincidence_id)}`"),
        }]},
    ]
    links = message_links(p, event)
    if links:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": label},
             "url": url, "action_id": f"link_{index}"}
            for index, (label, url) in enumerate(links)
        ]})

    text_lines = [
        title,
        (f"Event {p.get('event_id', '?')} ({p.get('messenger', '?')}, "
         f"{p.get('instrument', '?')}) at {p.get('event_time', '?')}"),
        (f"Candidate {p.get('object_id', '?')} ({p.get('survey', '?')}) at "
         f"{p.get('alert_time', '?')}, Δt {format_dt(p.get('dt_days'))}, "
         f"RA {_number(p.get('ra'), '.4f')} Dec {_number(p.get('dec'), '+.4f')} deg"),
        (f"CL {_number(cl, '.3f')}, area {_number(p.get('searched_area_deg2'), '.3g')} deg², "
         f"ln B {_number(p.get('log_bayes_factor'), '.2f')}, "
         f"P_chance {_number(p.get('p_chance'), '.3g')}, rank {p.get('rank', 'n/a')}, "
         f"flags {flag_text}"),
        *(f"{label}: {url}" for label, url in links),
    ]
    return {"text": _escape("\n".join(text_lines)), "blocks": blocks}


DIGEST_MAX_SECTIONS = 40
"""Deliveries listed one by one in a digest; the rest are counted (Block Kit: ≤ 50 blocks)."""

_KIND_ICONS = {"new": "🆕", "update": "🔄", "retraction": "❌"}


def _p_chance_key(payload: Mapping[str, Any]) -> float:
    """P_chance for sorting: missing or NaN values last."""
    value = payload.get("p_chance")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return math.inf
    return float(value)


def digest_order(deliveries: Sequence[Delivery]) -> list[Delivery]:
    """Deliveries best first: new and updated by P_chance ascending, then retractions.

    Parameters
    ----------
    deliveries : sequence of Delivery
        Deliveries of one digest.

    Returns
    -------
    list of Delivery
        Sorted by (retraction?, P_chance, coincidence id, revision).
    """
    return sorted(deliveries, key=lambda d: (d.kind == "retraction",
                                             _p_chance_key(d.payload),
                                             d.coincidence_id, d.revision))


def _counts_text(deliveries: Sequence[Delivery]) -> str:
    """``N messages (k new, u updated, r retracted)``."""
    kinds = [d.kind for d in deliveries]
    return (f"{len(kinds)} messages ({kinds.count('new')} new, "
            f"{kinds.count('update')} updated, {kinds.count('retraction')} retracted)")


def _digest_link(delivery: Delivery) -> tuple[str, str] | None:
    """The one link of a digest line: GraceDB, else TNS, else none."""
    found = dict(message_links(delivery.payload, delivery.event))
    for label in ("GraceDB", "TNS"):
        if label in found:
            return label, found[label]
    return None


def _digest_lines(delivery: Delivery) -> tuple[str, str]:
    """The mrkdwn and plain-text summaries of one delivery in a digest."""
    p = delivery.payload
    test = "[TEST] " if delivery.event.get("test") else ""
    head = (f"{test}{_KIND_ICONS.get(delivery.kind, '')} {p.get('event_id', '?')} × "
            f"{p.get('object_id', '?')} ({delivery.kind}, r{int(delivery.revision)})")
    scores = (f"CL {_number(p.get('credible_level'), '.3f')} · "
              f"P_chance {_number(p.get('p_chance'), '.3g')} · "
              f"Δt {format_dt(p.get('dt_days'))}")
    link = _digest_link(delivery)
    mrkdwn = f"*{_escape(head)}*\n{_escape(scores)}"
    text = f"{head}: {scores}"
    if link is not None:
        label, url = link
        mrkdwn += f" · <{_escape(url)}|{label}>"
        text += f" · {label}: {url}"
    return mrkdwn, text


def slack_digest(deliveries: Sequence[Delivery],
                 max_sections: int = DIGEST_MAX_SECTIONS) -> dict[str, Any]:
    """Build the Block Kit message of a digest of several deliveries (pure function).

    Parameters
    ----------
    deliveries : sequence of Delivery
        The deliveries of one digest period.
    max_sections : int
        Deliveries listed one by one (Block Kit allows 50 blocks); the others
        are counted in a final context line.

    Returns
    -------
    dict
        ``{"text": <plain-text fallback>, "blocks": [...]}``: a header
        ``mma digest: N messages (k new, u updated, r retracted)``, one compact
        section per delivery (event, kind, candidate, CL, P_chance, Δt and one
        GraceDB or TNS link) best first with retractions last, and
        ``… and M more`` when some were left out.
    """
    ordered = digest_order(deliveries)
    test = bool(ordered) and all(d.event.get("test") for d in ordered)
    title = f"{'[TEST] ' if test else ''}mma digest: {_counts_text(ordered)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
    ]
    text_lines = [title]
    shown = ordered[:max(0, max_sections)]
    for delivery in shown:
        mrkdwn, text = _digest_lines(delivery)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn[:3000]}})
        text_lines.append(text)
    rest = len(ordered) - len(shown)
    if rest > 0:
        more = f"… and {rest} more"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
        text_lines.append(more)
    return {"text": _escape("\n".join(text_lines)), "blocks": blocks}


