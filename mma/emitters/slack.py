"""Slack emitter: one Block Kit message per coincidence, through an incoming webhook.

:func:`slack_message` builds the message (pure, testable alone);
:class:`SlackEmitter` POSTs it with the standard library, at most one POST
per ``min_interval_s`` (Slack allows about one message per second per
webhook), and classifies the answer for the outbox:

* 2xx: delivered;
* 429: retryable, ``retry_after`` = the ``Retry-After`` header (30 s if absent);
* 5xx, 408, timeouts, connection errors: retryable;
* any other 4xx (400 ``invalid_payload``, 403, 404 ``no_service``...): permanent.

:func:`slack_digest` and :meth:`SlackEmitter.send_digest` do the same for a digest:
one message listing many deliveries (at most :data:`DIGEST_MAX_SECTIONS`, the rest
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
from typing import Any

from mma.emitters import Delivery
from mma.emitters.slack_message import (  # noqa: F401 - re-exported
    DIGEST_MAX_SECTIONS,
    _counts_text,
    _escape,
    digest_order,
    format_dt,
    message_links,
    slack_digest,
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


class SlackEmitter:
    """Post coincidences to a Slack incoming webhook.

    Parameters
    ----------
    webhook_url : str
        ``https://hooks.slack.com/services/...`` (a secret: never logged).
    timeout_s : float
        Socket timeout of one POST [s].
    min_interval_s : float
        Minimum time between the starts of two POSTs [s]; :meth:`send` sleeps
        the remainder (0 disables the limit).

    Attributes
    ----------
    name : str
        ``"slack"``.
    """

    name = "slack"

    def __init__(self, webhook_url: str, *, timeout_s: float = 10,
                 min_interval_s: float = 1.0) -> None:
        parts = urllib.parse.urlsplit(webhook_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the Slack webhook URL must be an http(s) URL")  # URL not echoed
        self._url = webhook_url
        self.host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        self.timeout_s = float(timeout_s)
        self.min_interval_s = max(0.0, float(min_interval_s))
        self._lock = threading.Lock()
        self._last_post: float | None = None

    def __repr__(self) -> str:
        return f"SlackEmitter(host={self.host!r})"

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
            The coincidence to announce.

        Raises
        ------
        DeliveryError
            429 (``retry_after`` from ``Retry-After``), 5xx/408/timeout/connection
            error (retryable) or another 4xx (``permanent=True``).
        """
        cid = delivery.coincidence_id
        what = f"coincidence {cid}"
        self._post(self._encode(slack_message(delivery), what), what)
        logger.info("coincidence %s: posted to Slack (%s, %s revision %d)", cid, self.host,
                    delivery.kind, delivery.revision)

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
                    _counts_text(deliveries))

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
