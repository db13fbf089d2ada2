"""Email text for candidates: facts, links, plain and HTML bodies.

A candidate is one object with its detections in the event's window, scored against
the event (``docs/candidate.md``, schema version 2); records migrated from version 1
(one alert: ``alert_id``, ``alert_time``) still render. Pure functions building
:class:`email.message.EmailMessage` objects; sending them, and digests, is
:mod:`mma.emitters.email`'s job.
"""

from __future__ import annotations

import email.policy
import hashlib
import html
import logging
import math
import re
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any, Literal, NamedTuple

from mma.emitters import Delivery
from mma.emitters.event_facts import classes_lines, event_rows
from mma.emitters.joint_message import clean, is_event_event, joint_describe
from mma.emitters.links import message_links
from mma.emitters.slack_message import (
    detections_text,
    format_dt,
    format_magnitude,
    object_facts,
    prior_text,
)

__all__ = ("Picture", "build_message", "describe", "digest_message_id", "links", "message_id")

log = logging.getLogger(__name__)

Security = Literal["starttls", "ssl", "none"]
_SECURITY = ("starttls", "ssl", "none")
_PICTURE_CID = "region"
_CID = re.compile(r"[a-z0-9-]{1,32}")
# Headers unfolded up to RFC 5322's 998 characters: the default 78-column folding of
# email.policy may break a long Subject right after its colon, which some parsers then
# read with a leading space. Bodies are quoted-printable (7-bit safe) regardless.
_POLICY = email.policy.default.clone(max_line_length=998)
_KIND_WORD = {"new": "new candidate", "update": "updated candidate",
              "retraction": "RETRACTED candidate"}

Row = tuple[str, str]
"""A (label, value) line of the mail body."""


