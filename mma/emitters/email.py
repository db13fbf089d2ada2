"""The email channel: one mail per delivery over SMTP, with a picture of the region.

A mail is about one candidate: one object with its detections in the event's window
(:func:`describe`); the picture marks the object's position in the region.

Each :meth:`EmailEmitter.send` opens one SMTP connection (``starttls``, implicit TLS
``ssl`` or plain ``none``), logs in when a user name is configured, sends one
``multipart/alternative`` message (plain text, and HTML with PNGs inline: the region,
the object's light curve and its newest cutout triplet, when the delivery carries
them) and quits. The outbox owns retries: SMTP 4xx replies, refused connections and
timeouts raise a retryable :class:`~mma.errors.DeliveryError`, 5xx replies (refused
sender or recipients, failed authentication) and TLS set-up mistakes a permanent one.

``Message-ID`` is derived from the coincidence id and revision only, so a resend of the
same revision carries the same id and mail clients and archives recognise it;
revisions after the first refer to the first (``In-Reply-To``/``References``) so that
one candidate threads together.

:func:`build_digest` and :meth:`EmailEmitter.send_digest` send one mail (one text line
and one HTML table row per candidate, no pictures) for many deliveries; its
``Message-ID`` hashes the set of (coincidence id, revision) pairs and failures are
classified as for a single mail.
"""

from __future__ import annotations

import contextlib
import html
import logging
import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import parseaddr

from mma.emitters import Delivery
from mma.emitters.email_message import (  # noqa: F401 - re-exported
    _KIND_WORD,
    _PICTURE_CID,
    _POLICY,
    _SECURITY,
    Picture,
    Row,
    Security,
    _num,
    build_message,
    describe,
    digest_message_id,
    links,
    message_id,
    new_message,
)
from mma.emitters.email_pictures import context_pictures
from mma.emitters.joint_message import is_event_event, joint_digest_parts, pair_label
from mma.emitters.slack import DigestEntry, counts_text, digest_entries
from mma.emitters.slack_message import format_dt, object_facts
from mma.errors import DeliveryError

__all__ = ("EmailEmitter", "build_digest", "build_message", "describe", "digest_message_id")

log = logging.getLogger(__name__)


def _permanent_code(code: int) -> bool:
    return 500 <= code < 600


