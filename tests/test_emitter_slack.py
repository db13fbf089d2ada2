"""SlackEmitter and its Block Kit message, against the harness's real HTTP sink."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
import pytest
from sqlalchemy import Engine, select

from mma.config import load_config
from mma.db.engine import make_engine
from mma.db.schema import regions
from mma.delivery import MessageExtras, build_emitters, deliver_due, region_loader
from mma.emitters import Delivery, MessageKind
from mma.emitters.links import page_url
from mma.emitters.slack import SlackEmitter, format_dt, message_links, slack_message
from mma.errors import ConfigError, DeliveryError
from mma.handlers import lvk
from mma.ingest import Pipeline
from mma.models import Alert
from mma.skymaps.region import MAX_ORDER
from tests.services.http import HttpSink
from tests.test_links import AMON_BRONZE, GBM_2024, LVK, _candidate

EXAMPLE = Path(__file__).resolve().parents[1] / "mma" / "schema" / "coincidence.example.json"
HOOK = "/services/T000/B000/SECRETTOKEN"


def _payload() -> dict[str, Any]:
    with EXAMPLE.open(encoding="utf-8") as handle:
        payload: dict[str, Any] = json.load(handle)
    return payload


V2_ONLY = ("schema_version", "revision", "kind", "event_class", "significance",
           "position_scatter_arcsec", "detections", "n_detections", "n_vetoed_detections",
           "first_detection", "first_detection_after_t0", "last_detection",
           "n_prior_detections", "history_source", "peak_magnitude", "peak_band",
           "rise_rate_mag_per_day", "fade_rate_mag_per_day", "changes")


def _v1_payload() -> dict[str, Any]:
    """The example as a version 1 database stored it: one alert, no version 2 field."""
    payload = {k: v for k, v in _payload().items() if k not in V2_ONLY}
    payload.update(alert_id="3100000000000000609", alert_time="2026-11-20T23:12:45.123Z",
                   flags=["prior_activity"])
    return payload


def _delivery(payload: dict[str, Any] | None = None, kind: MessageKind = "new",
              revision: int = 1, properties: dict[str, Any] | None = None) -> Delivery:
    payload = payload if payload is not None else _payload()
    return Delivery(outbox_id=1, channel="slack", coincidence_id=payload["coincidence_id"],
                    revision=revision, kind=kind, payload=payload,
                    event={"properties": properties or {}, "area90_deg2": 130.0,
                           "test": False})


# -- the message (pure) ----------------------------------------------------------------


def test_slack_message_content() -> None:
    message = slack_message(_delivery())
    dumped = json.dumps(message, ensure_ascii=False)
    header = message["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"] == "🆕 New candidate: ZTF26aaaaaxl (ZTF) × S261120ab"
    for needle in ("ZTF26aaaaaxl (ZTF)", "S261120ab", "gw.cbc · LVK",
                   "2026-11-20T03:12:45.123Z", "RA 149.4895°", "Dec +25.7975°",
                   "scatter 0.14″", "3 detections in the window",
                   "first after t₀ 2026-11-20T23:12:45.123Z (Δt +20.0 h)",
                   "last 2026-11-21T23:34:10.811Z", "latest r 20.95 mag", "peak g 20.22 mag",
                   "fading 0.53 mag/d", "FAR 3.2e-10 Hz (1 per 99 yr), p_astro 0.97, significant",
                   "0.047 (4.7 %)", "2.74 deg²", "6.54 (sky 6.54, t 0.00, D 0.00, prior 0.00)",
                   "0.037 (N_bg 0.0377)", "*Rank*\\n1", "1 (region v2)", "status active",
                   "https://gracedb.ligo.org/superevents/S261120ab/view/",
                   "https://www.wis-tns.org/search?ra=149.489542&decl=25.797453"
                   "&radius=10&coords_unit=arcsec"):
        assert needle in dumped, needle
    assert "P_chance 0.037" in message["text"]
    assert "first after t₀ 2026-11-20T23:12:45.123Z" in message["text"]
    assert "prior detections" not in dumped  # none before t0
    assert "Changed" not in dumped and "alert " not in dumped
    assert len(header["text"]["text"]) <= 150


def test_update_says_what_changed_and_prior_detections() -> None:
    payload = {**_payload(), "kind": "update", "revision": 2, "status": "updated",
               "changes": ["detections", "p_chance"], "n_prior_detections": 4,
               "n_vetoed_detections": 1, "flags": ["pre_existing"]}
    message = slack_message(_delivery(payload, kind="update", revision=2))
    dumped = json.dumps(message, ensure_ascii=False)
    assert message["blocks"][0]["text"]["text"].startswith("🔄 Updated candidate: ZTF26aaaaaxl")
    assert "*Changed: detections, p_chance*" in dumped
    assert "prior detections: 4 before t0 (ztf.prv_candidates)" in dumped
    assert "3 detections (1 vetoed) in the window" in dumped
    assert "Flags: pre_existing" in dumped
    assert "Changed: detections, p_chance" in message["text"]


def test_no_detection_after_t0() -> None:
    payload = {**_payload(), "first_detection_after_t0": None, "dt_days": -0.25}
    dumped = json.dumps(slack_message(_delivery(payload)), ensure_ascii=False)
    assert "no detection after t₀ (first in window Δt -6.0 h)" in dumped


def test_version_1_record_still_renders() -> None:
    """A record migrated from a version 1 database: one alert, no version 2 field."""
    message = slack_message(_delivery(_v1_payload(), kind="update", revision=2))
    dumped = json.dumps(message, ensure_ascii=False)
    assert message["blocks"][0]["text"]["text"] == \
        "🔄 Updated candidate: ZTF26aaaaaxl (ZTF) × S261120ab"
    for needle in ("1 detection in the window", "alert 3100000000000000609",
                   "first after t₀ 2026-11-20T23:12:45.123Z (Δt +20.0 h)",
                   "gw · LVK", "prior_activity", "0.047 (4.7 %)"):
        assert needle in dumped, needle
    assert "latest" not in dumped and "Changed" not in dumped
    json.dumps(message, allow_nan=False)  # postable as it is


def test_slack_message_kinds_and_escaping() -> None:
    payload = {**_payload(), "object_id": "<!channel> & co", "status": "retracted"}
    updated = slack_message(_delivery(kind="update", revision=2))
    retracted = slack_message(_delivery(payload, kind="retraction", revision=3))
    assert updated["blocks"][0]["text"]["text"].startswith("🔄 Updated")
    assert retracted["blocks"][0]["text"]["text"].startswith("❌ Retracted")
    dumped = json.dumps(retracted["blocks"][1:])
    assert "<!channel>" not in dumped and "&lt;!channel&gt; &amp; co" in dumped
    assert "<!channel>" not in retracted["text"]


def test_links() -> None:
    payload = _payload()
    labels = [label for label, _ in message_links(payload, {})]
    assert labels == ["GraceDB", "TNS", "Fink", "ALeRCE", "Lasair"]
    assert dict(message_links(payload, {}))["Fink"] == "https://fink-portal.org/ZTF26aaaaaxl"
    assert dict(message_links(payload, {}))["ALeRCE"] == \
        "https://alerce.online/object/ZTF26aaaaaxl"
    custom = {"properties": {"urls": {"gracedb": "https://gracedb-test.ligo.org/x/"}}}
    assert dict(message_links(payload, custom))["GraceDB"] == "https://gracedb-test.ligo.org/x/"
    grb = {**payload, "event_id": "bn261120123", "messenger": "grb", "instrument": "Fermi-GBM",
           "aliases": ["bn261120123", "GRB 261120A"], "survey": "LSST",
           "object_id": "170032882292621394"}
    links = dict(message_links(grb, {}))
    assert links["GCN Circulars"] == "https://gcn.nasa.gov/circulars?query=GRB+261120A"
    assert "TNS" in links and "GraceDB" not in links and "Fink" not in links


def _real(corpus: Path, notice: str, page: str | None = None, **extra: Any) -> Delivery:
    """The example candidate scored against a real notice's event, as the outbox has it."""
    record, event = _candidate(corpus, notice, **extra)
    payload = {**_payload(), **record, "object_id": "ZTF26aaaaaxl"}
    return Delivery(outbox_id=1, channel="slack", coincidence_id=payload["coincidence_id"],
                    revision=1, kind="new", payload=payload, event=event,
                    page_url=page_url(page, payload["event_id"]))