def _num(value: Any, fmt: str) -> str:
    """Format a number, or ``n/a`` for None and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a" if value is None else str(value)
    if not math.isfinite(value):
        return str(value)
    return format(value, fmt)


def _dt(dt_days: Any) -> str:
    """A time minus t0 [days], with hours when short: ``+0.833 d (+20.0 h) after t0``."""
    if isinstance(dt_days, bool) or not isinstance(dt_days, int | float):
        return "n/a"
    text = f"{dt_days:+.3f} d"
    if abs(dt_days) < 3:
        text += f" ({dt_days * 24:+.1f} h)"
    return text + (" after t0" if dt_days >= 0 else " before t0")


def links(payload: Mapping[str, Any], event: Mapping[str, Any],
          page: str | None = None) -> list[Row]:
    """Web pages about the event and the object (:func:`mma.emitters.links.message_links`).

    Parameters
    ----------
    payload : mapping
        The candidate record.
    event : mapping
        Event extras (``properties``: GraceDB URL, trigger number...).
    page : str, optional
        mma's page of the event.

    Returns
    -------
    list of (label, url)
        The event page, GraceDB, GCN trigger pages and Circulars, TNS cone search at
        the object, Fink, ALeRCE and Lasair object pages for ZTF object ids.
    """
    return message_links(payload, event, page)


class Picture(NamedTuple):
    """An inline image of the HTML part: its Content-ID, PNG bytes and alternative text."""

    cid: str
    png: bytes
    alt: str


def new_message(subject: str, sender: str,
                recipients: Sequence[str]) -> tuple[EmailMessage, str]:
    """A message with its Subject, From, To and Date set; and the sender's domain
    (for Message-IDs)."""
    msg = EmailMessage(policy=_POLICY)
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(usegmt=True)
    return msg, parseaddr(sender)[1].rpartition("@")[2] or "mma.invalid"

def _event_rows(delivery: Delivery) -> list[Row]:
    """Status, what changed, and the event: id, class, time, region version, then its
    notice type, significance, classification, distance and 90 % area
    (:func:`~mma.emitters.event_facts.event_rows`)."""
    p, event = delivery.payload, delivery.event
    aliases = [a for a in (p.get("aliases") or ()) if a != p.get("event_id")]
    changes = [str(c) for c in p.get("changes") or ()]
    rows: list[Row] = [
        ("Status", f"{p.get('status', 'n/a')} ({delivery.kind}, revision {delivery.revision})"),
        *([("Changed", ", ".join(changes))] if changes and delivery.kind != "new" else []),
        ("Event", str(p.get("event_id", "n/a"))
         + (f" (aka {', '.join(map(str, aliases))})" if aliases else "")),
        ("Class / instrument", f"{p.get('event_class') or p.get('messenger', 'n/a')} / "
                               f"{p.get('instrument', 'n/a')}"),
        ("Event time t0 (UTC)", str(p.get("event_time", "n/a"))),
        ("Region version", str(p.get("region_version", "n/a"))),
    ]
    facts = dict(event_rows(p, event))
    facts.setdefault("Significance", "not stated")
    return rows + [(f"Event {label}" if label == "90 % area" else label, text)
                   for label, text in facts.items()]


def _object_rows(p: Mapping[str, Any]) -> list[Row]:
    """The object: id, position [deg] and scatter [arcsec], detections, magnitudes [AB],
    history, and one row per listed detection (time, band, magnitude, Δt)."""
    facts = object_facts(p)
    scatter = p.get("position_scatter_arcsec")
    rows: list[Row] = [
        ("Object", f"{p.get('object_id', 'n/a')} ({p.get('survey', 'n/a')})"),
        ("RA, Dec (deg, ICRS)", f"{_num(p.get('ra'), '.5f')}, {_num(p.get('dec'), '+.5f')}"
         + (f" (scatter {_num(scatter, '.2f')} arcsec)" if scatter is not None else "")),
        ("Detections", detections_text(facts)),
        ("First after t0 (UTC)", facts.first_after_t0 or "none"),
        ("Δt", _dt(facts.dt_days)),
        ("Last detection (UTC)", facts.last or "n/a"),
        ("Latest magnitude", facts.latest),
        ("Peak magnitude", facts.peak),
    ]
    if facts.rates:
        rows.append(("Light curve", facts.rates))
    if p.get("first_detection"):
        rows.append(("First detection (UTC)", str(p["first_detection"])))
    prior = prior_text(facts)
    if prior:
        rows.append(("Prior detections", prior))
    rows += [("Broker classes" if i == 0 else "", line)
             for i, line in enumerate(classes_lines(p))]
    if facts.alert_id:
        rows.append(("Alert", f"{facts.alert_id} at {p.get('alert_time', 'n/a')}"))
    rows += [_detection_row(d) for d in p.get("detections") or () if isinstance(d, Mapping)]
    return rows


def _detection_row(detection: Mapping[str, Any]) -> Row:
    """``(time, "r 20.41 ± 0.12 mag (+20.0 h)")``: band, AB magnitude, time - t0."""
    mag = format_magnitude(detection.get("magnitude"), detection.get("band") or "?")
    err = detection.get("magnitude_err")
    if isinstance(err, int | float) and not isinstance(err, bool) and mag != "n/a":
        mag = mag.removesuffix(" mag") + f" ± {err:.2f} mag"
    return f"  {detection.get('time', '?')}", f"{mag} ({format_dt(detection.get('dt_days'))})"


def describe(delivery: Delivery) -> tuple[str, list[Row], list[Row]]:
    """Subject, fact rows and link rows of a delivery (shared by text and HTML).

    Parameters
    ----------
    delivery : Delivery
        What to announce; its record is version 2 (or a version 1 one: one alert).

    Returns
    -------
    (subject, facts, links)
        The subject line naming the object and the event, (label, value) rows
        (event, object and detections, scores), and (label, url) rows; an event x
        event coincidence is described by :func:`~mma.emitters.joint_message.joint_describe`.
    """
    if is_event_event(delivery.payload):
        return joint_describe(delivery)
    p = delivery.payload
    test = bool(delivery.event.get("test")) or "test" in (p.get("flags") or ())
    n = object_facts(p).n_detections
    subject = (f"[mma]{' [TEST]' if test else ''} {_KIND_WORD[delivery.kind]} "
               f"{p.get('object_id', '?')} ({p.get('survey', '?')}) for "
               f"{p.get('event_id', '?')} ({'?' if n is None else n} det., "
               f"CL {_num(p.get('credible_level'), '.2g')}, "
               f"P_chance {_num(p.get('p_chance'), '.2g')})")
    facts = _event_rows(delivery) + _object_rows(p) + [
        ("Credible level (CL)", _num(p.get("credible_level"), ".3f")),
        ("Searched area", f"{_num(p.get('searched_area_deg2'), ',.2f')} deg²"),
        ("Probability density", f"{_num(p.get('prob_density_sr'), '.4g')} sr⁻¹"),
        ("ln B", _num(p.get("log_bayes_factor"), ".3f")),
    ]
    components = p.get("components") or {}
    if isinstance(components, Mapping):
        facts += [(f"  {key}", _num(value, ".4g")) for key, value in components.items()]
    rank = p.get("rank")
    flags = list(p.get("flags") or ())
    facts += [
        ("P_chance", _num(p.get("p_chance"), ".3g")),
        ("Rank in event", "none (retracted or vetoed)" if rank is None else str(rank)),
        ("Flags", ", ".join(map(str, flags)) if flags else "none"),
        ("Coincidence id", str(p.get("coincidence_id", delivery.coincidence_id))),
    ]
    return subject, facts, links(p, delivery.event, delivery.page_url)


def _what(subject: str) -> str:
    """What a message is about, as its retraction line says it."""
    return "coincidence" if "coincidence" in subject.lower() else "candidate"


def _text_body(subject: str, facts: Sequence[Row], link_rows: Sequence[Row],
               kind: str) -> str:
    width = max(len(label) for label, _ in facts)
    lines = [subject.removeprefix("[mma] "), ""]
    if kind == "retraction":
        lines += [f"This {_what(subject)} is RETRACTED: disregard earlier messages about it.",
                  ""]
    lines += [f"{label.ljust(width)}  {value}" for label, value in facts]
    if link_rows:
        lines += ["", "Links:"] + [f"  {label}: {url}" for label, url in link_rows]
    lines += ["", "-- ", "mma multi-messenger correlation daemon"]
    return "\n".join(lines) + "\n"


def _html_body(subject: str, facts: Sequence[Row], link_rows: Sequence[Row], kind: str,
               pictures: Sequence[Picture]) -> str:
    esc = html.escape
    rows = "\n".join(
        f'<tr><th style="text-align:left;padding-right:1em;font-weight:normal;'
        f'color:#555">{esc(label.strip())}</th><td>{esc(value)}</td></tr>'
        for label, value in facts)
    parts = [f"<html><body style=\"font-family:sans-serif\"><h3>{esc(subject)}</h3>"]
    if kind == "retraction":
        parts.append(f'<p style="color:#b00"><b>This {_what(subject)} is RETRACTED</b>: '
                     "disregard earlier messages about it.</p>")
    parts.append(f"<table>{rows}</table>")
    if link_rows:
        items = "".join(f'<li><a href="{esc(url)}">{esc(label)}</a></li>'
                        for label, url in link_rows)
        parts.append(f"<p>Links:</p><ul>{items}</ul>")
    parts += [f'<p><img src="cid:{esc(picture.cid)}" alt="{esc(picture.alt)}"></p>'
              for picture in pictures]
    parts.append("</body></html>")
    return "\n".join(parts)


def message_id(coincidence_id: str, revision: int, domain: str) -> str:
    """The stable ``Message-ID`` of one revision of a candidate."""
    return f"<mma.{coincidence_id}.r{revision}@{domain}>"


def digest_message_id(deliveries: Sequence[Delivery], domain: str) -> str:
    """The stable ``Message-ID`` of a digest: a hash of its (coincidence id, revision) set.

    Parameters
    ----------
    deliveries : sequence of Delivery
        The deliveries of the digest (order does not matter).
    domain : str
        Right-hand side of the id.

    Returns
    -------
    str
        ``<mma.digest.<sha256 prefix>@domain>``.
    """
    pairs = sorted({(d.coincidence_id, int(d.revision)) for d in deliveries})
    digest = hashlib.sha256("\n".join(f"{cid}\t{rev}" for cid, rev in pairs)
                            .encode("utf-8")).hexdigest()[:32]
    return f"<mma.digest.{digest}@{domain}>"


def build_message(delivery: Delivery, *, sender: str, recipients: Sequence[str],
                  png: bytes | None = None, pictures: Sequence[Picture] = ()) -> EmailMessage:
    """Compose the mail of a delivery.

    Parameters
    ----------
    delivery : Delivery
        What to announce.
    sender : str
        ``From`` address.
    recipients : sequence of str
        ``To`` addresses.
    png : bytes, optional
        Picture of the region, attached inline to the HTML part (``cid:region``).
    pictures : sequence of Picture
        More inline pictures (light curve, cutouts), after the region's; each
        Content-ID is lower-case letters, digits and ``-``, unique in the mail.

    Returns
    -------
    email.message.EmailMessage
        ``multipart/alternative`` (text, HTML[+related PNGs]).
    """
    subject, facts, link_rows = describe(delivery)
    p = delivery.payload
    msg, domain = new_message(subject, sender, recipients)
    cid, rev = delivery.coincidence_id, delivery.revision
    msg["Message-ID"] = message_id(cid, rev, domain)
    if rev > 1:
        first = message_id(cid, 1, domain)
        msg["In-Reply-To"] = first
        msg["References"] = first
    msg["X-MMA-Coincidence-Id"] = cid
    msg["X-MMA-Revision"] = str(rev)
    msg["X-MMA-Kind"] = delivery.kind
    if is_event_event(p):  # a pair of events: no object, the second event instead
        other = p.get("other")
        msg["X-MMA-Other-Event"] = clean(other.get("event_id") if isinstance(other, Mapping)
                                         else None)
    else:
        msg["X-MMA-Object"] = f"{p.get('survey', '?')} {p.get('object_id', '?')}"
    msg["X-MMA-Event"] = str(p.get("event_id", "?"))
    inline = ([Picture(_PICTURE_CID, png, "sky region with the object marked: 50 % and "
                       "90 % credible contours")] if png is not None else [])
    for picture in pictures:
        if not _CID.fullmatch(picture.cid) or picture.cid in {i.cid for i in inline}:
            raise ValueError(f"picture Content-ID {picture.cid!r} is not usable")
        inline.append(picture)
    msg.set_content(_text_body(subject, facts, link_rows, delivery.kind),
                    cte="quoted-printable")
    msg.add_alternative(_html_body(subject, facts, link_rows, delivery.kind, inline),
                        subtype="html", cte="quoted-printable")
    if inline:
        html_part = msg.get_payload()[1]  # type: ignore[index]
        assert isinstance(html_part, EmailMessage)
        for picture in inline:
            html_part.add_related(picture.png, maintype="image", subtype="png",
                                  cid=f"<{picture.cid}>", disposition="inline",
                                  filename=f"mma-{cid}-r{rev}-{picture.cid}.png")
    return msg
