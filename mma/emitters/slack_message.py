"""Slack Block Kit message of a candidate, and what messages say about a record.

A candidate is one object of one survey with its detections in the event's window
(``docs/candidate.md``, schema version 2). :func:`object_facts`,
:func:`significance_text` and :func:`components_text` read a record (version 2, or a
version 1 record migrated from an older database: one alert, ``alert_id`` and
``alert_time``, none of the new fields) and are shared with the email channel.

Posting is :mod:`mma.emitters.slack`'s job; digests are built there too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from mma.emitters import Delivery
from mma.emitters.event_facts import classes_lines, event_rows, significance_text
from mma.emitters.joint_message import is_event_event, joint_slack_message
from mma.emitters.links import message_links

__all__ = ("classes_lines", "components_text", "format_dt", "format_magnitude",
           "message_links", "object_facts", "object_lines", "significance_text",
           "slack_message")

_KIND_TITLES = {
    "new": "🆕 New candidate",
    "update": "🔄 Updated candidate",
    "retraction": "❌ Retracted candidate",
}


def _escape(text: object) -> str:
    """Escape the three characters Slack's mrkdwn treats as control (``& < >``)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _is_number(value: Any) -> TypeGuard[float]:
    """A finite int or float (not a bool)."""
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value))


def _number(value: Any, spec: str, default: str = "n/a") -> str:
    """Format a finite number with ``spec``; ``default`` for missing/NaN."""
    return format(value, spec) if _is_number(value) else default


def format_dt(dt_days: Any) -> str:
    """A signed time difference in hours (below 2 days) or days.

    Parameters
    ----------
    dt_days : float
        A time minus the event time t0 [days].

    Returns
    -------
    str
        E.g. ``+20.0 h`` or ``-3.42 d``; ``n/a`` when not a number.
    """
    if not _is_number(dt_days):
        return "n/a"
    if abs(dt_days) < 2.0:
        return f"{dt_days * 24.0:+.1f} h"
    return f"{dt_days:+.2f} d"


def format_magnitude(magnitude: Any, band: Any) -> str:
    """``r 20.95 mag`` (AB); ``n/a`` without a magnitude, no band when unknown."""
    if not _is_number(magnitude):
        return "n/a"
    return f"{band} {magnitude:.2f} mag" if band else f"{magnitude:.2f} mag"


# -- the record: version 2, with version 1 fallbacks --------------------------------------


@dataclass(frozen=True)
class ObjectFacts:
    """The object of a candidate: times ISO UTC, magnitudes ``band mag mag`` (AB) or n/a."""

    n_detections: int | None  # vetted detections in the window; None when not stated
    n_vetoed: int | None  # vetoed detections in the window
    first_after_t0: str | None  # first vetted detection at or after t0
    dt_days: float | None  # first_after_t0 - t0, else first in the window - t0 [days]
    last: str | None  # last vetted detection in the window
    latest: str  # magnitude of the newest detection
    peak: str  # magnitude of the brightest detection
    n_prior: int  # detections before t0 - 60 s
    history_source: str | None  # where the prior detections were found
    rates: str | None  # steepest rise and fade [mag/day], when known
    changes: tuple[str, ...]  # what changed since the previous published revision
    alert_id: str | None  # the one alert of a version 1 record


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _rates(p: Mapping[str, Any]) -> str | None:
    parts = [f"{word} {p[key]:.2f} mag/d" for word, key in (
        ("rising", "rise_rate_mag_per_day"), ("fading", "fade_rate_mag_per_day"))
        if _is_number(p.get(key))]
    return ", ".join(parts) or None