def _buttons(message: dict[str, Any]) -> dict[str, str]:
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    return {e["text"]["text"]: e["url"] for e in actions["elements"]}


def test_lvk_candidate_shows_far_in_hz_classification_distance_and_magnitudes(
        corpus: Path) -> None:
    delivery = _real(corpus, LVK, page="https://mma.example.org/pages",
                     distance_mpc={"mean": 204.3, "std": 57.9})
    message = slack_message(delivery)
    event_field = message["blocks"][1]["fields"][0]["text"]
    for needle in ("S230518h", "notice INITIAL",
                   "FAR 3.22e-10 Hz (1 per 98.5 yr), p_astro 0.90, significant",
                   "classification NSBH 0.86, Terrestrial 0.10, BBH 0.04, BNS 0.00",
                   "distance 204 ± 58 Mpc", "90 % area 2,010 deg²"):
        assert needle in event_field, needle
    object_field = message["blocks"][1]["fields"][1]["text"]
    assert "latest r 20.95 mag · peak g 20.22 mag" in object_field
    assert "(Δt +20.0 h)" in object_field
    buttons = _buttons(message)
    assert next(iter(buttons)) == "Event page"
    assert buttons["Event page"] == "https://mma.example.org/pages/events/S230518h/index.html"
    assert buttons["GraceDB"] == "https://gracedb.ligo.org/superevents/S230518h/view/"
    assert "Event page: https://mma.example.org/pages/events/S230518h/index.html" in \
        message["text"]


