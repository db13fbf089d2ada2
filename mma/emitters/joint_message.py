"""Messages about an event x event coincidence (GW x GRB, GW x neutrino, GRB x neutrino).

An *event-event* record (``coincidence_type = "event-event"``) pairs two multi-messenger
events in time and on the sky: the primary (the GW if any) and ``other``, the time
difference ``dt_s`` [s] (other's t0 minus the primary's), the coincidence window
[s] and its source, the sky overlap integral I (dimensionless), the temporal and
space-time false-alarm rates [Hz] and, when one was made, the combined-region event
optical candidates are scored on. It has no optical object: no position, detections,
cutouts or P_chance.

This module renders it for every human channel: rows of facts (:func:`joint_facts`),
a title, the Slack Block Kit message, the email subject and rows, and one digest line.
Every field may be missing, None, NaN or hostile text (it comes from notices): text is
collapsed to one line without control characters and cut (:func:`clean`), numbers are
formatted only when finite; Slack text is escaped here, HTML by the email renderer.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from typing import Any, TypeGuard

from mma.emitters import Delivery
from mma.emitters.event_facts import SECONDS_PER_YEAR, format_far, significance_text
from mma.emitters.links import event_links

__all__ = ("clean", "counterpart", "far_per_years", "is_event_event", "joint_describe",
           "joint_digest_parts", "joint_digest_text", "joint_facts", "joint_links",
           "joint_slack_message", "joint_title", "pair_label")

Row = tuple[str, str]
"""A (label, value) line of a message."""

MAX_ID = 80  # characters of an event id or alias shown
MAX_TEXT = 160  # characters of any other text from the record (window source, flags...)
MAX_LINKS = 10  # link buttons of a Slack message (Block Kit allows 25 per actions block)
_MESSENGERS = {"gw": "GW", "grb": "GRB", "neutrino": "neutrino", "xray": "X-ray",
               "x-ray": "X-ray", "optical": "optical", "gamma": "gamma-ray"}
_KIND_TITLES = {"new": "🔗 New", "update": "🔄 Updated", "retraction": "❌ Retracted"}
_KIND_WORDS = {"new": "new", "update": "updated", "retraction": "RETRACTED"}


def is_event_event(record: Any) -> bool:
    """Whether *record* is an event x event coincidence (absent type: a candidate)."""
    return isinstance(record, Mapping) and record.get("coincidence_type") == "event-event"


def _is_number(value: Any) -> TypeGuard[float]:
    return (not isinstance(value, bool) and isinstance(value, int | float)
            and math.isfinite(value))


def clean(value: Any, limit: int = MAX_TEXT, default: str = "?") -> str:
    """Untrusted text on one line: control and format characters dropped, whitespace
    collapsed, cut to *limit* characters (``…`` marks a cut); *default* when empty."""
    if value is None or isinstance(value, Mapping | list | tuple):
        return default
    raw = str(value)[:limit * 4]  # no need to scan 10 kB to keep 80 characters
    text = " ".join("".join(ch for ch in raw if unicodedata.category(ch)[0] != "C"
                            and unicodedata.category(ch) not in ("Zl", "Zp")).split())
    if not text:
        return default
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _sub(record: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = record.get(key)
    return value if isinstance(value, Mapping) else {}


def _messenger(event: Mapping[str, Any]) -> str:
    """``GW``, ``GRB``, ``neutrino``...; ``?`` when not stated."""
    messenger = clean(event.get("messenger"), 20, "")
    return _MESSENGERS.get(messenger.lower(), messenger) or "?"


def pair_label(record: Mapping[str, Any]) -> str:
    """``GW x GRB``: the messengers of the primary and the other event."""
    return f"{_messenger(record)} x {_messenger(_sub(record, 'other'))}"


def far_per_years(rate_hz: Any) -> str:
    """A rate [Hz] in human form, ``1 per 8.57e+13 yr`` or ``3.2 per yr``; n/a otherwise."""
    if not _is_number(rate_hz) or rate_hz < 0:
        return "n/a"
    yearly = rate_hz * SECONDS_PER_YEAR
    if yearly == 0:
        return "0 per yr"
    return f"1 per {1.0 / yearly:.3g} yr" if yearly < 1.0 else f"{yearly:.3g} per yr"


def _far(rate_hz: Any, missing: str) -> str:
    """``3.7e-22 Hz (1 per 8.57e+13 yr)``; *missing* when not a finite rate."""
    text = format_far(rate_hz) if _is_number(rate_hz) else "n/a"
    return missing if text == "n/a" else text


def _dt(record: Mapping[str, Any]) -> tuple[str, str]:
    """(``+2.0 s``, ``GRB 2.0 s after GW``) of ``dt_s`` [s]; n/a when not a number."""
    dt = record.get("dt_s")
    if not _is_number(dt):
        return "n/a", "n/a"
    first, second = _messenger(_sub(record, "other")), _messenger(record)
    when = "after" if dt >= 0 else "before"
    plain = f"{dt:+.1f} s" + (f" ({dt / 3600.0:+.2f} h)" if abs(dt) >= 3600.0 else "")
    return plain, f"{first} {abs(dt):.1f} s {when} {second}"


def _window(record: Mapping[str, Any]) -> str:
    """``[-1.0, +5.0] s (RAVEN CBC x GRB (Urban 2016))`` of ``window_s`` [s]."""
    window = record.get("window_s")
    source = record.get("window_source")
    ok = isinstance(window, list | tuple) and len(window) == 2 and all(map(_is_number, window))
    text = f"[{window[0]:+.1f}, {window[1]:+.1f}] s" if ok else "n/a"  # type: ignore[index]
    return text + (f" ({clean(source)})" if source not in (None, "") else "")


def _overlap(record: Mapping[str, Any]) -> str:
    """``32.5 (skymap)``; says why when there is none."""
    value = record.get("overlap_integral")
    method = record.get("overlap_method")
    if not _is_number(value):
        return "not computed (an event has no usable region)"
    return f"{value:.3g}" + (f" ({clean(method, 20)})" if method else "")


def _event_rows(name: str, event: Mapping[str, Any]) -> list[Row]:
    """One event of the pair: id and aliases, class and instrument, t0, significance."""
    event_id = clean(event.get("event_id"), MAX_ID)
    aliases = event.get("aliases")
    aliases = [clean(a, MAX_ID) for a in aliases[:5] if a != event.get("event_id")] \
        if isinstance(aliases, list) else []
    significance = significance_text(event, {})
    rows = [(f"{name} event", event_id + (f" (aka {', '.join(aliases)})" if aliases else "")),
            (f"{name} class / instrument",
             f"{clean(event.get('event_class') or event.get('messenger'), 40)} / "
             f"{clean(event.get('instrument'), 40)}"),
            (f"{name} time t0 (UTC)", clean(event.get("event_time"), 40))]
    return rows + ([(f"{name} significance", clean(significance))] if significance else [])


def joint_facts(record: Mapping[str, Any]) -> list[Row]:
    """The facts of an event x event coincidence as (label, value) rows.

    Parameters
    ----------
    record : mapping
        The event-event record: ``dt_s`` and ``window_s`` [s], ``overlap_integral``
        (dimensionless), ``temporal_far_hz`` and ``space_time_far_hz`` [Hz]...

    Returns
    -------
    list of (str, str)
        Both events (id, class / instrument, t0, significance), Δt with its sign and in
        words, the window and its source, the overlap integral, the temporal and
        space-time FAR [Hz] with their human form, the method (and R_ext [Hz]), the
        joint event, status, changes, flags and the coincidence id. Never raises.
    """
    p = record if isinstance(record, Mapping) else {}
    other = _sub(p, "other")
    dt, words = _dt(p)
    method = clean(p.get("far_method"), 20, "not stated")
    if _is_number(p.get("external_rate_hz")):
        method += f" (R_ext {p['external_rate_hz']:.3g} Hz)"
    changes = p.get("changes")
    flags = p.get("flags")
    rows = [*_event_rows(_messenger(p), p), *_event_rows(_messenger(other), other),
            ("Δt (other − primary)", dt if dt == "n/a" else f"{dt}: {words}"),
            ("Window", _window(p)), ("Sky overlap integral I", _overlap(p)),
            ("Temporal FAR", _far(p.get("temporal_far_hz"), "not stated by either event")),
            ("Space-time FAR", _far(p.get("space_time_far_hz"), "n/a (no overlap integral)")),
            ("FAR method", method),
            ("Joint event", clean(p.get("joint_event_id"), MAX_ID, "none")),
            ("Status", clean(p.get("status"), 20))]
    if isinstance(changes, list) and changes:
        rows.append(("Changed", clean(", ".join(map(str, changes[:20])))))
    rows.append(("Flags", clean(", ".join(map(str, flags[:20])), default="none")
                 if isinstance(flags, list) else "none"))
    return [*rows, ("Coincidence id", clean(p.get("coincidence_id"), MAX_ID))]


def _names(record: Mapping[str, Any]) -> str:
    """``S170817a x GRB170817529``."""
    return (f"{clean(record.get('event_id'), MAX_ID)} x "
            f"{clean(_sub(record, 'other').get('event_id'), MAX_ID)}")


def _test(record: Mapping[str, Any], event: Mapping[str, Any] | None = None) -> bool:
    flags = record.get("flags")
    return bool((event or {}).get("test")) or (isinstance(flags, list) and "test" in flags)


def joint_title(record: Mapping[str, Any], kind: str | None = None) -> str:
    """``🔗 New GW x GRB coincidence: S170817a x GRB170817529`` (at most 150 characters).

    *kind* (``new``, ``update``, ``retraction``) defaults to the record's own.
    """
    kind = kind or str(record.get("kind") or "new")
    prefix = "[TEST] " if _test(record) else ""
    title = (f"{prefix}{_KIND_TITLES.get(kind, _KIND_TITLES['new'])} {pair_label(record)} "
             f"coincidence: {_names(record)}")
    return title if len(title) <= 150 else title[:149] + "…"


def _far_summary(record: Mapping[str, Any]) -> str:
    """``space-time FAR 1 per 8.57e+13 yr`` (the temporal FAR when there is no space-time one)."""
    for key, name in (("space_time_far_hz", "space-time"), ("temporal_far_hz", "temporal")):
        if _is_number(record.get(key)) and record[key] >= 0:
            return f"{name} FAR {far_per_years(record[key])}"
    return "FAR n/a"


def joint_digest_parts(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """(``S170817a x GRB170817529``, ``space-time FAR 1 per 8.57e+13 yr``, ``+2.0 s``)."""
    return _names(record), _far_summary(record), _dt(record)[0]


def joint_digest_text(record: Mapping[str, Any]) -> str:
    """One digest line: ``S170817a x GRB170817529: space-time FAR 1 per 8.57e+13 yr, dt +2.0 s``."""
    names, far, dt = joint_digest_parts(record)
    return f"{names}: {far}, dt {dt}"


def counterpart(record: Mapping[str, Any], primary: bool) -> tuple[Mapping[str, Any], Any]:
    """The other event of the pair as seen from one of its events, and its Δt [s].

    Parameters
    ----------
    record : mapping
        The event-event record.
    primary : bool
        Whether the event looked at is the record's primary (else its ``other``).

    Returns
    -------
    (mapping, float or None)
        The counterpart's fields (``event_id``, ``messenger``...) and its t0 minus the
        looked-at event's t0 [s] (None when not a number).
    """
    dt = record.get("dt_s")
    dt = float(dt) if _is_number(dt) else None
    if primary:
        return _sub(record, "other"), dt
    return record, None if dt is None else -dt


def joint_links(record: Mapping[str, Any], event: Mapping[str, Any],
                page: str | None = None) -> list[Row]:
    """mma's page, the primary's pages (GraceDB...), then the other's, its messenger first
    (``GRB GCN notices``); each URL built by :mod:`mma.emitters.links` from checked ids."""
    other = _sub(record, "other")
    found = [("Event page", page)] if page else []
    found += event_links(record, event)
    found += [(f"{_messenger(other)} {label}", url) for label, url in event_links(other, {})]
    return found[:MAX_LINKS]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _field(label: str, value: str) -> dict[str, str]:
    """A Block Kit mrkdwn field, within Slack's 2,000 characters: the text is cut before
    it is escaped (an escape makes at most 5 characters of 1, and is never split)."""
    if len(value) > 380:
        value = value[:379] + "…"
    return {"type": "mrkdwn", "text": f"*{_escape(label[:40])}*\n{_escape(value)}"}


def joint_slack_message(delivery: Delivery) -> dict[str, Any]:
    """The Block Kit message of an event x event coincidence (pure function).

    Parameters
    ----------
    delivery : Delivery
        Kind, revision and the event-event record; ``event`` extras of the primary.

    Returns
    -------
    dict
        ``{"text": <plain-text fallback>, "blocks": [...]}``: a header naming the pair,
        one section per event, what changed (updates), Δt, window, overlap and FARs,
        a context line (flags, status, id) and link buttons.
    """
    p = delivery.payload if isinstance(delivery.payload, Mapping) else {}
    event = delivery.event if isinstance(delivery.event, Mapping) else {}
    title = joint_title(p, delivery.kind)
    if event.get("test") and not title.startswith("[TEST]"):
        title = ("[TEST] " + title)[:150]
    pair = [(_messenger(e), _event_rows(_messenger(e), e)) for e in (p, _sub(p, "other"))]
    rows = joint_facts(p)
    facts = dict(rows[sum(len(r) for _, r in pair):])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        {"type": "section", "fields": [
            _field(f"{name} event", "\n".join(value for _, value in event_rows))
            for name, event_rows in pair]},
    ]
    if "Changed" in facts and delivery.kind != "new":
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": f"*Changed: {_escape(facts['Changed'])}*"}})
    blocks += [
        {"type": "section", "fields": [_field(label, facts[label]) for label in (
            "Δt (other − primary)", "Window", "Sky overlap integral I", "Temporal FAR",
            "Space-time FAR", "FAR method", "Joint event")]
            + [_field("Revision", f"{int(delivery.revision)}")]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(
            f"Flags: {facts['Flags']} · status {facts['Status']} · id "
            f"{clean(delivery.coincidence_id, MAX_ID)}")}]},
    ]
    links = joint_links(p, event, delivery.page_url)
    if links:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": label[:75]},
             "url": url[:3000], "action_id": f"link_{index}"}
            for index, (label, url) in enumerate(links)]})
    text = [title, *(f"{label}: {value}" for label, value in rows),
            *(f"{label}: {url}" for label, url in links)]
    return {"text": _escape("\n".join(text)), "blocks": blocks}


def joint_describe(delivery: Delivery) -> tuple[str, list[Row], list[Row]]:
    """Subject, fact rows and link rows of an event x event mail (as ``describe``'s).

    Parameters
    ----------
    delivery : Delivery
        Kind, revision and the event-event record.

    Returns
    -------
    (subject, facts, links)
        ``[mma] new GW x GRB coincidence S170817a x GRB170817529 (dt +2.0 s,
        space-time FAR 1 per 8.57e+13 yr)``; :func:`joint_facts` with the revision;
        :func:`joint_links`. Plain text: the HTML renderer escapes it.
    """
    p = delivery.payload if isinstance(delivery.payload, Mapping) else {}
    event = delivery.event if isinstance(delivery.event, Mapping) else {}
    test = " [TEST]" if _test(p, event) else ""
    subject = (f"[mma]{test} {_KIND_WORDS.get(delivery.kind, 'new')} {pair_label(p)} "
               f"coincidence {_names(p)} (dt {_dt(p)[0]}, {_far_summary(p)})")
    facts = joint_facts(p)
    facts.insert(0, ("Revision", f"{int(delivery.revision)} ({delivery.kind})"))
    return subject, facts, joint_links(p, event, delivery.page_url)
