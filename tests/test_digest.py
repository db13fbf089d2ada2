"""Digest messages (one message for many deliveries) on Slack and email, against the
harness's real HTTP sink and SMTP server."""

from __future__ import annotations

import json
from dataclasses import replace
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


V2_ONLY = ("schema_version", "revision", "kind", "event_class", "significance",
           "position_scatter_arcsec", "detections", "n_detections", "n_vetoed_detections",
           "first_detection", "first_detection_after_t0", "last_detection",
           "n_prior_detections", "history_source", "peak_magnitude", "peak_band",
           "rise_rate_mag_per_day", "fade_rate_mag_per_day", "changes")


def _delivery(index: int, kind: MessageKind, p_chance: float, object_id: str,
              revision: int = 1, **changes: Any) -> Delivery:
    """The schema example with its own coincidence id, object and P_chance."""
    payload: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    cid = f"00000000-0000-5000-8000-{index:012d}"
    payload.update(coincidence_id=cid, object_id=object_id, p_chance=p_chance, kind=kind,
                   revision=revision,
                   status={"new": "active", "update": "updated",
                           "retraction": "retracted"}[kind],
                   changes={"new": [], "update": ["p_chance"],
                            "retraction": ["status", "flags", "rank"]}[kind],
                   rank=None if kind == "retraction" else index)
    payload.update(changes)
    return Delivery(outbox_id=100 + index, channel="digest", coincidence_id=cid,
                    revision=revision, kind=kind, payload=payload,
                    event={"properties": {}, "area90_deg2": 130.0, "test": False})