def test_icecube_amon_far_is_shown_per_year(corpus: Path) -> None:
    message = slack_message(_real(corpus, AMON_BRONZE))
    dumped = json.dumps(message, ensure_ascii=False)
    assert "FAR 2.01 per yr (6.35e-08 Hz)" in dumped
    assert "2.01 Hz" not in dumped and "FAR 2.01e+00 Hz" not in dumped
    assert _buttons(message)["GCN notice"] == \
        "https://gcn.gsfc.nasa.gov/notices_amon_g_b/136973_28816141.amon"


def test_gbm_candidate_links_the_trigger_page(corpus: Path) -> None:
    message = slack_message(_real(corpus, GBM_2024))
    assert _buttons(message)["GCN notices"] == "https://gcn.gsfc.nasa.gov/other/726773850.fermi"
    assert "32.6 σ" in json.dumps(message, ensure_ascii=False)
    assert "Event page" not in _buttons(message)  # no [pages] base_url


def test_broker_classes_are_shown_and_escaped() -> None:
    payload = {**_payload(), "classes": {
        "fink": {"cdsxmatch": "<!channel> & <https://evil.io|go>",
                 "snn_sn_vs_all": 0.1},
        "lasair": {"sherlock": "VS"}}}
    message = slack_message(_delivery(payload))
    object_field = message["blocks"][1]["fields"][1]["text"]
    assert "lasair: sherlock VS" in object_field
    assert ("fink: cdsxmatch &lt;!channel&gt; &amp; &lt;https://evil.io|go&gt;, "
            "snn_sn_vs_all 0.10") in object_field
    dumped = json.dumps(message)
    assert "<!channel>" not in dumped and "<https://evil" not in dumped


DESTINATIONS = """
[channels.slack]
enabled = true
min_interval_seconds = 0
[[channels.slack.destinations]]
name = "gw-oncall"
webhook_secret = "MMA_SLACK_GW_URL"
[[channels.slack.destinations]]
name = "grb"
webhook_secret = "MMA_SLACK_GRB_URL"
"""


def test_each_destination_posts_to_its_own_webhook(tmp_path: Path, http_sink: HttpSink) -> None:
    """The gw-oncall webhook comes from its environment variable, the grb one from a
    systemd credential file of that name; each destination posts to its own URL."""
    path = tmp_path / "mma.toml"
    path.write_text(DESTINATIONS)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "MMA_SLACK_GRB_URL").write_text(http_sink.url_for("/hooks/grb") + "\n")
    environ = {"MMA_PATHS__STATE_DIR": str(tmp_path), "CREDENTIALS_DIRECTORY": str(credentials),
               "MMA_SLACK_GW_URL": http_sink.url_for("/hooks/gw")}
    config = load_config(path, environ=environ, system_file=tmp_path / "none")
    emitters = build_emitters(config)
    assert set(emitters) == {"slack:gw-oncall", "slack:grb"}
    assert [e.name for e in emitters.values()] == ["slack:gw-oncall", "slack:grb"]
    emitters["slack:grb"].send(_delivery())
    emitters["slack:gw-oncall"].send(_delivery(kind="update", revision=2))
    [grb] = http_sink.posts("/hooks/grb")
    [gw] = http_sink.posts("/hooks/gw")
    assert grb.json is not None and gw.json is not None
    assert grb.json["blocks"][0]["text"]["text"].startswith("🆕 New")
    assert gw.json["blocks"][0]["text"]["text"].startswith("🔄 Updated")
    del environ["MMA_SLACK_GW_URL"]
    unset = load_config(path, environ=environ, system_file=tmp_path / "none")
    with pytest.raises(ConfigError, match=r"slack:gw-oncall.*MMA_SLACK_GW_URL"):
        build_emitters(unset)


def test_format_dt() -> None:
    assert format_dt(0.8333333333) == "+20.0 h"
    assert format_dt(-3.419) == "-3.42 d"
    assert format_dt(None) == "n/a"


