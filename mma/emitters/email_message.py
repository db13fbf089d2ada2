"""Email text for coincidences: facts, links, plain and HTML bodies, digests.

Pure functions building :class:`email.message.EmailMessage` objects; sending
them is :mod:`mma.emitters.email`'s job.
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
from typing import Any, Literal
from urllib.parse import quote, urlencode

from mma.emitters import Delivery

__all__ = ("build_digest", "build_message", "describe", "digest_message_id", "links",
           "message_id")

log = logging.getLogger(__name__)

Security = Literal["starttls", "ssl", "none"]
_SECURITY = ("starttls", "ssl", "none")
_ZTF_ID = re.compile(r"ZTF\d{2}[a-z]{7}")
_TNS_RADIUS_ARCSEC = 10
_PICTURE_CID = "region"
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


def _far(far_hz: Any) -> str:
    """A false-alarm rate [Hz] with its inverse in years."""
    if isinstance(far_hz, bool) or not isinstance(far_hz, int | float) or far_hz < 0:
        return str(far_hz)
    if far_hz == 0:
        return "0 Hz"
    per_year = 1.0 / (far_hz * 365.25 * 86400.0)
    return f"{far_hz:.3g} Hz (1 per {per_year:.3g} yr)"


def _dt(dt_days: Any) -> str:
    """A delay in days, with hours when short."""
    if isinstance(dt_days, bool) or not isinstance(dt_days, int | float):
        return "n/a"
    text = f"{dt_days:+.3f} d"
    if abs(dt_days) < 3:
        text += f" ({dt_days * 24:+.1f} h)"
    return text + " after the event"


def links(payload: Mapping[str, Any], event: Mapping[str, Any]) -> list[Row]:
    """Web pages about the event and the candidate.

    Parameters
    ----------
    payload : mapping
        The coincidence record.
    event : mapping
        Event extras; ``properties.urls.gracedb`` gives the GraceDB page.

    Returns
    -------
    list of (label, url)
        GraceDB (when known), TNS cone search at the candidate, Fink and ALeRCE object
        pages for ZTF object ids.
    """
    rows: list[Row] = []
    props = event.get("properties") or {}
    urls = props.get("urls") if isinstance(props, Mapping) else None
    if isinstance(urls, Mapping) and isinstance(urls.get("gracedb"), str):
        rows.append(("GraceDB", urls["gracedb"]))
    ra, dec = payload.get("ra"), payload.get("dec")
    if isinstance(ra, int | float) and isinstance(dec, int | float):
        query = urlencode({"ra": f"{ra:.6f}", "decl": f"{dec:.6f}",
                           "radius": _TNS_RADIUS_ARCSEC, "coords_unit": "arcsec"})
        rows.append(("TNS (cone search)", f"https://www.wis-tns.org/search?{query}"))
    object_id = str(payload.get("object_id") or "")
    if _ZTF_ID.fullmatch(object_id):
        rows.append(("Fink", f"https://fink-portal.org/{quote(object_id)}"))
        rows.append(("ALeRCE", f"https://alerce.online/object/{quote(object_id)}"))
    return rows


def describe(delivery: Delivery) -> tuple[str, list[Row], list[Row]]:
    """Subject, fact rows and link rows of a delivery (shared by text and HTML).

    Parameters
    ----------
    delivery : Delivery
        What to announce.

    Returns
    -------
    (subject, facts, links)
        The subject line, (label, value) rows, and (label, url) rows.
    """
    p = delivery.payload
    event = delivery.event
    test = bool(event.get("test")) or "test" in (p.get("flags") or ())
    subject = (f"[mma]{' [TEST]' if test else ''} {_KIND_WORD[delivery.kind]} "
               f"{p.get('object_id', '?')} for {p.get('event_id', '?')} "
               f"(CL {_num(p.get('credible_level'), '.2g')}, "
               f"P_chance {_num(p.get('p_chance'), '.2g')})")

    aliases = [a for a in (p.get("aliases") or ()) if a != p.get("event_id")]
    facts: list[Row] = [
        ("Status", f"{p.get('status', 'n/a')} ({delivery.kind}, revision {delivery.revision})"),
        ("Event", str(p.get("event_id", "n/a"))
         + (f" (aka {', '.join(map(str, aliases))})" if aliases else "")),
        ("Messenger / instrument", f"{p.get('messenger', 'n/a')} / {p.get('instrument', 'n/a')}"),
        ("Event time (UTC)", str(p.get("event_time", "n/a"))),
        ("Region version", str(p.get("region_version", "n/a"))),
    ]
    props = event.get("properties") or {}
    if isinstance(props, Mapping):
        if "far" in props:
            facts.append(("FAR", _far(props["far"])))
        classification = props.get("classification")
        if isinstance(classification, Mapping) and classification:
            ranked = sorted(classification.items(), key=lambda kv: -float(kv[1] or 0))
            facts.append(("Classification",
                          ", ".join(f"{k} {_num(v, '.2f')}" for k, v in ranked)))
        source = props.get("properties")
        if isinstance(source, Mapping) and source:
            facts.append(("Source properties",
                          ", ".join(f"{k} {_num(v, '.2f')}" for k, v in source.items())))
    if "area90_deg2" in event:
        facts.append(("Event 90 % area", f"{_num(event['area90_deg2'], ',.1f')} deg²"))
    facts += [
        ("Candidate", f"{p.get('object_id', 'n/a')} (alert {p.get('alert_id', 'n/a')})"),
        ("Survey", str(p.get("survey", "n/a"))),
        ("RA, Dec (deg, ICRS)", f"{_num(p.get('ra'), '.5f')}, {_num(p.get('dec'), '+.5f')}"),
        ("Alert time (UTC)", str(p.get("alert_time", "n/a"))),
        ("Δt", _dt(p.get("dt_days"))),
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
    return subject, facts, links(p, event)


def _text_body(subject: str, facts: Sequence[Row], link_rows: Sequence[Row],
               kind: str) -> str:
    width = max(len(label) for label, _ in facts)
    lines = [subject.removeprefix("[mma] "), ""]
    if kind == "retraction":
        lines += ["This coincidence is RETRACTED: disregard earlier messages about it.", ""]
    lines += [f"{label.ljust(width)}  {value}" for label, value in facts]
    if link_rows:
        lines += ["", "Links:"] + [f"  {label}: {url}" for label, url in link_rows]
    lines += ["", "-- ", "mma multi-messenger correlation daemon"]
    return "\n".join(lines) + "\n"


def _html_body(subject: str, facts: Sequence[Row], link_rows: Sequence[Row], kind: str,
               picture: bool) -> str:
    esc = html.escape
    rows = "\n".join(
        f'<tr><th style="text-align:left;padding-right:1em;font-weight:normal;'
        f'color:#555">{esc(label.strip())}</th><td>{esc(value)}</td></tr>'
        for label, value in facts)
    parts = [f"<html><body style=\"font-family:sans-serif\"><h3>{esc(subject)}</h3>"]
    if kind == "retraction":
        parts.append('<p style="color:#b00"><b>This coincidence is RETRACTED</b>: '
                     "disregard earlier messages about it.</p>")
    parts.append(f"<table>{rows}</table>")
    if link_rows:
        items = "".join(f'<li><a href="{esc(url)}">{esc(label)}</a></li>'
                        for label, url in link_rows)
        parts.append(f"<p>Links:</p><ul>{items}</ul>")
    if picture:
        parts.append(f'<p><img src="cid:{_PICTURE_CID}" alt="sky region with the candidate '
                     'marked: 50 % and 90 % credible contours"></p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def message_id(coincidence_id: str, revision: int, domain: str) -> str:
    """The stable ``Message-ID`` of one revision of a coincidence."""
    return f"<mma.{coincidence_id}.r{revision}@{domain}>"


def build_message(delivery: Delivery, *, sender: str, recipients: Sequence[str],
                  png: bytes | None = None) -> EmailMessage:
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

    Returns
    -------
    email.message.EmailMessage
        ``multipart/alternative`` (text, HTML[+related PNG]).
    """
    subject, facts, link_rows = describe(delivery)
    msg = EmailMessage(policy=_POLICY)
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "mma.invalid"
    cid, rev = delivery.coincidence_id, delivery.revision
    msg["Message-ID"] = message_id(cid, rev, domain)
    if rev > 1:
        first = message_id(cid, 1, domain)
        msg["In-Reply-To"] = first
        msg["References"] = first
    msg["X-MMA-Coincidence-Id"] = cid
    msg["X-MMA-Revision"] = str(rev)
    msg["X-MMA-Kind"] = delivery.kind
    msg.set_content(_text_body(subject, facts, link_rows, delivery.kind),
                    cte="quoted-printable")
    msg.add_alternative(_html_body(subject, facts, link_rows, delivery.kind, png is not None),
                        subtype="html", cte="quoted-printable")
    if png is not None:
        html_part = msg.get_payload()[1]  # type: ignore[index]
        assert isinstance(html_part, EmailMessage)
        html_part.add_related(png, maintype="image", subtype="png",
                              cid=f"<{_PICTURE_CID}>", disposition="inline",
                              filename=f"mma-{cid}-r{rev}.png")
    return msg