class EmailEmitter:
    """Send each delivery as one mail over SMTP.

    Parameters
    ----------
    host, port
        SMTP server.
    security : {'starttls', 'ssl', 'none'}
        ``starttls``: plain connection upgraded with STARTTLS (port 587);
        ``ssl``: implicit TLS (port 465); ``none``: no encryption (local relays).
        TLS verifies the server with :func:`ssl.create_default_context`.
    username, password : str or None
        Log in when a user name is given.
    sender : str
        ``From`` address (``"mma <mma@example.org>"`` or a bare address); its
        address is the envelope sender and its domain that of ``Message-ID``.
    recipients : sequence of str
        Addresses, at least one.
    timeout_s : float
        Socket timeout [s] of each SMTP operation.
    picture : bool
        Attach a PNG of the region when the delivery carries one.
    """

    name = "email"

    def __init__(self, *, host: str, port: int, security: Security, username: str | None,
                 password: str | None, sender: str, recipients: Sequence[str],
                 timeout_s: float = 30, picture: bool = True) -> None:
        if security not in _SECURITY:
            raise ValueError(f"email security must be one of {_SECURITY}, not {security!r}")
        if not recipients:
            raise ValueError("email needs at least one recipient")
        envelope = parseaddr(sender)[1]
        if "@" not in envelope:
            raise ValueError(f"email sender {sender!r} is not an address")
        self.host = host
        self.port = int(port)
        self.security: Security = security
        self.username = username
        self._password = password
        self.sender = sender
        self.envelope_sender = envelope
        self.recipients = tuple(recipients)
        self.timeout_s = float(timeout_s)
        self.picture = picture
        if username and security == "none":
            log.warning("email: credentials for %s will be sent unencrypted to %s:%d",
                        username, host, self.port)

    def __repr__(self) -> str:
        return (f"EmailEmitter(host={self.host!r}, port={self.port}, "
                f"security={self.security!r}, username={self.username!r}, "
                f"recipients={list(self.recipients)!r})")

    def _picture(self, delivery: Delivery) -> bytes | None:
        if (not self.picture or delivery.region is None or delivery.kind == "retraction"
                or is_event_event(delivery.payload)):  # no object to mark
            return None
        p = delivery.payload
        try:
            from mma.emitters.picture import render_region_png

            return render_region_png(
                delivery.region, ra_deg=float(p["ra"]), dec_deg=float(p["dec"]),
                title=f"{p.get('object_id', '?')} ({p.get('survey', '?')}) in "
                      f"{p.get('event_id', '?')} (region v{p.get('region_version', '?')})",
                label=str(p.get("object_id") or "") or None)
        except Exception:  # a picture is a nicety; the mail goes without it
            log.warning("coincidence %s r%d: region picture failed, sending without it",
                        delivery.coincidence_id, delivery.revision, exc_info=True)
            return None

    def _context_pictures(self, delivery: Delivery) -> list[Picture]:
        if (not self.picture or delivery.kind == "retraction"
                or is_event_event(delivery.payload)):  # no light curve, no cutouts
            return []
        return context_pictures(delivery)

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s,
                                    context=ssl.create_default_context())
        client = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        if self.security == "starttls":
            try:
                client.ehlo()
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            except BaseException:
                client.close()
                raise
        return client

    def _transmit(self, msg: EmailMessage) -> dict[str, tuple[int, bytes]]:
        client = self._connect()
        try:
            if self.username:
                client.login(self.username, self._password or "")
            refused = client.send_message(msg, from_addr=self.envelope_sender,
                                          to_addrs=list(self.recipients))
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()  # delivered; a failed QUIT does not undo that
            return refused
        finally:
            client.close()

    def send(self, delivery: Delivery) -> None:
        """Send one mail for the delivery.

        Parameters
        ----------
        delivery : Delivery
            What to announce.

        Raises
        ------
        mma.errors.DeliveryError
            Not delivered: retryable for 4xx replies, refused connections, timeouts and
            dropped connections; ``permanent=True`` for 5xx replies (refused sender or
            all recipients refused, authentication failed), a server without STARTTLS or
            AUTH, and certificate verification failures.
        """
        cid, rev = delivery.coincidence_id, delivery.revision
        msg = build_message(delivery, sender=self.sender, recipients=self.recipients,
                            png=self._picture(delivery),
                            pictures=self._context_pictures(delivery))
        what = f"coincidence {cid} r{rev}"
        refused = self._deliver(msg, what)
        log.info("%s: email %s sent to %d recipient(s) via %s:%d", what, delivery.kind,
                 len(self.recipients) - len(refused), self.host, self.port)

    def send_digest(self, deliveries: Sequence[Delivery]) -> None:
        """Send one digest mail for several deliveries (nothing when there are none).

        Parameters
        ----------
        deliveries : sequence of Delivery
            Everything that accumulated over the channel's digest period; they
            succeed or fail together.

        Raises
        ------
        mma.errors.DeliveryError
            Not delivered, classified as in :meth:`send`.
        """
        if not deliveries:
            return
        msg = build_digest(deliveries, sender=self.sender, recipients=self.recipients)
        what = f"digest {msg['Message-ID']} of {len(deliveries)} messages"
        refused = self._deliver(msg, what)
        log.info("%s: email sent to %d recipient(s) via %s:%d", what,
                 len(self.recipients) - len(refused), self.host, self.port)

    def _deliver(self, msg: EmailMessage, what: str) -> dict[str, tuple[int, bytes]]:
        """Transmit ``msg`` and map failures to :class:`~mma.errors.DeliveryError`.

        Parameters
        ----------
        msg : email.message.EmailMessage
            The mail.
        what : str
            What is sent, for log lines (``coincidence <id> r<revision>``).

        Returns
        -------
        dict
            Recipients refused while others accepted (logged, not retried).

        Raises
        ------
        mma.errors.DeliveryError
            See :meth:`send`.
        """
        where = f"{self.host}:{self.port}"
        try:
            refused = self._transmit(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            permanent = bool(codes) and all(_permanent_code(c) for c in codes)
            detail = "; ".join(f"{rcpt}: {code} {text.decode(errors='replace')}"
                               for rcpt, (code, text) in exc.recipients.items())
            log.warning("%s: email recipients refused by %s: %s", what, where, detail)
            raise DeliveryError(f"recipients refused: {detail}", permanent=permanent) from exc
        except smtplib.SMTPResponseException as exc:
            # SMTPSenderRefused, SMTPDataError, SMTPAuthenticationError, SMTPConnectError...
            text = exc.smtp_error.decode(errors="replace") if isinstance(
                exc.smtp_error, bytes) else str(exc.smtp_error)
            permanent = _permanent_code(exc.smtp_code)
            log.warning("%s: email %s from %s: %d %s (%s)", what,
                        type(exc).__name__, where, exc.smtp_code, text,
                        "permanent" if permanent else "will retry")
            raise DeliveryError(f"SMTP {type(exc).__name__} {exc.smtp_code} {text}",
                                permanent=permanent) from exc
        except smtplib.SMTPNotSupportedError as exc:
            log.error("%s: email server %s does not support %s", what, where, exc)
            raise DeliveryError(f"SMTP server {where}: {exc}", permanent=True) from exc
        except ssl.SSLCertVerificationError as exc:
            log.error("%s: email TLS certificate of %s rejected: %s", what, where, exc)
            raise DeliveryError(f"TLS certificate of {where} rejected: {exc}",
                                permanent=True) from exc
        except (smtplib.SMTPException, OSError) as exc:
            # refused or dropped connections, timeouts, DNS failures, TLS hiccups
            kind = "timeout" if isinstance(exc, socket.timeout | TimeoutError) else \
                type(exc).__name__
            log.warning("%s: email to %s failed (%s: %s), will retry", what, where, kind, exc)
            raise DeliveryError(f"SMTP {where}: {kind}: {exc}") from exc
        if refused:
            # Some recipients took it: a retry would duplicate their copy, so report only.
            log.warning("%s: email delivered but refused for %s", what,
                        ", ".join(sorted(refused)))
        return refused

    def close(self) -> None:
        """Nothing to release: each send uses its own connection."""


_DIGEST_COLUMNS = ("Kind", "Object", "Event", "Revision", "Detections", "Δt", "Peak",
                   "Prior", "CL", "P_chance", "Rank", "Changed")
"""The columns of a candidate in a digest (HTML table; the text line says the same)."""

def _digest_cells(entry: DigestEntry) -> dict[str, str]:
    """The columns of one candidate in a digest (:data:`_DIGEST_COLUMNS`); an event x
    event coincidence fills Event, Δt and Changed (:func:`_joint_cells`)."""
    d, p = entry.delivery, entry.delivery.payload
    messages = f", {entry.messages} messages" if entry.messages > 1 else ""
    if is_event_event(p):
        return _joint_cells(entry, f"r{d.revision}{messages}")
    facts = object_facts(p)
    return {"Kind": _KIND_WORD[entry.kind],
            "Object": f"{p.get('object_id', 'n/a')} ({p.get('survey', 'n/a')})",
            "Event": str(p.get("event_id", "n/a")), "Revision": f"r{d.revision}{messages}",
            "Detections": "?" if facts.n_detections is None else str(facts.n_detections),
            "Δt": format_dt(facts.dt_days), "Peak": facts.peak, "Prior": str(facts.n_prior),
            "CL": _num(p.get("credible_level"), ".3f"),
            "P_chance": _num(p.get("p_chance"), ".3g"),
            "Rank": "-" if p.get("rank") is None else str(p.get("rank")),
            "Changed": ", ".join(entry.changes)}


def _joint_cells(entry: DigestEntry, revision: str) -> dict[str, str]:
    """The digest columns of an event x event coincidence: the pair and its space-time FAR
    as Event, its Δt [s]; no object, detections, CL, P_chance or rank."""
    p = entry.delivery.payload
    pair, far, dt = joint_digest_parts(p)
    cells = dict.fromkeys(_DIGEST_COLUMNS, "-")
    cells.update({"Kind": f"{_KIND_WORD[entry.kind].split()[0]} {pair_label(p)} coincidence",
                  "Event": f"{pair}: {far}", "Revision": revision, "Δt": dt,
                  "Changed": ", ".join(entry.changes)})
    return cells


def _digest_line(index: int, entry: DigestEntry) -> str:
    """``1. new candidate ZTF26aaaaaxl (ZTF) for S261120ab (r1): 3 det., ... [id]``;
    ``2. new GW x GRB coincidence S170817a x GRB170817529: space-time FAR ..., dt +2.0 s
    (r1) [id]`` for an event x event coincidence."""
    c = _digest_cells(entry)
    if is_event_event(entry.delivery.payload):
        changed = f", changed: {c['Changed']}" if c["Changed"] else ""
        return (f"{index}. {c['Kind']} {c['Event']}, dt {c['Δt']} ({c['Revision']}){changed} "
                f"[{entry.delivery.coincidence_id}]")
    prior = f", {c['Prior']} prior" if c["Prior"] != "0" else ""
    changed = f", changed: {c['Changed']}" if c["Changed"] else ""
    return (f"{index}. {c['Kind']} {c['Object']} for {c['Event']} ({c['Revision']}): "
            f"{c['Detections']} det., Δt {c['Δt']}, peak {c['Peak']}{prior}, CL {c['CL']}, "
            f"P_chance {c['P_chance']}, rank {c['Rank']}{changed} "
            f"[{entry.delivery.coincidence_id}]")


def _digest_html(subject: str, entries: Sequence[DigestEntry]) -> str:
    """One table row per candidate, with its links."""
    esc = html.escape
    head = "<tr>" + "".join(f'<th style="text-align:left;padding-right:1em">{name}</th>'
                            for name in ("#", *_DIGEST_COLUMNS, "Links")) + "</tr>"
    rows = []
    for index, entry in enumerate(entries, 1):
        cells = [str(index), *_digest_cells(entry).values()]
        link_html = " ".join(f'<a href="{esc(url)}">{esc(label)}</a>' for label, url
                             in links(entry.delivery.payload, entry.delivery.event,
                                      entry.delivery.page_url))
        style = ' style="color:#b00"' if entry.kind == "retraction" else ""
        rows.append(f"<tr{style}>" + "".join(
            f'<td style="padding-right:1em">{esc(c)}</td>' for c in cells)
            + f"<td>{link_html}</td></tr>")
    return "\n".join([f"<html><body style=\"font-family:sans-serif\"><h3>{esc(subject)}</h3>",
                      f"<table>{head}", *rows, "</table>", "</body></html>"])


def build_digest(deliveries: Sequence[Delivery], *, sender: str,
                 recipients: Sequence[str]) -> EmailMessage:
    """Compose one mail summarising several deliveries (no pictures).

    Parameters
    ----------
    deliveries : sequence of Delivery
        The deliveries of one digest period, at least one; several revisions of one
        candidate make one line (:func:`~mma.emitters.slack.digest_entries`).
    sender : str
        ``From`` address.
    recipients : sequence of str
        ``To`` addresses.

    Returns
    -------
    email.message.EmailMessage
        ``multipart/alternative``: a text part with one line per candidate (kind and
        revision, object, event, detections, Δt, peak magnitude, prior detections, CL,
        P_chance, rank, changes, coincidence id) and each event's page (mma's, else
        GraceDB), and an HTML table with one row per candidate and its links; best first (P_chance
        ascending), retractions last. ``Message-ID`` depends only on the set of (coincidence id,
        revision) pairs; ``X-MMA-Digest-Count`` gives their number.

    Raises
    ------
    ValueError
        No deliveries.
    """
    if not deliveries:
        raise ValueError("a digest needs at least one delivery")
    entries = digest_entries(deliveries)
    test = all(e.delivery.event.get("test") or "test" in (e.delivery.payload.get("flags")
                                                          or ()) for e in entries)
    subject = f"[mma]{' [TEST]' if test else ''} digest: {counts_text(entries)}"
    lines = [subject.removeprefix("[mma] "), ""]
    events: dict[str, str] = {}
    for index, entry in enumerate(entries, 1):
        lines.append(_digest_line(index, entry))
        found = dict(links(entry.delivery.payload, entry.delivery.event,
                           entry.delivery.page_url))
        page = found.get("Event page") or found.get("GraceDB")
        if page:
            events.setdefault(str(entry.delivery.payload.get("event_id")), page)
    if events:
        lines += ["", "Events:"] + [f"  {name}: {url}" for name, url in events.items()]
    lines += ["", "-- ", "mma multi-messenger correlation daemon"]

    msg, domain = new_message(subject, sender, recipients)
    msg["Message-ID"] = digest_message_id(deliveries, domain)
    msg["X-MMA-Digest-Count"] = str(len(deliveries))
    msg.set_content("\n".join(lines) + "\n", cte="quoted-printable")
    msg.add_alternative(_digest_html(subject, entries), subtype="html", cte="quoted-printable")
    return msg