def object_facts(payload: Mapping[str, Any]) -> ObjectFacts:
    """Read the object's detections and history from a record.

    Parameters
    ----------
    payload : mapping
        A version 2 record; a version 1 one (``alert_id``, ``alert_time``) reads as one
        detection at ``alert_time`` with unknown magnitudes and no history.

    Returns
    -------
    ObjectFacts
        Missing fields give None, ``n/a``, 0 or empty values, never an exception.
    """
    p = payload
    detections = [d for d in p.get("detections") or () if isinstance(d, Mapping)]
    alert_time = p.get("alert_time") if isinstance(p.get("alert_time"), str) else None
    dt_days = p.get("dt_days") if _is_number(p.get("dt_days")) else None
    n_detections = _count(p.get("n_detections"))
    if n_detections is None and (detections or alert_time):
        n_detections = len(detections) or 1
    if "first_detection_after_t0" in p:
        first_after = p.get("first_detection_after_t0")
    else:  # version 1: the alert, when after t0
        first_after = alert_time if dt_days is not None and dt_days >= 0 else None
    last = p.get("last_detection") or (detections[-1].get("time") if detections else None)
    newest = detections[-1] if detections else {}
    peak = format_magnitude(p.get("peak_magnitude"), p.get("peak_band"))
    if peak == "n/a" and detections:
        bright = min((d for d in detections if _is_number(d.get("magnitude"))),
                     key=lambda d: d["magnitude"], default={})
        peak = format_magnitude(bright.get("magnitude"), bright.get("band"))
    alert_id = p.get("alert_id")
    return ObjectFacts(
        n_detections=n_detections, n_vetoed=_count(p.get("n_vetoed_detections")),
        first_after_t0=str(first_after) if first_after else None, dt_days=dt_days,
        last=str(last or alert_time) if (last or alert_time) else None,
        latest=format_magnitude(newest.get("magnitude"), newest.get("band")), peak=peak,
        n_prior=_count(p.get("n_prior_detections")) or 0,
        history_source=str(p["history_source"]) if p.get("history_source") else None,
        rates=_rates(p), changes=tuple(str(c) for c in p.get("changes") or ()),
        alert_id=str(alert_id) if alert_id and not detections else None)


def detections_text(facts: ObjectFacts) -> str:
    """``3 detections in the window (1 vetoed)``."""
    n = facts.n_detections
    text = "? detections" if n is None else f"{n} detection{'' if n == 1 else 's'}"
    if facts.n_vetoed:
        text += f" ({facts.n_vetoed} vetoed)"
    return text + " in the window"


def prior_text(facts: ObjectFacts) -> str | None:
    """``2 before t0 (ztf.prv_candidates)``; None without prior detections."""
    if facts.n_prior <= 0:
        return None
    return f"{facts.n_prior} before t0 ({facts.history_source or 'source not stated'})"


def components_text(payload: Mapping[str, Any]) -> str:
    """The ln B terms, ``sky 6.54, t 0.00, D 0.00, prior 0.00``."""
    components = payload.get("components")
    if not isinstance(components, Mapping):
        return "n/a"
    return ", ".join(f"{key.removeprefix('ln_').removeprefix('B_')} {_number(value, '.2f')}"
                     for key, value in components.items() if str(key).startswith("ln_"))


# -- the Slack message of one delivery ---------------------------------------------------


