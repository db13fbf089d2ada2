"""Slack emitter: one Block Kit message per candidate, through an incoming webhook.

:func:`slack_message` builds the message of one candidate (pure, testable alone);
:class:`SlackEmitter` POSTs it with the standard library, at most one POST
per ``min_interval_s`` (Slack allows about one message per second per
webhook), and classifies the answer for the outbox:

* 2xx: delivered;
* 429: retryable, ``retry_after`` = the ``Retry-After`` header (30 s if absent);
* 5xx, 408, timeouts, connection errors: retryable;
* any other 4xx (400 ``invalid_payload``, 403, 404 ``no_service``...): permanent.

:func:`slack_digest` and :meth:`SlackEmitter.send_digest` do the same for a digest:
one message with one line per candidate (:func:`digest_entries` merges several
revisions of one candidate; at most :data:`DIGEST_MAX_SECTIONS` lines, the rest
counted), posted, rate limited and classified like a single one.

The webhook URL is a secret: it is never logged nor put in an exception;
log lines name the host only.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mma.emitters import Delivery, MessageKind
from mma.emitters.joint_message import is_event_event, joint_digest_text
from mma.emitters.slack_message import (
    _escape,
    _is_number,
    _number,
    format_dt,
    message_links,
    object_facts,
    slack_message,
)
from mma.errors import DeliveryError

logger = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_S = 30.0
"""``retry_after`` of a 429 without a usable ``Retry-After`` header [s]."""

def _retry_after(value: str | None) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds); the default otherwise."""
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:
        seconds = math.nan
    return seconds if math.isfinite(seconds) and seconds >= 0 else DEFAULT_RETRY_AFTER_S


@dataclass(frozen=True)
class DigestEntry:
    """One candidate of a digest: its newest delivery and what the digest covers."""

    delivery: Delivery
    kind: MessageKind
    """``new`` when the digest carries its first message, unless it was retracted since."""
    changes: tuple[str, ...]
    messages: int
    """Deliveries of this candidate in the digest."""


def _p_chance_key(payload: Mapping[str, Any]) -> float:
    """P_chance for sorting: missing or NaN values last."""
    value = payload.get("p_chance")
    return float(value) if _is_number(value) else math.inf


def digest_entries(deliveries: Sequence[Delivery]) -> list[DigestEntry]:
    """One entry per candidate (coincidence id), best first, retractions last.

    Parameters
    ----------
    deliveries : sequence of Delivery
        The deliveries of one digest period; several revisions of one candidate are
        merged into one entry (its newest revision, the union of the changes).

    Returns
    -------
    list of DigestEntry
        Sorted by (retraction?, candidate?, P_chance, coincidence id): event x event
        coincidences (no P_chance) before the candidates.
    """
    groups: dict[str, list[Delivery]] = {}
    for delivery in deliveries:
        groups.setdefault(delivery.coincidence_id, []).append(delivery)
    entries = []
    for group in groups.values():
        group.sort(key=lambda d: d.revision)
        latest = group[-1]
        kind: MessageKind = latest.kind
        if kind != "retraction" and any(d.kind == "new" for d in group):
            kind = "new"
        changes = [] if kind == "new" else list(dict.fromkeys(
            str(c) for d in group if d.kind != "new" for c in d.payload.get("changes") or ()))
        entries.append(DigestEntry(latest, kind, tuple(changes), len(group)))
    return sorted(entries, key=lambda e: (e.kind == "retraction",
                                          not is_event_event(e.delivery.payload),
                                          _p_chance_key(e.delivery.payload),
                                          e.delivery.coincidence_id))


def counts_text(entries: Sequence[DigestEntry]) -> str:
    """``N candidates (k new, u updated, r retracted)``, plus the messages when more."""
    kinds = [e.kind for e in entries]
    messages = sum(e.messages for e in entries)
    pairs = sum(is_event_event(e.delivery.payload) for e in entries)
    n = len(kinds) - pairs
    what = [f"{n} candidate{'' if n == 1 else 's'}"] if n else []
    what += [f"{pairs} event coincidence{'' if pairs == 1 else 's'}"] if pairs else []
    text = (f"{' and '.join(what) or '0 candidates'} ({kinds.count('new')} "
            f"new, {kinds.count('update')} updated, {kinds.count('retraction')} retracted)")
    return text + (f" from {messages} messages" if messages != len(kinds) else "")



DIGEST_MAX_SECTIONS = 40
"""Candidates listed one by one in a digest; the rest are counted (Block Kit: ≤ 50 blocks)."""

_KIND_ICONS = {"new": "🆕", "update": "🔄", "retraction": "❌"}