# -- the webhook -----------------------------------------------------------------------


def test_post_arrives(http_sink: HttpSink, caplog: pytest.LogCaptureFixture) -> None:
    emitter = SlackEmitter(http_sink.url_for(HOOK), min_interval_s=0)
    assert emitter.name == "slack"
    delivery = _delivery()
    with caplog.at_level(logging.DEBUG, logger="mma.emitters.slack"):
        emitter.send(delivery)
    emitter.close()
    [request] = http_sink.posts(HOOK)
    assert (request.header("content-type") or "").startswith("application/json")
    assert request.json == slack_message(delivery)
    body = request.body.decode("utf-8")
    for needle in ("ZTF26aaaaaxl", "0.047 (4.7 %)", "0.037", "3 detections in the window",
                   "peak g 20.22 mag",
                   "https://gracedb.ligo.org/superevents/S261120ab/view/",
                   "https://www.wis-tns.org/search?ra="):
        assert needle in body, needle
    # mma's own log lines (the test's HTTP server logs the path it served on its own).
    records = [r for r in caplog.records if r.name.startswith("mma.")]
    assert records
    for record in records:
        assert delivery.coincidence_id in record.getMessage()
        assert "SECRETTOKEN" not in record.getMessage()


def test_rate_limited_429(http_sink: HttpSink) -> None:
    http_sink.queue_rate_limit(count=1, retry_after=1)
    emitter = SlackEmitter(http_sink.url_for(HOOK), min_interval_s=0)
    with pytest.raises(DeliveryError) as excinfo:
        emitter.send(_delivery())
    assert excinfo.value.retry_after == 1
    assert not excinfo.value.permanent
    assert "SECRETTOKEN" not in str(excinfo.value)
    emitter.send(_delivery())  # the next attempt goes through
    assert len(http_sink.posts(HOOK)) == 2


def test_429_without_retry_after_defaults_to_30(http_sink: HttpSink) -> None:
    http_sink.queue_response(429, "rate_limited")
    with pytest.raises(DeliveryError) as excinfo:
        SlackEmitter(http_sink.url_for(HOOK), min_interval_s=0).send(_delivery())
    assert excinfo.value.retry_after == 30


def test_server_error_is_retryable(http_sink: HttpSink) -> None:
    http_sink.queue_error(500)
    with pytest.raises(DeliveryError) as excinfo:
        SlackEmitter(http_sink.url_for(HOOK), min_interval_s=0).send(_delivery())
    assert not excinfo.value.permanent
    assert excinfo.value.retry_after is None


@pytest.mark.parametrize(("status", "body"), [(400, "invalid_payload"), (403, "forbidden"),
                                              (404, "no_service")])
def test_client_error_is_permanent(http_sink: HttpSink, status: int, body: str) -> None:
    http_sink.queue_response(status, body)
    with pytest.raises(DeliveryError) as excinfo:
        SlackEmitter(http_sink.url_for(HOOK), min_interval_s=0).send(_delivery())
    assert excinfo.value.permanent
    assert body in str(excinfo.value)
    assert "SECRETTOKEN" not in str(excinfo.value)


def test_timeout_is_retryable(http_sink: HttpSink) -> None:
    http_sink.queue_response(200, "ok", delay=1.0)
    started = time.monotonic()
    with pytest.raises(DeliveryError) as excinfo:
        SlackEmitter(http_sink.url_for(HOOK), timeout_s=0.2, min_interval_s=0).send(_delivery())
    assert not excinfo.value.permanent
    assert time.monotonic() - started < 1.0


def test_connection_refused_is_retryable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    emitter = SlackEmitter(f"http://127.0.0.1:{port}{HOOK}", timeout_s=2, min_interval_s=0)
    with pytest.raises(DeliveryError) as excinfo:
        emitter.send(_delivery())
    assert not excinfo.value.permanent
    assert "SECRETTOKEN" not in str(excinfo.value)


def test_rate_limit_spacing(http_sink: HttpSink) -> None:
    emitter = SlackEmitter(http_sink.url_for(HOOK), min_interval_s=0.3)
    started = time.monotonic()
    emitter.send(_delivery())
    emitter.send(_delivery(kind="update", revision=2))
    assert time.monotonic() - started >= 0.3
    assert len(http_sink.posts(HOOK)) == 2


def test_bad_url_is_refused_without_echo() -> None:
    with pytest.raises(ValueError) as excinfo:
        SlackEmitter("ftp://hooks.example/SECRETTOKEN")
    assert "SECRETTOKEN" not in str(excinfo.value)