def _v1_delivery(index: int, object_id: str) -> Delivery:
    """A new message whose record a version 1 database stored (one alert)."""
    delivery = _delivery(index, "new", 0.5, object_id)
    payload = {k: v for k, v in delivery.payload.items() if k not in V2_ONLY}
    payload.update(alert_id="3100000000000000609", alert_time="2026-11-20T23:12:45.123Z",
                   flags=["prior_activity"])
    return replace(delivery, payload=payload)


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
    assert header == "mma digest: 3 candidates (1 new, 1 updated, 1 retracted)"
    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    assert len(sections) == 3
    assert all("\n" not in section for section in sections)  # one line per candidate
    # best first (P_chance ascending), the retraction last despite its lowest P_chance
    for section, name in zip(sections, ("ZTF26aaaaupd (ZTF)", "ZTF26aaaanew (ZTF)",
                                        "ZTF26aaaaret (ZTF)"), strict=True):
        assert name in section
    assert "P_chance 0.01" in sections[0] and "P_chance 0.2" in sections[1]
    assert "(update, r2)" in sections[0] and "changed: p_chance" in sections[0]
    assert "(new, r1)" in sections[1] and "changed" not in sections[1]
    assert "(retraction, r3)" in sections[2]
    assert all("× S261120ab" in s and "3 det." in s and "peak g 20.22 mag" in s
               and "CL 0.047" in s and "Δt +20.0 h" in s
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
    assert blocks[0]["text"]["text"] == \
        "mma digest: 60 candidates (60 new, 0 updated, 0 retracted)"
    shown = sum(1 for b in blocks if b["type"] == "section")
    assert blocks[-1]["type"] == "context"
    assert blocks[-1]["elements"][0]["text"] == f"… and {60 - shown} more"
    assert "ZTF26aa00000" in json.dumps(blocks[1])  # the best one first
    assert f"… and {60 - shown} more" in message["text"]


def test_slack_digest_one_line_per_candidate() -> None:
    """Two revisions of one candidate make one line (the newest); a v1 record renders."""
    deliveries = [_delivery(1, "new", 0.02, "ZTF26aaaatwo"),
                  _delivery(1, "update", 0.01, "ZTF26aaaatwo", revision=2,
                            changes=["detections", "p_chance"], n_detections=4),
                  _v1_delivery(2, "ZTF26aaaaold")]
    message = slack_digest(deliveries)
    assert message["blocks"][0]["text"]["text"] == \
        "mma digest: 2 candidates (2 new, 0 updated, 0 retracted) from 3 messages"
    first, second = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    assert "ZTF26aaaatwo" in first and "(new, r2, 2 messages)" in first
    assert "4 det." in first and "P_chance 0.01" in first
    assert "ZTF26aaaaold" in second and "1 det." in second and "peak n/a" in second
    assert message["text"].count("ZTF26aaaatwo") == 1


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
    assert mail.subject == "[mma] digest: 3 candidates (1 new, 1 updated, 1 retracted)"
    assert mail.message["X-MMA-Digest-Count"] == "3"
    text = mail.text()
    assert text.index("ZTF26aaaaupd") < text.index("ZTF26aaaanew") < text.index("ZTF26aaaaret")
    lines = text.splitlines()
    for delivery in deliveries:  # one line per candidate, with its id
        [line] = [x for x in lines if delivery.payload["object_id"] in x]
        assert delivery.coincidence_id in line
        assert "3 det., Δt +20.0 h, peak g 20.22 mag, CL 0.047" in line
    assert "1. updated candidate ZTF26aaaaupd (ZTF) for S261120ab (r2):" in text
    assert "changed: p_chance" in text
    assert "3. RETRACTED candidate ZTF26aaaaret (ZTF) for S261120ab (r3):" in text
    assert "S261120ab: https://gracedb.ligo.org/superevents/S261120ab/view/" in text
    html_part = mail.message.get_body(preferencelist=("html",))
    assert html_part is not None
    html_text = html_part.get_content()
    assert "<table>" in html_text and "<img" not in html_text
    assert all(name in html_text for name in ("ZTF26aaaaupd", "ZTF26aaaanew", "ZTF26aaaaret"))
    assert "g 20.22 mag" in html_text and "https://fink-portal.org/ZTF26aaaaupd" in html_text
    assert not list(mail.message.iter_attachments())


def test_email_digest_one_line_per_candidate() -> None:
    """Two revisions of one candidate make one line; a version 1 record renders."""
    deliveries = [_delivery(1, "new", 0.02, "ZTF26aaaatwo"),
                  _delivery(1, "update", 0.01, "ZTF26aaaatwo", revision=2,
                            n_prior_detections=2),
                  _v1_delivery(2, "ZTF26aaaaold")]
    msg = build_digest(deliveries, sender=SENDER, recipients=["a@example.org"])
    assert msg["Subject"] == ("[mma] digest: 2 candidates (2 new, 0 updated, 0 retracted) "
                              "from 3 messages")
    assert msg["X-MMA-Digest-Count"] == "3"
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    [two] = [x for x in text.splitlines() if "ZTF26aaaatwo" in x]
    assert two.startswith("1. new candidate ZTF26aaaatwo (ZTF) for S261120ab (r2, 2 messages)")
    assert "2 prior" in two and "P_chance 0.01" in two
    [old] = [x for x in text.splitlines() if "ZTF26aaaaold" in x]
    assert "1 det." in old and "peak n/a" in old


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


def test_digests_link_the_event_page_when_pages_are_served() -> None:
    """With a page URL the digests link mma's event page (Slack: instead of GraceDB)."""
    page = "https://mma.example.org/pages/events/S261120ab/index.html"
    plain = _delivery(1, "new", 0.02, "ZTF26aaaatwo")
    served = replace(plain, page_url=page)
    assert f"<{page}|Event page>" in slack_digest([served])["blocks"][1]["text"]["text"]
    assert "|GraceDB>" in slack_digest([plain])["blocks"][1]["text"]["text"]
    for delivery, link in ((served, page), (plain, "https://gracedb.ligo.org/superevents/")):
        msg = build_digest([delivery], sender=SENDER, recipients=["a@example.org"])
        body = msg.get_body(preferencelist=("plain",))
        assert body is not None
        events = body.get_content().split("Events:")[1]
        assert events.strip().startswith(f"S261120ab: {link}")
