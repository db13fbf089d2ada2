"""Digest messages (one message for many deliveries) on Slack and email, against the
harness's real HTTP sink and SMTP server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mma.emitters import Delivery, MessageKind
from mma.emitters.email import EmailEmitter, build_digest
from mma.emitters.slack import SlackEmitter, slack_digest
from mma.errors import DeliveryError
from tests.services.http import HttpSink
from tests.services.smtp import SmtpServer

EXAMPLE = Path(__file__).resolve().parents[1] / "mma" / "schema" / "coincidence.example.json"
HOOK = "/services/T000/B000/DIGESTTOKEN"
SENDER = "mma daemon <mma@example.org>"


def _delivery(index: int, kind: MessageKind, p_chance: float, object_id: str,
              revision: int = 1) -> Delivery:
    """The schema example with its own coincidence id, candidate and P_chance."""
    payload: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    cid = f"00000000-0000-5000-8000-{index:012d}"
    payload.update(coincidence_id=cid, object_id=object_id, p_chance=p_chance,
                   status={"new": "new", "update": "updated",
                           "retraction": "retracted"}[kind],
                   rank=None if kind == "retraction" else index)
    return Delivery(outbox_id=100 + index, channel="digest", coincidence_id=cid,
                    revision=revision, kind=kind, payload=payload,
                    event={"properties": {}, "area90_deg2": 130.0, "test": False})


def _three() -> list[Delivery]:
    """A retraction, a weak new candidate and a strong update, in that (wrong) order."""
    return [_delivery(1, "retraction", 1e-4, "ZTF26aaaaret", revision=3),
            _delivery(2, "new", 0.2, "ZTF26aaaanew"),
            _delivery(3, "update", 0.01, "ZTF26aaaaupd", revision=2)]


# -- Slack -------------------------------------------------------------------------------


def test_slack_digest_is_one_post_best_first(http_sink: HttpSink) -> None:
    deliveries = _three()
    emitter = SlackEmitter(http_sink.url_for(HOOK), min_interval_s=0)
    emitter.send_digest(deliveries)
    emitter.close()
    [request] = http_sink.posts(HOOK)
    message = request.json
    assert message == slack_digest(deliveries)
    header = message["blocks"][0]["text"]["text"]
    assert header == "mma digest: 3 messages (1 new, 1 updated, 1 retracted)"
    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    assert len(sections) == 3
    # best first (P_chance ascending), the retraction last despite its lowest P_chance
    for section, name in zip(sections, ("ZTF26aaaaupd", "ZTF26aaaanew", "ZTF26aaaaret"),
                             strict=True):
        assert name in section
    assert "P_chance 0.01" in sections[0] and "P_chance 0.2" in sections[1]
    assert "retraction" in sections[2]
    assert all("S261120ab" in s and "CL 0.047" in s and "Δt +20.0 h" in s
               and "gracedb.ligo.org/superevents/S261120ab" in s for s in sections)
    text = message["text"]
    assert text.index("ZTF26aaaaupd") < text.index("ZTF26aaaanew") < text.index("ZTF26aaaaret")


def test_slack_digest_caps_blocks(http_sink: HttpSink) -> None:
    deliveries = [_delivery(i, "new", i / 100.0, f"ZTF26aa{i:05d}") for i in range(60)]
    SlackEmitter(http_sink.url_for(HOOK), min_interval_s=0).send_digest(deliveries)
    [request] = http_sink.posts(HOOK)
    message = request.json
    assert isinstance(message, dict)
    blocks = message["blocks"]
    assert len(blocks) <= 50
    assert blocks[0]["text"]["text"] == "mma digest: 60 messages (60 new, 0 updated, 0 retracted)"
    shown = sum(1 for b in blocks if b["type"] == "section")
    assert blocks[-1]["type"] == "context"
    assert blocks[-1]["elements"][0]["text"] == f"… and {60 - shown} more"
    assert "ZTF26aa00000" in json.dumps(blocks[1])  # the best one first
    assert f"… and {60 - shown} more" in message["text"]


def test_slack_digest_rate_limited(http_sink: HttpSink) -> None:
    http_sink.queue_rate_limit(count=1, retry_after=7)
    emitter = SlackEmitter(http_sink.url_for(HOOK), min_interval_s=0)
    with pytest.raises(DeliveryError) as excinfo:
        emitter.send_digest(_three())
    assert excinfo.value.retry_after == 7
    assert not excinfo.value.permanent
    assert "DIGESTTOKEN" not in str(excinfo.value)
    emitter.send_digest(_three())  # the retry goes through
    assert len(http_sink.posts(HOOK)) == 2


def test_slack_digest_client_error_is_permanent(http_sink: HttpSink) -> None:
    http_sink.queue_response(400, "invalid_payload")
    with pytest.raises(DeliveryError) as excinfo:
        SlackEmitter(http_sink.url_for(HOOK), min_interval_s=0).send_digest(_three())
    assert excinfo.value.permanent


def test_slack_empty_digest_is_noop(http_sink: HttpSink) -> None:
    SlackEmitter(http_sink.url_for(HOOK), min_interval_s=0).send_digest([])
    assert http_sink.posts(HOOK) == []


# -- email -------------------------------------------------------------------------------


def _emitter(server: SmtpServer) -> EmailEmitter:
    return EmailEmitter(host=server.host, port=server.port, security="none",
                        username=server.username, password=server.password, sender=SENDER,
                        recipients=["astro@example.org"], timeout_s=10)


def test_email_digest_is_one_mail(smtp_server: SmtpServer) -> None:
    deliveries = _three()
    emitter = _emitter(smtp_server)
    emitter.send_digest(deliveries)
    emitter.close()
    [mail] = smtp_server.wait_for(1)
    assert mail.subject == ("[mma] digest: 3 coincidence messages "
                            "(1 new, 1 updated, 1 retracted)")
    assert mail.message["X-MMA-Digest-Count"] == "3"
    text = mail.text()
    assert text.index("ZTF26aaaaupd") < text.index("ZTF26aaaanew") < text.index("ZTF26aaaaret")
    for delivery in deliveries:
        assert delivery.coincidence_id in text
    assert "RETRACTED" in text
    html_part = mail.message.get_body(preferencelist=("html",))
    assert html_part is not None
    html_text = html_part.get_content()
    assert "<table>" in html_text and "<img" not in html_text
    assert all(name in html_text for name in ("ZTF26aaaaupd", "ZTF26aaaanew", "ZTF26aaaaret"))
    assert not list(mail.message.iter_attachments())


def test_email_digest_message_id_is_stable() -> None:
    deliveries = _three()
    first = build_digest(deliveries, sender=SENDER, recipients=["a@example.org"])
    again = build_digest(list(reversed(deliveries)), sender=SENDER,
                         recipients=["b@example.org"])
    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"].endswith("@example.org>")
    other = build_digest(deliveries[:2], sender=SENDER, recipients=["a@example.org"])
    assert other["Message-ID"] != first["Message-ID"]
    bumped = [*deliveries[:2], _delivery(3, "update", 0.01, "ZTF26aaaaupd", revision=4)]
    assert build_digest(bumped, sender=SENDER,
                        recipients=["a@example.org"])["Message-ID"] != first["Message-ID"]


def test_email_digest_refused_sender_is_permanent(smtp_server: SmtpServer) -> None:
    emitter = EmailEmitter(host=smtp_server.host, port=smtp_server.port, security="none",
                           username=smtp_server.username, password="wrong", sender=SENDER,
                           recipients=["astro@example.org"], timeout_s=10)
    with pytest.raises(DeliveryError) as excinfo:
        emitter.send_digest(_three())
    assert excinfo.value.permanent


def test_email_empty_digest_is_noop(smtp_server: SmtpServer) -> None:
    _emitter(smtp_server).send_digest([])
    assert smtp_server.messages == []