def test_daemon_delivery_adds_notice_type_distance_and_page(
        engine: Engine, tmp_path: Path, corpus: Path, http_sink: HttpSink) -> None:
    """A real LVK notice with a 3-D map, an alert at its peak, then the real update notice:
    the message the outbox sends says the event's newest notice type, the map's distance
    and the event page (both databases)."""
    hook = "/services/T0/B0/lvk"
    config = load_config(environ={
        "MMA_PATHS__STATE_DIR": str(tmp_path), "MMA_PATHS__CACHE_DIR": str(tmp_path),
        "MMA_PAGES__BASE_URL": "https://mma.example.org/p/",
        "MMA_CHANNELS__SLACK__ENABLED": "true", "MMA_SLACK_WEBHOOK_URL": http_sink.url_for(hook),
        "MMA_CHANNELS__SLACK__MIN_INTERVAL_SECONDS": "0",
        "MMA_CHANNELS__SLACK__RULES__MAX_P_CHANCE": "1.0",
        "MMA_CHANNELS__SLACK__RULES__EXCLUDE_FLAGS": "[]"}, system_file=tmp_path / "none")
    p = Pipeline(engine, config)
    raw = (corpus / LVK).read_bytes()
    assert p.process(lvk, raw, origin="igwn.gwalert").kind == "notice"
    t0 = lvk.parse(raw, topic="igwn.gwalert").event_time
    with engine.connect() as conn:
        region_pk = conn.execute(select(regions.c.id)).scalar_one()
    region = region_loader(engine)(region_pk)
    assert region is not None
    i = region.density_order[0]
    theta, phi = hp.pix2ang(1 << MAX_ORDER, (region.lo[i] + region.hi[i]) // 2, nest=True)
    alert = Alert(alert_id="1", object_id="ZTF23aaaaaaa", survey="ZTF",
                  ra_deg=float(np.rad2deg(phi)), dec_deg=float(90 - np.rad2deg(theta)),
                  time=t0 + timedelta(hours=3), band="r", magnitude=19.5, magnitude_err=0.05,
                  quality={"rb": 0.95, "drb": 0.99, "isdiffpos": True})
    assert p.process(lvk, b"alert", origin="alert", item=alert).touched
    update = (corpus / LVK.replace("initial", "update")).read_bytes()
    assert p.process(lvk, update, origin="igwn.gwalert").kind == "notice"
    assert deliver_due(engine, config, build_emitters(config)) == {"sent": 1}
    [post] = http_sink.posts(hook)
    text = json.dumps(post.json, ensure_ascii=False)
    assert "notice UPDATE" in text  # the newest notice when sent, not the first one
    assert "https://mma.example.org/p/events/S230518h/index.html" in text
    assert "classification NSBH" in text and "latest r 19.50 mag" in text
    assert re.search(r"distance \d{3} ± \d{2,3} Mpc", text), text


def test_extras_that_fail_to_load_leave_the_message_as_it_was(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A database that cannot answer (here: no tables): the delivery keeps its event and
    gets its page link; Kafka deliveries are not touched at all."""
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    config = load_config(environ={"MMA_PATHS__STATE_DIR": str(tmp_path),
                                  "MMA_PAGES__BASE_URL": "https://m.example/p"},
                         system_file=tmp_path / "none")
    extras = MessageExtras(engine, config, region_loader(engine))
    delivery = _delivery()
    with caplog.at_level(logging.WARNING, logger="mma.delivery"):
        done = extras(delivery, 1, True)
    assert done.event == delivery.event and done.context is None
    assert done.page_url == "https://m.example/p/events/S261120ab/index.html"
    assert f"coincidence {delivery.coincidence_id} r1: slack message extras failed" \
        in caplog.text
    kafka = replace(delivery, channel="kafka")
    assert extras(kafka, 1, True) is kafka
    engine.dispose()


def test_many_broker_classes_stay_within_slack_field_limits() -> None:
    """Eight brokers of eight long, escaped fields: each field stays within 2,000
    characters (Slack refuses more with a 400) and ends on a whole escape."""
    classes = {f"broker{b}": {f"field{f}_{'x' * 30}": "<&>" * 20 for f in range(8)}
               for b in range(8)}
    message = slack_message(_delivery({**_payload(), "classes": classes}))
    fields = [f["text"] for block in message["blocks"] for f in block.get("fields", ())]
    assert max(len(f) for f in fields) <= 2000
    object_field = message["blocks"][1]["fields"][1]["text"]
    assert object_field.endswith("…") and "broker0: field0_" in object_field
    assert re.search(r"&[a-z]*…$", object_field) is None