def _digest_line(entry: DigestEntry) -> tuple[str, str]:
    """The mrkdwn and plain-text line of one candidate (or event x event coincidence)."""
    d, p = entry.delivery, entry.delivery.payload
    test = "[TEST] " if d.event.get("test") else ""
    what = f"{entry.kind}, r{int(d.revision)}" + (
        f", {entry.messages} messages" if entry.messages > 1 else "")
    if is_event_event(p):
        line = f"{test}{_KIND_ICONS.get(entry.kind, '')} {joint_digest_text(p)}"
        return f"*{_escape(line)}* ({_escape(what)})", f"{line} ({what})"
    facts = object_facts(p)
    head = (f"{test}{_KIND_ICONS.get(entry.kind, '')} {p.get('object_id', '?')} "
            f"({p.get('survey', '?')}) × {p.get('event_id', '?')}")
    parts = [f"{'?' if facts.n_detections is None else facts.n_detections} det.",
             f"Δt {format_dt(facts.dt_days)}", f"peak {facts.peak}",
             f"CL {_number(p.get('credible_level'), '.3f')}",
             f"P_chance {_number(p.get('p_chance'), '.3g')}", f"rank {p.get('rank') or '-'}"]
    if facts.n_prior > 0:
        parts.append(f"{facts.n_prior} prior")
    if entry.changes:
        parts.append(f"changed: {', '.join(entry.changes)}")
    scores = " · ".join(parts)
    found = dict(message_links(p, d.event, d.page_url))
    link = next(((label, found[label]) for label in ("Event page", "GraceDB", "TNS")
                 if label in found), None)
    mrkdwn = f"*{_escape(head)}* ({_escape(what)}) · {_escape(scores)}"
    text = f"{head} ({what}) · {scores}"
    if link is not None:
        mrkdwn += f" · <{_escape(link[1])}|{link[0]}>"
        text += f" · {link[0]}: {link[1]}"
    return mrkdwn, text


def slack_digest(deliveries: Sequence[Delivery],
                 max_sections: int = DIGEST_MAX_SECTIONS) -> dict[str, Any]:
    """Build the Block Kit message of a digest of several deliveries (pure function).

    Parameters
    ----------
    deliveries : sequence of Delivery
        The deliveries of one digest period.
    max_sections : int
        Candidates listed one by one (Block Kit allows 50 blocks); the others are
        counted in a final context line.

    Returns
    -------
    dict
        ``{"text": <plain-text fallback>, "blocks": [...]}``: a header
        ``mma digest: N candidates (k new, u updated, r retracted)``, then one line
        per candidate (object, event, kind and revision, detections, Δt, peak
        magnitude, CL, P_chance, rank, changes, one link: the event page, else GraceDB,
        else TNS) best first
        with retractions last, and ``… and M more`` when some were left out.
    """
    entries = digest_entries(deliveries)
    test = bool(entries) and all(e.delivery.event.get("test") for e in entries)
    title = f"{'[TEST] ' if test else ''}mma digest: {counts_text(entries)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
    ]
    text_lines = [title]
    shown = entries[:max(0, max_sections)]
    for entry in shown:
        mrkdwn, text = _digest_line(entry)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn[:3000]}})
        text_lines.append(text)
    rest = len(entries) - len(shown)
    if rest > 0:
        more = f"… and {rest} more"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
        text_lines.append(more)
    return {"text": _escape("\n".join(text_lines)), "blocks": blocks}


