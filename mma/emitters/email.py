"""The email channel: one mail per delivery over SMTP, with a picture of the region.

Each :meth:`EmailEmitter.send` opens one SMTP connection (``starttls``, implicit TLS
``ssl`` or plain ``none``), logs in when a user name is configured, sends one
``multipart/alternative`` message (plain text, and HTML with the region's PNG inline)
and quits. The outbox owns retries: SMTP 4xx replies, refused connections and
timeouts raise a retryable :class:`~mma.errors.DeliveryError`, 5xx replies (refused
sender or recipients, failed authentication) and TLS set-up mistakes a permanent one.

``Message-ID`` is derived from the coincidence id and revision only, so a resend of the
same revision carries the same id and mail clients and archives recognise it;
revisions after the first refer to the first (``In-Reply-To``/``References``) so that
one coincidence threads together.

:func:`build_digest` and :meth:`EmailEmitter.send_digest` send one mail (text and an
HTML table, no pictures) for many deliveries; its ``Message-ID`` hashes the set of
(coincidence id, revision) pairs and failures are classified as for a single mail.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import parseaddr

from mma.emitters import Delivery
from mma.emitters.email_message import (  # noqa: F401 - re-exported
    _PICTURE_CID,
    _POLICY,
    _SECURITY,
    Row,
    Security,
    build_digest,
    build_message,
    describe,
    digest_message_id,
    links,
    message_id,
)
from mma.errors import DeliveryError

__all__ = ("EmailEmitter", "build_digest", "build_message", "describe")

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
        if not self.picture or delivery.region is None or delivery.kind == "retraction":
            return None
        p = delivery.payload
        try:
            from mma.emitters.picture import render_region_png

            return render_region_png(
                delivery.region, ra_deg=float(p["ra"]), dec_deg=float(p["dec"]),
                title=f"{p.get('object_id', '?')} in {p.get('event_id', '?')} "
                      f"(region v{p.get('region_version', '?')})")
        except Exception:  # a picture is a nicety; the mail goes without it
            log.warning("coincidence %s r%d: region picture failed, sending without it",
                        delivery.coincidence_id, delivery.revision, exc_info=True)
            return None

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
                            png=self._picture(delivery))
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