def _cap(text: str, limit: int = 2000) -> str:
    """Cut a field's text to Slack's limit (2,000 characters; more is refused with a 400,
    which would park the message), without splitting an ``&amp;``-style escape."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    amp = cut.rfind("&")
    if amp > cut.rfind(";"):
        cut = cut[:amp]
    return cut + "…"


def _title(delivery: Delivery) -> str:
    p = delivery.payload
    prefix = "[TEST] " if delivery.event.get("test") else ""
    title = (f"{prefix}{_KIND_TITLES.get(delivery.kind, delivery.kind)}: "
             f"{p.get('object_id', '?')} ({p.get('survey', '?')}) × {p.get('event_id', '?')}")
    return title if len(title) <= 150 else title[:149] + "…"


def _event_lines(p: Mapping[str, Any], event: Mapping[str, Any]) -> list[str]:
    """The event: id, class and instrument, t0, then notice type, significance (FAR in
    its stated unit, p_astro), classification, distance [Mpc] and 90 % area [deg²]
    (:func:`~mma.emitters.event_facts.event_rows`; plain text)."""
    lines = [str(p.get("event_id", "?")),
             f"{p.get('event_class') or p.get('messenger', '?')} · {p.get('instrument', '?')}",
             f"t₀ {p.get('event_time', '?')}"]
    rows = event_rows(p, event)
    return lines + [text if label == "Significance" else f"{label.lower()} {text}"
                    for label, text in rows]


def object_lines(p: Mapping[str, Any], facts: ObjectFacts) -> list[str]:
    """The object's lines: id, survey; RA, Dec [deg] and scatter [arcsec]; detections;
    first after t0 with Δt; last; latest and peak magnitude [AB]; rise/fade [mag/day];
    prior detections; the alert of a version 1 record; the brokers' classes, one line
    per broker (plain text)."""
    scatter = p.get("position_scatter_arcsec")
    position = f"RA {_number(p.get('ra'), '.4f')}°, Dec {_number(p.get('dec'), '+.4f')}°"
    if _is_number(scatter):
        position += f" (scatter {scatter:.2f}″)"
    if facts.first_after_t0:
        first = f"first after t₀ {facts.first_after_t0} (Δt {format_dt(facts.dt_days)})"
    else:
        first = f"no detection after t₀ (first in window Δt {format_dt(facts.dt_days)})"
    lines = [f"{p.get('object_id', '?')} ({p.get('survey', '?')})", position,
             detections_text(facts), first, f"last {facts.last or 'n/a'}"]
    if (facts.latest, facts.peak) != ("n/a", "n/a"):
        lines.append(f"latest {facts.latest} · peak {facts.peak}")
    if facts.rates:
        lines.append(facts.rates)
    prior = prior_text(facts)
    if prior:
        lines.append(f"prior detections: {prior}")
    if facts.alert_id:
        lines.append(f"alert {facts.alert_id}")
    return lines + classes_lines(p)


def _score_fields(delivery: Delivery) -> list[str]:
    p = delivery.payload
    cl = p.get("credible_level")
    cl_percent = _number(cl * 100.0, ".1f") if _is_number(cl) else "n/a"
    n_bg = (p.get("components") or {}).get("n_background")
    return [
        f"*Credible level*\n{_number(cl, '.3f')} ({cl_percent} %)",
        f"*Searched area*\n{_number(p.get('searched_area_deg2'), '.3g')} deg²",
        f"*ln B*\n{_number(p.get('log_bayes_factor'), '.2f')} "
        f"({_escape(components_text(p))})",
        f"*P_chance*\n{_number(p.get('p_chance'), '.3g')}"
        + (f" (N_bg {_number(n_bg, '.3g')})" if _is_number(n_bg) else ""),
        f"*Rank*\n{_escape(p.get('rank', 'n/a'))}",
        f"*Revision*\n{int(delivery.revision)} (region v{_escape(p.get('region_version', '?'))})",
    ]


def slack_message(delivery: Delivery) -> dict[str, Any]:
    """Build the Block Kit message of one delivery (pure function).

    Parameters
    ----------
    delivery : Delivery
        Kind, revision, candidate record (version 2, or 1) and event extras.

    Returns
    -------
    dict
        ``{"text": <plain-text fallback>, "blocks": [...]}``: a header naming the
        object and the event, a section on the event and one on the object
        (:func:`object_lines`), what changed (updates), the scores, a context line
        (flags, status, id) and link buttons. An event x event coincidence gets its
        own message (:func:`~mma.emitters.joint_message.joint_slack_message`).
    """
    if is_event_event(delivery.payload):
        return joint_slack_message(delivery)
    p, event = delivery.payload, delivery.event
    title = _title(delivery)
    facts = object_facts(p)
    event_lines, obj_lines = _event_lines(p, event), object_lines(p, facts)
    flags = [str(flag) for flag in (p.get("flags") or [])]
    flag_text = ", ".join(flags) if flags else "none"
    changed = f"Changed: {', '.join(facts.changes)}" if facts.changes else None
    links = message_links(p, event, delivery.page_url)

    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": _cap("*Event* " + "\n".join(map(_escape, event_lines)))},
            {"type": "mrkdwn", "text": _cap("*Object* " + "\n".join(map(_escape, obj_lines)))},
        ]},
    ]
    if changed and delivery.kind != "new":
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"*{_escape(changed)}*"}})
    blocks += [
        {"type": "section",
         "fields": [{"type": "mrkdwn", "text": f} for f in _score_fields(delivery)]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": (
            f"Flags: {_escape(flag_text)} · status {_escape(p.get('status', '?'))}"
            f" · id `{_escape(delivery.coincidence_id)}`")}]},
    ]
    if links:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": label},
             "url": url, "action_id": f"link_{index}"}
            for index, (label, url) in enumerate(links)]})

    text_lines = [
        title, "Event " + "; ".join(event_lines), "Object " + "; ".join(obj_lines),
        *([changed] if changed and delivery.kind != "new" else []),
        (f"CL {_number(p.get('credible_level'), '.3f')}, "
         f"area {_number(p.get('searched_area_deg2'), '.3g')} deg², "
         f"ln B {_number(p.get('log_bayes_factor'), '.2f')} ({components_text(p)}), "
         f"P_chance {_number(p.get('p_chance'), '.3g')}, rank {p.get('rank', 'n/a')}, "
         f"flags {flag_text}"),
        *(f"{label}: {url}" for label, url in links),
    ]
    return {"text": _escape("\n".join(text_lines)), "blocks": blocks}
