"""A recording SMTP server (aiosmtpd) on loopback for tests.

Every message accepted is kept as a :class:`ReceivedMail` (envelope sender and recipients,
the parsed :class:`email.message.EmailMessage`, the raw bytes, and the AUTH login if the client
logged in).  AUTH PLAIN/LOGIN is offered without TLS and accepts only ``username`` /
``password`` of the server; clients that do not log in may still send.
"""

from __future__ import annotations

import email
import email.policy
import logging
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.services.procs import LOOPBACK, free_port

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceivedMail:
    """One message accepted by the server."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    login: str | None
    """The AUTH user name if the client logged in, else ``None``."""

    @property
    def subject(self) -> str:
        """The decoded ``Subject`` header ("" if absent)."""
        return str(self.message.get("Subject", ""))

    def text(self) -> str:
        """The plain-text body (the ``text/plain`` part of a multipart message)."""
        part = self.message.get_body(preferencelist=("plain",))
        if part is None:
            return ""
        content: str = part.get_content()
        return content


class _RecordingHandler:
    """aiosmtpd handler that appends every accepted message to the server's list."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if not raw and envelope.content is not None:
            raw = envelope.content if isinstance(envelope.content, bytes) else \
                envelope.content.encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login: str | None = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode(errors="replace")
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            message=message,
            raw=raw,
            login=login,
        )
        self.server._record(mail)
        return "250 Message accepted for delivery"


class SmtpServer:
    """An aiosmtpd :class:`Controller` on 127.0.0.1 and a free port, recording messages.

    Attributes: ``host``, ``port``, ``username``, ``password``; :attr:`messages` is a copy
    of the list of :class:`ReceivedMail` received since the last :meth:`clear`.
    """

    def __init__(self, username: str = "mma", password: str = "mma-test-password") -> None:
        self.host = LOOPBACK
        self.port = free_port()
        self.username = username
        self.password = password
        self._messages: list[ReceivedMail] = []
        self._cond = threading.Condition()
        self.controller = Controller(
            _RecordingHandler(self),
            hostname=self.host,
            port=self.port,
            authenticator=self._authenticate,
            auth_require_tls=False,
            auth_required=False,
            ready_timeout=10.0,
        )

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode(errors="replace") == self.username
              and auth_data.password.decode(errors="replace") == self.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def _record(self, mail: ReceivedMail) -> None:
        with self._cond:
            self._messages.append(mail)
            self._cond.notify_all()
        logger.debug("SMTP received %r from %s to %s", mail.subject, mail.mail_from,
                     mail.rcpt_tos)

    def start(self) -> None:
        """Start the server thread (returns when it accepts connections)."""
        self.controller.start()
        logger.info("SMTP server on %s:%d", self.host, self.port)

    def stop(self) -> None:
        """Stop the server thread."""
        self.controller.stop()

    @property
    def messages(self) -> list[ReceivedMail]:
        """A snapshot of the messages received since the last :meth:`clear`."""
        with self._cond:
            return list(self._messages)

    def clear(self) -> None:
        """Forget all received messages."""
        with self._cond:
            self._messages.clear()

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMail]:
        """Wait until at least ``count`` messages were received; return them.

        Raises ``TimeoutError`` with what was received so far.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"expected {count} mails within {timeout} s, got {len(self._messages)}: "
                        f"{[m.subject for m in self._messages]}")
                self._cond.wait(remaining)
            return list(self._messages)
