"""The email emitter against the harness's real SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

import dataclasses
import io
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import healpy as hp
import numpy as np
import pytest
from aiosmtpd.controller import Controller
from PIL import Image

from mma.config import load_config
from mma.db.context import CandidateContext, LightPoint, Stamp
from mma.db.engine import make_engine, upgrade
from mma.delivery import build_emitters, deliver_due
from mma.emitters import Delivery
from mma.emitters.email import EmailEmitter, build_message
from mma.errors import DeliveryError
from mma.handlers import lvk_voevent
from mma.ingest import Pipeline
from mma.models import Alert
from mma.skymaps.decode import read_multiorder
from mma.skymaps.region import MAX_ORDER, Region, build_region
from tests.services.http import HttpSink
from tests.services.procs import LOOPBACK, free_port
from tests.services.smtp import SmtpServer
from tests.test_links import LVK, _candidate

EXAMPLE = Path(__file__).resolve().parents[1] / "mma/schema/coincidence.example.json"
GRACEDB = "https://gracedb.ligo.org/superevents/S261120ab/view/"
V2_ONLY = ("schema_version", "revision", "kind", "event_class", "significance",
           "position_scatter_arcsec", "detections", "n_detections", "n_vetoed_detections",
           "first_detection", "first_detection_after_t0", "last_detection",
           "n_prior_detections", "history_source", "peak_magnitude", "peak_band",
           "rise_rate_mag_per_day", "fade_rate_mag_per_day", "changes")


@pytest.fixture(scope="module")
def region(corpus: Path) -> Region:
    data = (corpus / "skymaps/gw/MS181101ab_bayestar.multiorder.fits").read_bytes()
    return build_region(read_multiorder(data))


def make_delivery(region: Region | None, *, kind: str = "new", revision: int = 1,
                  version: int = 2, **changes: Any) -> Delivery:
    """The schema example, with the object moved to the map maximum of ``region``.

    ``version=1``: the record as a version 1 database stored it (one alert, none of
    the version 2 fields).
    """
    payload = json.loads(EXAMPLE.read_text())
    if version == 1:
        payload = {k: v for k, v in payload.items() if k not in V2_ONLY}
        payload.update(alert_id="3100000000000000609",
                       alert_time="2026-11-20T23:12:45.123Z", flags=["prior_activity"])
    if region is not None:
        i = region.density_order[0]
        theta, phi = hp.pix2ang(1 << MAX_ORDER, (region.lo[i] + region.hi[i]) // 2, nest=True)
        payload["ra"], payload["dec"] = float(np.rad2deg(phi)), float(90 - np.rad2deg(theta))
        payload["credible_level"] = float(region.credible_level[i])
    payload.update(changes)
    event = {"properties": {"far": 3.2e-10, "urls": {"gracedb": GRACEDB},
                            "classification": {"BNS": 0.9, "Terrestrial": 0.1},
                            "properties": {"HasNS": 0.99, "HasRemnant": 0.8}},
             "area90_deg2": 31.0, "test": False}
    return Delivery(outbox_id=7, channel="email", coincidence_id=payload["coincidence_id"],
                    revision=revision, kind=kind, payload=payload,  # type: ignore[arg-type]
                    event=event, region=region)


ZTF_PACKET = "alerts/ztf/avro/ZTF18abajfvr_541443293415015009.avro"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stamps(corpus: Path) -> dict[str, Stamp]:
    """The three cutouts of a real ZTF alert packet, as mma stores them."""
    with (corpus / ZTF_PACKET).open("rb") as handle:
        packet = next(iter(fastavro.reader(handle)))
    assert isinstance(packet, dict)
    return {kind: Stamp(kind, "fits.gz", packet[f"cutout{kind.title()}"]["stampData"])
            for kind in ("science", "template", "difference")}


def light_curve(t0: datetime) -> tuple[LightPoint, ...]:
    """Five points in two bands around t0, one of them failed vetting."""
    return tuple(LightPoint(time=t0 + timedelta(hours=hours), magnitude=mag,
                            magnitude_err=0.08, band=band, vetted=hours != 30,
                            alert_id=f"alert-{i}")
                 for i, (hours, mag, band) in enumerate(
                     [(-50, 21.4, "r"), (20, 20.4, "g"), (21, 20.95, "r"),
                      (30, 19.0, "r"), (44, 20.3, "g")]))


def flat(text: str) -> str:
    """The text with every run of white space made one space (label columns vary)."""
    return " ".join(text.split())


def emitter_for(server: SmtpServer, *, login: bool = True, **kwargs: Any) -> EmailEmitter:
    options: dict[str, Any] = {
        "host": server.host, "port": server.port, "security": "none",
        "username": server.username if login else None,
        "password": server.password if login else None,
        "sender": "mma daemon <mma@example.org>",
        "recipients": ["astro@example.org", "duty@example.org"],
        "timeout_s": 10,
    }
    options.update(kwargs)
    return EmailEmitter(**options)


def test_new_candidate_mail_with_picture(smtp_server: SmtpServer, region: Region,
                                         caplog: pytest.LogCaptureFixture) -> None:
    delivery = make_delivery(region)
    emitter = emitter_for(smtp_server)
    with caplog.at_level("DEBUG", logger="mma"):
        emitter.send(delivery)
    emitter.close()
    [mail] = smtp_server.wait_for(1)
    assert mail.login == smtp_server.username
    assert mail.mail_from == "mma@example.org"
    assert sorted(mail.rcpt_tos) == ["astro@example.org", "duty@example.org"]
    msg = mail.message
    assert mail.subject.startswith(
        "[mma] new candidate ZTF26aaaaaxl (ZTF) for S261120ab (3 det., CL ")
    assert "P_chance 0.037)" in mail.subject
    cid = delivery.coincidence_id
    assert msg["X-MMA-Coincidence-Id"] == cid
    assert msg["X-MMA-Revision"] == "1"
    assert msg["X-MMA-Object"] == "ZTF ZTF26aaaaaxl"
    assert msg["X-MMA-Event"] == "S261120ab"
    assert msg["Message-ID"] == f"<mma.{cid}.r1@example.org>"

    text = flat(mail.text())
    for needle in ("Object ZTF26aaaaaxl (ZTF)", "S261120ab", "Class / instrument gw.cbc / LVK",
                   "FAR 3.2e-10 Hz (1 per 99 yr), p_astro 0.97, significant",
                   "(scatter 0.14 arcsec)", "3 detections in the window",
                   "First after t0 (UTC) 2026-11-20T23:12:45.123Z",
                   "+0.833 d (+20.0 h) after t0", "2026-11-21T23:34:10.811Z",
                   "Latest magnitude r 20.95 mag", "Peak magnitude g 20.22 mag",
                   "fading 0.53 mag/d", "2026-11-21T00:05:33.560Z g 20.22 ± 0.10 mag (+20.9 h)",
                   "P_chance", "0.037", "Credible level",
                   f"{delivery.payload['credible_level']:.3f}", "ln_B_sky",
                   GRACEDB, "https://fink-portal.org/ZTF26aaaaaxl",
                   "https://alerce.online/object/ZTF26aaaaaxl", "wis-tns.org/search?ra="):
        assert needle in text, needle
    assert "Prior detections" not in text and "Changed" not in text
    html_part = msg.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert "<table>" in html and "ZTF26aaaaaxl" in html and 'src="cid:region"' in html
    assert "g 20.22 ± 0.10 mag" in html

    pngs = [part for part in msg.walk() if part.get_content_type() == "image/png"]
    assert len(pngs) == 1
    assert pngs[0]["Content-ID"] == "<region>"
    data = pngs[0].get_payload(decode=True)
    assert isinstance(data, bytes)
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.size[0] > 300 and image.size[1] > 300

    password = smtp_server.password
    assert all(password not in record.getMessage() for record in caplog.records)
    assert password not in repr(emitter)
    assert any(cid in record.getMessage() for record in caplog.records)


def test_resend_has_the_same_message_id(smtp_server: SmtpServer, region: Region) -> None:
    emitter = emitter_for(smtp_server, picture=False)
    emitter.send(make_delivery(region, revision=3, kind="update", status="updated"))
    emitter.send(make_delivery(region, revision=3, kind="update", status="updated"))
    first, second = smtp_server.wait_for(2)
    assert first.message["Message-ID"] == second.message["Message-ID"]
    assert first.message["Message-ID"].endswith(".r3@example.org>")
    assert first.message["In-Reply-To"].endswith(".r1@example.org>")
    assert first.subject.startswith("[mma] updated candidate")
    assert not [p for p in first.message.walk() if p.get_content_maintype() == "image"]


def test_retraction_says_retracted(smtp_server: SmtpServer, region: Region) -> None:
    delivery = make_delivery(region, kind="retraction", revision=2, status="retracted",
                             rank=None, flags=["event_retracted"])
    emitter_for(smtp_server, login=False).send(delivery)
    [mail] = smtp_server.wait_for(1)
    assert mail.login is None
    assert mail.subject.startswith("[mma] RETRACTED candidate ZTF26aaaaaxl (ZTF) for S261120ab")
    assert "RETRACTED" in mail.text()
    assert "event_retracted" in mail.text()


def test_update_says_what_changed(smtp_server: SmtpServer) -> None:
    delivery = make_delivery(None, kind="update", revision=2, status="updated",
                             changes=["detections", "rank"], n_prior_detections=3,
                             history_source="stored_alerts", flags=["pre_existing"])
    emitter_for(smtp_server).send(delivery)
    [mail] = smtp_server.wait_for(1)
    text = flat(mail.text())
    assert mail.subject.startswith("[mma] updated candidate ZTF26aaaaaxl (ZTF) for S261120ab")
    for needle in ("Changed detections, rank", "Prior detections 3 before t0 (stored_alerts)",
                   "Flags pre_existing"):
        assert needle in text, needle


def test_version_1_record_still_renders(smtp_server: SmtpServer, region: Region) -> None:
    """A record of a version 1 database (alert_id/alert_time, no version 2 field)."""
    delivery = make_delivery(region, kind="update", revision=2, version=1)
    emitter_for(smtp_server).send(delivery)
    [mail] = smtp_server.wait_for(1)
    assert mail.subject.startswith(
        "[mma] updated candidate ZTF26aaaaaxl (ZTF) for S261120ab (1 det., CL ")
    text = flat(mail.text())
    for needle in ("Alert 3100000000000000609 at 2026-11-20T23:12:45.123Z",
                   "Detections 1 detection in the window", "+0.833 d (+20.0 h) after t0",
                   "Significance FAR 3.2e-10 Hz (1 per 99 yr)", "Flags prior_activity",
                   "Class / instrument gw / LVK", "Latest magnitude n/a"):
        assert needle in text, needle
    assert len([p for p in mail.message.walk() if p.get_content_type() == "image/png"]) == 1


def test_mail_without_region(smtp_server: SmtpServer) -> None:
    emitter_for(smtp_server).send(make_delivery(None))
    [mail] = smtp_server.wait_for(1)
    assert not [p for p in mail.message.walk() if p.get_content_maintype() == "image"]
    assert mail.message.get_body(preferencelist=("html",)) is not None


def test_refused_connection_is_retryable(region: Region) -> None:
    port = free_port()  # nothing listens there
    emitter = EmailEmitter(host=LOOPBACK, port=port, security="none", username=None,
                           password=None, sender="mma@example.org",
                           recipients=["a@example.org"], timeout_s=5)
    with pytest.raises(DeliveryError) as info:
        emitter.send(make_delivery(None))
    assert not info.value.permanent


def test_silent_server_times_out_retryably() -> None:
    with socket.create_server((LOOPBACK, 0)) as listener:  # accepts, never greets
        port = listener.getsockname()[1]
        emitter = EmailEmitter(host=LOOPBACK, port=port, security="none", username=None,
                               password=None, sender="mma@example.org",
                               recipients=["a@example.org"], timeout_s=0.5)
        with pytest.raises(DeliveryError) as info:
            emitter.send(make_delivery(None))
    assert not info.value.permanent
    assert "timed out" in str(info.value).lower()


def test_wrong_password_is_permanent(smtp_server: SmtpServer) -> None:
    emitter = emitter_for(smtp_server, password="not-the-password")
    with pytest.raises(DeliveryError) as info:
        emitter.send(make_delivery(None))
    assert info.value.permanent
    assert "not-the-password" not in str(info.value)
    assert smtp_server.messages == []


class _RefusingHandler:
    """aiosmtpd handler answering every RCPT with a fixed reply."""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        return self.reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


@pytest.fixture
def refusing_server(request: pytest.FixtureRequest) -> Iterator[int]:
    port = free_port()
    controller = Controller(_RefusingHandler(request.param), hostname=LOOPBACK, port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.mark.parametrize(("refusing_server", "permanent"), [
    ("550 5.1.1 no such user", True),
    ("451 4.3.0 try again later", False),
], indirect=["refusing_server"])
def test_refused_recipients(refusing_server: int, permanent: bool) -> None:
    emitter = EmailEmitter(host=LOOPBACK, port=refusing_server, security="none",
                           username=None, password=None, sender="mma@example.org",
                           recipients=["a@example.org"], timeout_s=5)
    with pytest.raises(DeliveryError) as info:
        emitter.send(make_delivery(None))
    assert info.value.permanent is permanent


def test_configuration_is_checked() -> None:
    common: dict[str, Any] = {"host": LOOPBACK, "port": 25, "username": None,
                              "password": None, "sender": "mma@example.org"}
    with pytest.raises(ValueError, match="security"):
        EmailEmitter(security="tls", recipients=["a@example.org"], **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="recipient"):
        EmailEmitter(security="none", recipients=[], **common)
    with pytest.raises(ValueError, match="sender"):
        EmailEmitter(security="none", recipients=["a@example.org"],
                     **{**common, "sender": "nobody"})


def test_message_structure_without_sending(region: Region) -> None:
    msg = build_message(make_delivery(region), sender="mma@example.org",
                        recipients=["a@example.org"], png=b"\x89PNG\r\n\x1a\nfake")
    assert msg.get_content_type() == "multipart/alternative"
    types = [part.get_content_type() for part in msg.walk()]
    assert types == ["multipart/alternative", "text/plain", "multipart/related", "text/html",
                     "image/png"]


def _images(msg: Any) -> dict[str, bytes]:
    """The inline PNGs of a mail by Content-ID (without the angle brackets)."""
    return {str(part["Content-ID"]).strip("<>"): part.get_payload(decode=True)
            for part in msg.walk() if part.get_content_type() == "image/png"}


def test_mail_inlines_light_curve_and_cutout_triplet(smtp_server: SmtpServer, region: Region,
                                                     stamps: dict[str, Stamp]) -> None:
    """Region, light curve and cutouts of a real ZTF packet arrive as PNGs the HTML shows."""
    delivery = make_delivery(region)
    t0 = datetime.fromisoformat(delivery.payload["event_time"].replace("Z", "+00:00"))
    context = CandidateContext(object_pk=1, light=light_curve(t0), stamps=stamps,
                               stamps_alert_id="541443293415015009")
    emitter_for(smtp_server).send(dataclasses.replace(delivery, context=context))
    [mail] = smtp_server.wait_for(1)
    images = _images(mail.message)
    assert list(images) == ["region", "lightcurve", "cutouts"]
    for data in images.values():
        assert data.startswith(PNG_MAGIC)
        with Image.open(io.BytesIO(data)) as picture:
            assert picture.format == "PNG" and min(picture.size) > 100
    html_part = mail.message.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert 'src="cid:lightcurve"' in html and 'src="cid:cutouts"' in html


def test_mail_goes_without_pictures_that_cannot_be_drawn(smtp_server: SmtpServer) -> None:
    """Unreadable stamps, or a retraction: no light curve nor cutouts, the mail still goes."""
    delivery = make_delivery(None)
    broken = CandidateContext(object_pk=1, light=(), stamps={
        "science": Stamp("science", "fits.gz", b"not a fits file")})
    emitter_for(smtp_server).send(dataclasses.replace(delivery, context=broken))
    retraction = dataclasses.replace(make_delivery(None, kind="retraction", revision=2,
                                                   status="retracted"),
                                     context=CandidateContext(object_pk=1, light=light_curve(
                                         datetime(2026, 11, 20, tzinfo=UTC)), stamps={}))
    emitter_for(smtp_server).send(retraction)
    mails = smtp_server.wait_for(2)
    assert [_images(m.message) for m in mails] == [{}, {}]


def test_real_lvk_event_and_broker_classes_in_text_and_escaped_html(
        smtp_server: SmtpServer, corpus: Path) -> None:
    record, event = _candidate(corpus, LVK, distance_mpc={"mean": 204.3, "std": 57.9})
    payload = {**json.loads(EXAMPLE.read_text()), **record, "object_id": "ZTF26aaaaaxl",
               "classes": {"fink": {"cdsxmatch": "<script>x</script>", "rf_kn_vs_nonkn": 0.7},
                           "lasair": {"sherlock": "SN"}}}
    delivery = Delivery(outbox_id=1, channel="email", coincidence_id=payload["coincidence_id"],
                        revision=1, kind="new", payload=payload, event=event,
                        page_url="https://mma.example.org/pages/events/S230518h/index.html")
    emitter_for(smtp_server).send(delivery)
    [mail] = smtp_server.wait_for(1)
    text = flat(mail.text())
    for needle in ("Notice INITIAL",
                   "Significance FAR 3.22e-10 Hz (1 per 98.5 yr), p_astro 0.90, significant",
                   "Classification NSBH 0.86, Terrestrial 0.10, BBH 0.04, BNS 0.00",
                   "Distance 204 ± 58 Mpc", "Event 90 % area 2,010 deg²",
                   "Latest magnitude r 20.95 mag", "Peak magnitude g 20.22 mag",
                   "Broker classes fink: cdsxmatch <script>x</script>, rf_kn_vs_nonkn 0.70",
                   "lasair: sherlock SN",
                   "Event page: https://mma.example.org/pages/events/S230518h/index.html",
                   "GraceDB: https://gracedb.ligo.org/superevents/S230518h/view/",
                   "Lasair: https://lasair-ztf.lsst.ac.uk/objects/ZTF26aaaaaxl/"):
        assert needle in text, needle
    html_part = mail.message.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


OUTPUT = Path(__file__).resolve().parent / "output"


@pytest.mark.slow  # GW170817's NSIDE 1024 map (~5 s)
def test_gw170817_candidate_reaches_email_and_slack_with_its_context(
        tmp_path: Path, corpus: Path, smtp_server: SmtpServer, http_sink: HttpSink) -> None:
    """AT2017gfo against GW170817 (real notice, real 3-D map, real ZTF cutouts), through
    the database, the outbox and the real SMTP server and webhook: the messages carry the
    notice type, the FAR in Hz, the map's distance, the event page, and the mail the
    light curve and cutouts the database holds. Writes the examples in tests/output."""
    hook = http_sink.url_for("/services/T0/B0/gw")
    config = load_config(environ={
        "MMA_PATHS__STATE_DIR": str(tmp_path), "MMA_PATHS__CACHE_DIR": str(tmp_path),
        "MMA_PAGES__BASE_URL": "https://mma.example.org/pages",
        "MMA_CHANNELS__SLACK__ENABLED": "true", "MMA_SLACK_WEBHOOK_URL": hook,
        "MMA_CHANNELS__SLACK__MIN_INTERVAL_SECONDS": "0",
        "MMA_CHANNELS__EMAIL__ENABLED": "true", "MMA_CHANNELS__EMAIL__SECURITY": "none",
        "MMA_CHANNELS__EMAIL__HOST": smtp_server.host,
        "MMA_CHANNELS__EMAIL__PORT": str(smtp_server.port),
        "MMA_CHANNELS__EMAIL__RECIPIENTS": '["night-shift@example.org"]',
        **{f"MMA_CHANNELS__{c}__RULES__{k}": v for c in ("SLACK", "EMAIL") for k, v in
           (("MAX_P_CHANCE", "1.0"), ("EXCLUDE_FLAGS", "[]"))},
    }, system_file=tmp_path / "none")
    engine = make_engine(f"sqlite:///{tmp_path / 'mma.sqlite'}")
    upgrade(engine)
    skymap = (corpus / "skymaps/gw/GW170817_skymap.fits.gz").read_bytes()
    raw = (corpus / "voevent/gw/G298048-1-Initial_GW170817.xml").read_bytes()
    p = Pipeline(engine, config, fetch=lambda url: skymap)
    assert p.process(lvk_voevent, raw, origin="LVC_INITIAL").kind == "notice"
    t0 = lvk_voevent.parse(raw, topic="").event_time
    with (corpus / ZTF_PACKET).open("rb") as handle:
        packet = next(iter(fastavro.reader(handle)))
    assert isinstance(packet, dict)
    cutouts = {kind: ("fits.gz", packet[f"cutout{kind.title()}"]["stampData"])
               for kind in ("science", "template", "difference")}
    emitters = build_emitters(config)
    assert set(emitters) == {"slack", "email"}
    for i, (days, mag, band) in enumerate([(0.5, 17.3, "g"), (0.6, 17.5, "r"),
                                           (1.5, 18.2, "g")]):
        kilonova = Alert(alert_id=f"AT2017gfo-{i}", object_id="ZTF17aasdfgh", survey="ZTF",
                         ra_deg=197.450374, dec_deg=-23.381495, time=t0 + timedelta(days=days),
                         quality={"rb": 0.95, "drb": 0.99, "isdiffpos": True,
                                  "fink_cdsxmatch": "Unknown", "fink_rf_kn_vs_nonkn": 0.71},
                         broker="Fink", band=band, magnitude=mag, magnitude_err=0.05,
                         cutouts=cutouts)
        assert p.process(lvk_voevent, b"alert", origin="alert", item=kilonova).touched
        if i in (0, 2):  # the first detection is news; the next two arrive together
            assert deliver_due(engine, config, emitters) == {"sent": 2}

    first, post = http_sink.posts("/services/T0/B0/gw")
    assert first.json is not None and post.json is not None
    assert first.json["blocks"][0]["text"]["text"].startswith("🆕 New candidate: ZTF17aasdfgh")
    slack = json.dumps(post.json, ensure_ascii=False)
    new, mail = smtp_server.wait_for(2)
    assert new.subject.startswith("[mma] new candidate ZTF17aasdfgh (ZTF) for G298048")
    text = flat(mail.text())
    page = "https://mma.example.org/pages/events/G298048/index.html"
    for needle in ("INITIAL", "FAR 3.48e-12 Hz (1 per 9,110 yr)", page,
                   "https://gracedb.ligo.org/events/G298048", "peak g 17.30 mag",
                   "fink: cdsxmatch Unknown, rf_kn_vs_nonkn 0.71"):
        assert needle in slack, needle
    for needle in ("Notice INITIAL", "FAR 3.48e-12 Hz (1 per 9,110 yr)",
                   f"Event page: {page}", "Peak magnitude g 17.30 mag"):
        assert needle in text, needle
    distance = next(line for line in mail.text().splitlines() if line.startswith("Distance"))
    mean, std = (float(v) for v in distance.split()[1:4:2])
    assert 30 < mean < 50 and 5 < std < 20  # GWTC-1: 40 (+8 -14) Mpc
    assert f"distance {mean:.0f} ± {std:.0f} Mpc" in slack
    images = _images(mail.message)
    assert list(images) == ["region", "lightcurve", "cutouts"]
    assert all(data.startswith(PNG_MAGIC) for data in images.values())

    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "slack-example.json").write_text(  # the first message, as on-call sees it
        json.dumps(first.json, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    headers = "".join(f"{key}: {value}\n" for key, value in new.message.items()
                      if key.lower() not in ("content-type", "mime-version"))
    (OUTPUT / "email-example.txt").write_text(f"{headers}\n{new.text()}", encoding="utf-8")