_DIGEST_FACTS = ("Status", "Event", "Candidate", "RA, Dec (deg, ICRS)", "Δt",
                 "Credible level (CL)", "Searched area", "ln B", "P_chance", "Rank in event",
                 "Flags", "Coincidence id")
"""The rows of :func:`describe` that a digest keeps per delivery."""


def _digest_key(delivery: Delivery) -> tuple[bool, float, str, int]:
    """Sort key of a digest: retractions last, then P_chance ascending (missing last)."""
    value = delivery.payload.get("p_chance")
    p_chance = (float(value) if isinstance(value, int | float) and not isinstance(value, bool)
                and not math.isnan(value) else math.inf)
    return (delivery.kind == "retraction", p_chance, delivery.coincidence_id,
            delivery.revision)


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


def _digest_counts(deliveries: Sequence[Delivery]) -> str:
    kinds = [d.kind for d in deliveries]
    return (f"{len(kinds)} coincidence messages ({kinds.count('new')} new, "
            f"{kinds.count('update')} updated, {kinds.count('retraction')} retracted)")


def build_digest(deliveries: Sequence[Delivery], *, sender: str,
                 recipients: Sequence[str]) -> EmailMessage:
    """Compose one mail summarising several deliveries (no pictures).

    Parameters
    ----------
    deliveries : sequence of Delivery
        The deliveries of one digest period, at least one.
    sender : str
        ``From`` address.
    recipients : sequence of str
        ``To`` addresses.

    Returns
    -------
    email.message.EmailMessage
        ``multipart/alternative``: a text part with one block per delivery and
        an HTML part with one table row per delivery, best first (P_chance
        ascending) and retractions last. ``Message-ID`` depends only on the set of
        (coincidence id, revision) pairs; ``X-MMA-Digest-Count`` gives their number.

    Raises
    ------
    ValueError
        No deliveries.
    """
    if not deliveries:
        raise ValueError("a digest needs at least one delivery")
    ordered = sorted(deliveries, key=_digest_key)
    described = [(d, *describe(d)) for d in ordered]
    test = all("[TEST]" in subject for _, subject, _, _ in described)
    subject = f"[mma]{' [TEST]' if test else ''} digest: {_digest_counts(ordered)}"

    lines = [subject.removeprefix("[mma] "), ""]
    for index, (delivery, line, facts, link_rows) in enumerate(described, 1):
        kept = [(label, value) for label, value in facts if label in _DIGEST_FACTS]
        width = max(len(label) for label, _ in kept)
        lines.append(f"{index}. {line.removeprefix('[mma] ')}")
        if delivery.kind == "retraction":
            lines.append("   RETRACTED: disregard earlier messages about it.")
        lines += [f"   {label.ljust(width)}  {value}" for label, value in kept]
        lines += [f"   {label}: {url}" for label, url in link_rows]
        lines.append("")
    lines += ["-- ", "mma multi-messenger correlation daemon"]

    esc = html.escape
    head = ("<tr>" + "".join(
        f'<th style="text-align:left;padding-right:1em">{name}</th>'
        for name in ("#", "Kind", "Event", "Candidate", "CL", "P_chance", "Δt", "Rank",
                     "Links")) + "</tr>")
    rows = []
    for index, (delivery, _, _, link_rows) in enumerate(described, 1):
        pl = delivery.payload
        style = ' style="color:#b00"' if delivery.kind == "retraction" else ""
        cells = [str(index), f"{_KIND_WORD[delivery.kind]} (r{delivery.revision})",
                 str(pl.get("event_id", "n/a")), str(pl.get("object_id", "n/a")),
                 _num(pl.get("credible_level"), ".3f"), _num(pl.get("p_chance"), ".3g"),
                 _dt(pl.get("dt_days")).removesuffix(" after the event"),
                 "none" if pl.get("rank") is None else str(pl.get("rank"))]
        link_html = " ".join(f'<a href="{esc(url)}">{esc(label)}</a>'
                             for label, url in link_rows)
        rows.append(f"<tr{style}>" + "".join(
            f'<td style="padding-right:1em">{esc(c)}</td>' for c in cells)
            + f"<td>{link_html}</td></tr>")
    body_html = "\n".join([
        f"<html><body style=\"font-family:sans-serif\"><h3>{esc(subject)}</h3>",
        f"<table>{head}", *rows, "</table>", "</body></html>"])

    msg = EmailMessage(policy=_POLICY)
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "mma.invalid"
    msg["Message-ID"] = digest_message_id(ordered, domain)
    msg["X-MMA-Digest-Count"] = str(len(ordered))
    msg.set_content("\n".join(lines) + "\n", cte="quoted-printable")
    msg.add_alternative(body_html, subtype="html", cte="quoted-printable")
    return msg