class SlackEmitter:
    """Post candidates to a Slack incoming webhook.

    Parameters
    ----------
    webhook_url : str
        ``https://hooks.slack.com/services/...`` (a secret: never logged).
    timeout_s : float
        Socket timeout of one POST [s].
    min_interval_s : float
        Minimum time between the starts of two POSTs [s]; :meth:`send` sleeps
        the remainder (0 disables the limit).
    name : str
        Outbox channel name: ``slack``, or ``slack:<destination>`` for a
        ``[[channels.slack.destinations]]`` entry.

    Attributes
    ----------
    name : str
        The channel name.
    """

    name = "slack"

    def __init__(self, webhook_url: str, *, timeout_s: float = 10,
                 min_interval_s: float = 1.0, name: str = "slack") -> None:
        parts = urllib.parse.urlsplit(webhook_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the Slack webhook URL must be an http(s) URL")  # URL not echoed
        self._url = webhook_url
        self.name = name
        self.host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        self.timeout_s = float(timeout_s)
        self.min_interval_s = max(0.0, float(min_interval_s))
        self._lock = threading.Lock()
        self._last_post: float | None = None

    def __repr__(self) -> str:
        return f"SlackEmitter(name={self.name!r}, host={self.host!r})"

    def _wait_turn(self) -> None:
        """Sleep until ``min_interval_s`` has passed since the previous POST started."""
        if self._last_post is not None and self.min_interval_s > 0:
            remaining = self._last_post + self.min_interval_s - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
        self._last_post = time.monotonic()

    def send(self, delivery: Delivery) -> None:
        """POST the Block Kit message of one delivery.

        Parameters
        ----------
        delivery : Delivery
            The candidate to announce.

        Raises
        ------
        DeliveryError
            429 (``retry_after`` from ``Retry-After``), 5xx/408/timeout/connection
            error (retryable) or another 4xx (``permanent=True``).
        """
        cid = delivery.coincidence_id
        what = f"coincidence {cid}"
        self._post(self._encode(slack_message(delivery), what), what)
        logger.info("coincidence %s: posted to %s (%s, %s revision %d)", cid, self.name,
                    self.host, delivery.kind, delivery.revision)

    def send_digest(self, deliveries: Sequence[Delivery]) -> None:
        """POST one digest message for several deliveries (nothing when there are none).

        Parameters
        ----------
        deliveries : sequence of Delivery
            Everything that accumulated over the channel's digest period; they
            succeed or fail together.

        Raises
        ------
        DeliveryError
            As :meth:`send`: 429 (``retry_after`` from ``Retry-After``),
            5xx/408/timeout/connection error (retryable) or another 4xx
            (``permanent=True``).
        """
        if not deliveries:
            return
        what = f"digest of {len(deliveries)} messages"
        self._post(self._encode(slack_digest(deliveries), what), what)
        logger.info("%s posted to Slack (%s): %s", what, self.host,
                    counts_text(digest_entries(deliveries)))

    @staticmethod
    def _encode(message: Mapping[str, Any], what: str) -> bytes:
        """The JSON body of a message; a permanent :class:`DeliveryError` if impossible."""
        try:
            return json.dumps(message, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            logger.error("%s: cannot build the Slack message: %s", what, exc)
            raise DeliveryError(f"{what}: cannot build the Slack message: {exc}",
                                permanent=True) from exc

    def _post(self, body: bytes, what: str) -> None:
        """POST ``body`` (rate limited) and classify the answer.

        Parameters
        ----------
        body : bytes
            The JSON message.
        what : str
            What is posted, for log lines and errors (``coincidence <id>``).

        Raises
        ------
        DeliveryError
            See :meth:`send`.
        """
        request = urllib.request.Request(
            self._url, data=body, method="POST",
            headers={"Content-Type": "application/json; charset=utf-8"})
        with self._lock:
            self._wait_turn()
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    status = response.status
                    response.read(1024)
            except urllib.error.HTTPError as exc:
                status = exc.code
                try:
                    detail = exc.read(200).decode("utf-8", "replace").strip()
                except OSError:
                    detail = ""
                retry_header = exc.headers.get("Retry-After") if exc.headers else None
                exc.close()
                self._raise_for_status(what, status, detail, retry_header)
            except (urllib.error.URLError, OSError) as exc:  # timeout, refused, reset, DNS
                reason = getattr(exc, "reason", exc)
                logger.warning("%s: Slack webhook at %s unreachable: %s",
                               what, self.host, reason)
                raise DeliveryError(f"{what}: Slack webhook at {self.host} "
                                    f"unreachable: {reason}") from None
        if not 200 <= status < 300:  # a 1xx/3xx that urllib did not turn into an error
            self._raise_for_status(what, status, "", None)

    def _raise_for_status(self, what: str, status: int, detail: str,
                          retry_header: str | None) -> None:
        """Turn a non-2xx answer into the right :class:`DeliveryError`."""
        detail = _escape(detail)[:200]
        if status == 429:
            retry_after = _retry_after(retry_header)
            logger.warning("%s: Slack (%s) rate limited; retry after %.0f s",
                           what, self.host, retry_after)
            raise DeliveryError(f"{what}: Slack rate limited (429)",
                                retry_after=retry_after)
        if status >= 500 or status == 408:
            logger.warning("%s: Slack (%s) answered %d %s", what, self.host,
                           status, detail)
            raise DeliveryError(f"{what}: Slack answered {status} {detail}")
        logger.error("%s: Slack (%s) refused the message: %d %s", what, self.host,
                     status, detail)
        raise DeliveryError(f"{what}: Slack refused the message: {status} {detail}",
                            permanent=True)

    def close(self) -> None:
        """Nothing to release (one short-lived connection per POST)."""
