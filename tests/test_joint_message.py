"""Messages about event x event coincidences (``coincidence_type = "event-event"``) on
Slack, email and digests, from records built on real notices of the corpus.

The pairs: GW170817 (LVC Initial VOEvent of G298048) x GRB 170817A (Fermi GBM Gnd_Pos
VOEvent, trigger 524666471), with the computed numbers of the record format's own
example; and S190425z (LVC Initial VOEvent) x an IceCube BRONZE track (AMON VOEvent)
whose time is moved to 320 s after the merger (the real neutrino came three years
later): the only value not as notified. Hostile variants are derived from these.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Engine, insert

from mma.db.schema import coincidences, events
from mma.emitters import Delivery, MessageKind
from mma.emitters.email import EmailEmitter, build_digest, build_message
from mma.emitters.joint_message import (
    clean,
    counterpart,
    far_per_years,
    is_event_event,
    joint_digest_text,
    joint_facts,
    joint_title,
)
from mma.emitters.slack import slack_digest, slack_message
from mma.handlers import fermi_gbm, icecube, lvk_voevent
from mma.models import Notice
from tests.conftest import CORPUS
from tests.test_digest import _delivery as candidate_delivery

GW170817 = (lvk_voevent, "voevent/gw/G298048-1-Initial_GW170817.xml")
GRB170817A = (fermi_gbm, "voevent/fermi-gbm/GRB170817A_GBM_Gnd_Pos_524666471.xml")
S190425Z = (lvk_voevent, "voevent/gw/S190425z-1-Initial_GW190425.xml")
ICECUBE = (icecube, "voevent/icecube-amon/AMON_ICECUBE_BRONZE_2022-08-22.xml")
SENDER = "mma daemon <mma@example.org>"
HOSTILE_ID = "<script>alert(1)</script>&" + "S" * 10_000


def _notice(source: tuple[Any, str]) -> Notice:
    """A corpus notice parsed by its own handler (as the daemon stores it)."""
    handler, name = source
    notice = handler.parse((CORPUS / name).read_bytes(), topic="")
    assert isinstance(notice, Notice)
    return notice


def _side(n: Notice, region_version: int | None = 1) -> dict[str, Any]:
    """One event of the pair as the record carries it (its FAR [Hz] as candidates do)."""
    far = n.properties.get("far")
    return {"event_id": n.event_id, "aliases": list(n.aliases), "messenger": n.messenger,
            "event_class": n.event_class, "instrument": n.instrument,
            "event_time": n.event_time.isoformat().replace("+00:00", "Z"),
            "significance": {"far_hz": far} if far is not None else {},
            "region_version": region_version}


def _record(primary: Notice, other: Notice, **fields: Any) -> dict[str, Any]:
    """An event-event record of the pair (dt from the notices' t0)."""
    dt = (other.event_time - primary.event_time).total_seconds()
    record = {"schema_version": 2, "coincidence_type": "event-event",
              "coincidence_id": "6f1c1f6e-1c0a-5a8e-9a43-7d2f4b6c9e01", "revision": 1,
              "kind": "new", "status": "active", "rank": None, **_side(primary),
              "other": _side(other, 2), "dt_s": dt, "flags": [], "changes": []}
    record.update(fields)
    return record


def gw170817_grb() -> dict[str, Any]:
    """GW170817 x GRB 170817A, with the numbers of the record format's example."""
    return _record(_notice(GW170817), _notice(GRB170817A), window_s=[-1.0, 5.0],
                   window_source="RAVEN CBC x GRB (Urban 2016)", overlap_integral=32.5,
                   overlap_method="skymap", temporal_far_hz=1.2e-20,
                   space_time_far_hz=3.7e-22, far_method="untargeted",
                   external_rate_hz=1.03e-5, joint_event_id="G298048+FermiGBM-524666471")


def gw_neutrino() -> dict[str, Any]:
    """S190425z x an IceCube BRONZE track moved to 320 s after the merger."""
    gw, nu = _notice(S190425Z), _notice(ICECUBE)
    nu = replace(nu, event_time=gw.event_time + timedelta(seconds=320))
    return _record(gw, nu, window_s=[-500.0, 500.0], window_source="LLAMA GW x neutrino",
                   overlap_integral=None, overlap_method=None,
                   temporal_far_hz=2.9e-17, space_time_far_hz=None, far_method="targeted",
                   joint_event_id=None)


def store_pair(engine: Engine, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store GW170817 and GRB 170817A as events and their pair as an event x event row
    (what the correlator stores: no object, alert or score); the record stored."""
    record = record or gw170817_grb()
    pks = []
    with engine.begin() as conn:
        for source in (GW170817, GRB170817A):
            n = _notice(source)
            key = conn.execute(insert(events).values(
                event_id=n.event_id, messenger=n.messenger, event_class=n.event_class,
                instrument=n.instrument, event_time=n.event_time, status="active",
                test=False, properties=dict(n.properties), flags=[])).inserted_primary_key
            assert key is not None
            pks.append(key[0])
        conn.execute(insert(coincidences).values(
            coincidence_id=record["coincidence_id"], event_pk=pks[0], other_event_pk=pks[1],
            status="active", vetoed=False, revision=1, payload=record))
    return record


def delivery(record: dict[str, Any], kind: MessageKind = "new", revision: int = 1,
             channel: str = "slack") -> Delivery:
    return Delivery(outbox_id=7, channel=channel,
                    coincidence_id=str(record.get("coincidence_id", "c")), revision=revision,
                    kind=kind, payload=record,
                    event={"properties": {}, "test": False})


def _texts(message: dict[str, Any]) -> list[str]:
    """Every text of a Block Kit message."""
    out = []
    for block in message["blocks"]:
        out += [f["text"] for f in block.get("fields", ())]
        out += [e["text"] for e in block.get("elements", ()) if isinstance(e.get("text"), str)]
        if isinstance(block.get("text"), dict):
            out.append(block["text"]["text"])
    return out


# -- facts and Slack -----------------------------------------------------------------------


def test_facts_of_gw170817_and_grb170817a() -> None:
    rows = dict(joint_facts(gw170817_grb()))
    assert rows["GW event"] == "G298048"
    assert rows["GW class / instrument"] == "gw.cbc / LVK"
    assert rows["GW time t0 (UTC)"] == "2017-08-17T12:41:04.445710Z"
    assert rows["GW significance"] == "FAR 3.48e-12 Hz (1 per 9,110 yr)"
    assert rows["GRB event"] == "FermiGBM-524666471"
    assert rows["GRB class / instrument"] == "grb / Fermi-GBM"
    assert rows["Δt (other − primary)"] == "+2.0 s: GRB 2.0 s after GW"
    assert rows["Window"] == "[-1.0, +5.0] s (RAVEN CBC x GRB (Urban 2016))"
    assert rows["Sky overlap integral I"] == "32.5 (skymap)"
    assert rows["Temporal FAR"] == "1.2e-20 Hz (1 per 2.64e+12 yr)"
    assert rows["Space-time FAR"] == "3.7e-22 Hz (1 per 8.56e+13 yr)"
    assert rows["FAR method"] == "untargeted (R_ext 1.03e-05 Hz)"
    assert rows["Joint event"] == "G298048+FermiGBM-524666471"


def test_gw_neutrino_without_overlap_says_why() -> None:
    record = gw_neutrino()
    rows = dict(joint_facts(record))
    assert rows["neutrino event"] == "IceCube-136973_28816141"
    assert rows["neutrino significance"].startswith("FAR 6.35e-08 Hz (2.01 per yr)")
    assert rows["Δt (other − primary)"] == "+320.0 s: neutrino 320.0 s after GW"
    assert rows["Sky overlap integral I"].startswith("not computed")
    assert rows["Space-time FAR"] == "n/a (no overlap integral)"
    assert rows["Joint event"] == "none"
    assert joint_digest_text(record) == \
        "S190425z x IceCube-136973_28816141: temporal FAR 1 per 1.09e+09 yr, dt +320.0 s"
    record["dt_s"] = -7200.0
    assert dict(joint_facts(record))["Δt (other − primary)"] == \
        "-7200.0 s (-2.00 h): neutrino 7200.0 s before GW"


def test_slack_message_of_a_pair() -> None:
    message = slack_message(delivery(gw170817_grb()))
    assert message["blocks"][0]["text"]["text"] == \
        "🔗 New GW x GRB coincidence: G298048 x FermiGBM-524666471"
    texts = _texts(message)
    assert texts[1].startswith("*GW event*\nG298048\ngw.cbc / LVK\n2017-08-17T12:41:04")
    assert texts[2].startswith("*GRB event*\nFermiGBM-524666471\ngrb / Fermi-GBM")
    assert "*Space-time FAR*\n3.7e-22 Hz (1 per 8.56e+13 yr)" in texts
    assert "*Δt (other − primary)*\n+2.0 s: GRB 2.0 s after GW" in texts
    assert not any("Credible level" in t or "P_chance" in t for t in texts)
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    assert {e["text"]["text"]: e["url"] for e in actions["elements"]} == {
        "GRB GCN notices": "https://gcn.gsfc.nasa.gov/other/524666471.fermi"}
    assert "GRB 2.0 s after GW" in message["text"]


@pytest.mark.parametrize(("kind", "title"), [
    ("update", "🔄 Updated GW x GRB coincidence: G298048 x FermiGBM-524666471"),
    ("retraction", "❌ Retracted GW x GRB coincidence: G298048 x FermiGBM-524666471")])
def test_update_and_retraction(kind: MessageKind, title: str) -> None:
    record = gw170817_grb() | {"kind": kind, "changes": ["overlap_integral",
                                                          "space_time_far_hz"]}
    assert joint_title(record) == title
    message = slack_message(delivery(record, kind, revision=2))
    assert message["blocks"][0]["text"]["text"] == title
    assert "*Changed: overlap_integral, space_time_far_hz*" in _texts(message)


# -- email ---------------------------------------------------------------------------------


def test_email_text_and_html() -> None:
    msg = build_message(delivery(gw170817_grb(), channel="email"), sender=SENDER,
                        recipients=["a@example.org"])
    assert msg["Subject"] == ("[mma] new GW x GRB coincidence G298048 x FermiGBM-524666471 "
                              "(dt +2.0 s, space-time FAR 1 per 8.56e+13 yr)")
    text, html_part = (part.get_content() for part in msg.iter_parts())
    for line in ("Revision", "GRB event", "FermiGBM-524666471", "GRB 2.0 s after GW",
                 "3.7e-22 Hz (1 per 8.56e+13 yr)", "RAVEN CBC x GRB (Urban 2016)",
                 "GRB GCN notices: https://gcn.gsfc.nasa.gov/other/524666471.fermi"):
        assert line in text
    assert "Credible level" not in text and "Object" not in text
    assert "<td>32.5 (skymap)</td>" in html_part
    assert "<th" in html_part and "RAVEN CBC x GRB (Urban 2016)" in html_part


def test_email_draws_no_picture_of_a_pair(caplog: pytest.LogCaptureFixture) -> None:
    """A region on the delivery draws nothing (no object to mark), and says nothing."""
    emitter = EmailEmitter(host="127.0.0.1", port=25, security="none", username=None,
                           password=None, sender=SENDER, recipients=["a@example.org"])
    with_region = replace(delivery(gw170817_grb(), channel="email"), region=cast(Any, object()))
    with caplog.at_level(logging.WARNING):
        assert emitter._picture(with_region) is None
        assert emitter._context_pictures(with_region) == []
    assert not caplog.records


# -- digests -------------------------------------------------------------------------------


def _mixed() -> list[Delivery]:
    """Two candidates (P_chance 0.2 and 0.01), a pair and a retracted pair, mixed up."""
    retracted = gw_neutrino() | {"kind": "retraction", "coincidence_id": "retracted-pair"}
    return [candidate_delivery(2, "new", 0.2, "ZTF26aaaanew"),
            delivery(retracted, "retraction", 2),
            delivery(gw170817_grb()),
            candidate_delivery(3, "new", 0.01, "ZTF26aaaaupd")]


def test_slack_digest_lists_pairs_first() -> None:
    message = slack_digest(_mixed())
    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    assert sections[0] == ("*🆕 G298048 x FermiGBM-524666471: space-time FAR 1 per "
                           "8.56e+13 yr, dt +2.0 s* (new, r1)")
    assert "ZTF26aaaaupd" in sections[1] and "ZTF26aaaanew" in sections[2]
    assert sections[3].startswith("*❌ S190425z x IceCube-136973_28816141: temporal FAR")


def test_email_digest_lists_pairs_first() -> None:
    msg = build_digest(_mixed(), sender=SENDER, recipients=["a@example.org"])
    text, html_part = (part.get_content() for part in msg.iter_parts())
    lines = [line for line in text.splitlines() if line[:2] in ("1.", "2.", "3.", "4.")]
    assert lines[0] == ("1. new GW x GRB coincidence G298048 x FermiGBM-524666471: "
                        "space-time FAR 1 per 8.56e+13 yr, dt +2.0 s (r1) "
                        "[6f1c1f6e-1c0a-5a8e-9a43-7d2f4b6c9e01]")
    assert "ZTF26aaaaupd" in lines[1] and "ZTF26aaaanew" in lines[2]
    assert lines[3].startswith("4. RETRACTED GW x neutrino coincidence S190425z x ")
    assert "<td style=\"padding-right:1em\">+2.0 s</td>" in html_part


# -- hostile records -----------------------------------------------------------------------


def _hostile() -> list[dict[str, Any]]:
    """Variants of the GW170817 pair: NaN and infinite FARs, no overlap, a 10 kB event id
    with markup, no ``other`` or a wrong one, wrong types everywhere."""
    base = gw170817_grb()
    return [
        base | {"temporal_far_hz": math.nan, "space_time_far_hz": math.inf, "dt_s": math.nan},
        base | {"overlap_integral": None, "space_time_far_hz": None, "window_s": None},
        base | {"event_id": HOSTILE_ID, "aliases": [HOSTILE_ID] * 50,
                "other": base["other"] | {"event_id": HOSTILE_ID, "instrument": "<b>\n"},
                "window_source": "x\x1b[2J\u202e" + "<i>" * 3000, "flags": ["<script>"] * 50},
        {k: v for k, v in base.items() if k != "other"},
        base | {"other": "FermiGBM-524666471", "window_s": ["a", 1], "changes": "all",
                "significance": "high", "external_rate_hz": True, "flags": "test"},
        {"coincidence_type": "event-event"},
    ]


@pytest.mark.parametrize("record", _hostile())
def test_hostile_records_render_escaped_everywhere(record: dict[str, Any]) -> None:
    kinds: tuple[MessageKind, ...] = ("new", "update", "retraction")
    for kind in kinds:
        d = delivery(record, kind)
        message = slack_message(d)
        json.dumps(message, allow_nan=False)  # what SlackEmitter sends
        # mrkdwn and the fallback escaped; the header is plain_text (shown as written)
        mrkdwn = " ".join([*_texts(message)[1:], message["text"]])
        assert "<script" not in mrkdwn and "<b>" not in mrkdwn and "\x1b" not in mrkdwn
        assert len(message["blocks"][0]["text"]["text"]) <= 150
        assert all(len(t) <= 2000 for t in _texts(message))
        assert len(message["text"]) < 40_000
        msg = build_message(replace(d, coincidence_id="hostile"), sender=SENDER,
                            recipients=["a@example.org"])
        assert len(msg["Subject"]) < 400 and "\n" not in msg["Subject"]
        html_part = list(msg.iter_parts())[1].get_content()
        assert "<script" not in html_part
    text = slack_digest([delivery(record)])["text"]
    assert "<script" not in text
    build_digest([delivery(record)], sender=SENDER, recipients=["a@example.org"])


def test_missing_other_reads_as_unknown() -> None:
    record = {k: v for k, v in gw170817_grb().items() if k != "other"}
    assert joint_title(record) == "🔗 New GW x ? coincidence: G298048 x ?"
    assert joint_digest_text(record).endswith("space-time FAR 1 per 8.56e+13 yr, dt +2.0 s")


def test_helpers() -> None:
    assert is_event_event(gw170817_grb())
    assert not is_event_event({"coincidence_type": "candidate"})
    assert not is_event_event({}) and not is_event_event("event-event")
    assert clean("a\nb\x1b[2J\u202ec\t d") == "ab[2Jc d"
    assert clean(HOSTILE_ID, 20) == "<script>alert(1)</s…"
    assert clean(None) == clean({}) == clean("  ") == "?"
    assert far_per_years(3.7e-22) == "1 per 8.56e+13 yr"
    assert far_per_years(6.354729130225365e-08) == "2.01 per yr"
    assert far_per_years(math.nan) == far_per_years(-1.0) == far_per_years("1") == "n/a"
    record = gw170817_grb()
    other, dt = counterpart(record, primary=False)
    assert other["event_id"] == "G298048" and dt == pytest.approx(-2.024290)
    other, dt = counterpart(record, primary=True)
    assert other["event_id"] == "FermiGBM-524666471" and dt == pytest.approx(2.024290)


def test_a_10_kb_event_id_with_markup_is_cut_and_escaped() -> None:
    base = gw170817_grb()
    record = base | {"event_id": HOSTILE_ID, "other": base["other"] | {"event_id": HOSTILE_ID}}
    message = slack_message(delivery(record))
    header = message["blocks"][0]["text"]["text"]
    assert header.endswith("… x <script>alert(1)</script>&SSSSSSSSSSSS…")
    assert len(message["blocks"][0]["text"]["text"]) == 150
    gw_field = _texts(message)[1]
    assert gw_field.startswith("*GW event*\n&lt;script&gt;alert(1)&lt;/script&gt;&amp;SSS")
    assert "S" * 80 not in gw_field  # cut to MAX_ID characters
    msg = build_message(delivery(record, channel="email"), sender=SENDER,
                        recipients=["a@example.org"])
    html_part = list(msg.iter_parts())[1].get_content()
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;&amp;SSS" in html_part
