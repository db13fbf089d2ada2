"""IceCube: JSON track alerts, the LVK track search and real AMON VOEvents (independent reads)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from astropy.time import Time

from mma.errors import HostileMessage, Ignored, InvalidValue, MalformedMessage, MissingField
from mma.handlers import icecube
from tests.conftest import CORPUS

JSON_DIR = CORPUS / "gcn-json/gcn-schema/icecube"
TRACK = JSON_DIR / "single_neutrino_alerts.gold_bronze_track_alerts.example.json"
NU_SEARCH = JSON_DIR / "lvk_nu_track_search.example.json"
AMON = sorted((CORPUS / "voevent/icecube-amon").glob("*.xml"))


def _utc(text: str) -> datetime:
    return Time(text.rstrip("Z"), format="isot", scale="utc").to_datetime(timezone=UTC)


def _voevent(path: Path) -> dict[str, Any]:
    """An independent read of an AMON packet with ElementTree (namespace-stripped)."""
    root = ET.fromstring(path.read_bytes())
    params = {p.get("name"): p.get("value") for p in root.iter("Param")}
    descriptions = {p.get("name"): (p.findtext("Description") or "") for p in root.iter("Param")}
    return {
        "ivorn": root.get("ivorn"), "role": root.get("role"), "params": params,
        "descriptions": descriptions, "date": root.findtext("Who/Date"),
        "isotime": root.findtext(".//ISOTime"), "ra": float(root.findtext(".//C1") or "nan"),
        "dec": float(root.findtext(".//C2") or "nan"),
        "radius": float(root.findtext(".//Error2Radius") or "nan"),
    }


def test_corpus_is_present() -> None:
    assert len(AMON) == 5


@pytest.mark.parametrize("path", AMON, ids=lambda p: p.name)
def test_every_amon_voevent_parses(path: Path) -> None:
    raw = path.read_bytes()
    ref = _voevent(path)
    assert icecube.sniff(raw)
    notice = icecube.parse(raw, topic="gcn.classic.voevent.ICECUBE_ASTROTRACK_GOLD")
    p = ref["params"]
    assert notice.event_id == f"IceCube-{int(p['run_id'])}_{int(p['event_id'])}"
    kind = {"173": "ICECUBE_ASTROTRACK_GOLD", "174": "ICECUBE_ASTROTRACK_BRONZE",
            "176": "ICECUBE_CASCADE"}[p["Packet_Type"]]
    assert notice.notice_type == kind
    assert notice.messenger == "neutrino" and notice.instrument == "IceCube"
    assert notice.event_class == (
        "neutrino.cascade" if kind == "ICECUBE_CASCADE" else "neutrino.track")
    assert abs(notice.event_time - _utc(ref["isotime"])).total_seconds() < 1e-3
    assert notice.issued_time == _utc(ref["date"])
    assert not notice.test and not notice.retraction
    region = notice.region
    assert region is not None and region.kind == "circle"
    assert (region.ra_deg, region.dec_deg, region.radius_deg) == (ref["ra"], ref["dec"],
                                                                  ref["radius"])
    assert ref["radius"] == float(p["src_error_90"]) and region.containment == 0.9
    assert "90% containment" in ref["descriptions"]["src_error_90"]
    stat_only = "statistical only" in ref["descriptions"]["src_error_90"]
    assert ("statistical_error_only" in notice.flags) is stat_only
    assert stat_only is (kind != "ICECUBE_CASCADE")  # tracks: stat only; cascades: stat+sys
    assert notice.properties["src_error_50"] == float(p["src_error_50"])
    assert region.skymap_url == p.get("skymap_fits")
    assert notice.aliases == ((p["event_name"],) if "event_name" in p else ())


def test_track_alert_json() -> None:
    raw = TRACK.read_bytes()
    doc = json.loads(raw)
    assert icecube.sniff(raw)
    notice = icecube.parse(raw, topic="gcn.notices.icecube.gold_bronze_track_alerts")
    run, event = doc["id"][0].split("_")
    assert notice.event_id == f"IceCube-{int(run)}_{int(event)}"
    assert notice.aliases == tuple(doc["event_name"])
    assert notice.event_time == _utc(doc["trigger_time"])
    assert notice.issued_time == _utc(doc["alert_datetime"])
    region = notice.region
    assert region is not None and region.kind == "circle"
    assert region.radius_deg == doc["ra_dec_error"]
    assert region.containment == doc["containment_probability"]
    assert region.skymap_url == doc["healpix_url"]  # usable at once, upgraded by the map
    assert doc["systematic_included"] is False and "statistical_error_only" in notice.flags
    assert notice.properties["pipeline"] == doc["pipeline"]
    assert doc["alert_topology"] == "Track" and notice.event_class == "neutrino.track"
    cascade = icecube.parse(_track(alert_topology="Cascade"), topic="")
    assert cascade.event_class == "neutrino.cascade"


def test_test_topic_marks_tests() -> None:
    notice = icecube.parse(TRACK.read_bytes(),
                           topic="gcn.notices.icecube.test.gold_bronze_track_alerts")
    assert notice.test and "test_topic" in notice.flags


def test_lvk_track_search_keeps_most_significant_neutrino() -> None:
    raw = NU_SEARCH.read_bytes()
    doc = json.loads(raw)
    notice = icecube.parse(raw, topic="gcn.notices.icecube.lvk_nu_track_search")
    events = doc["coincident_events"]
    best = min(events, key=lambda e: e["event_pval_generic"])
    assert notice.event_id == f"IceCube-{best['id'][0]}"
    assert notice.event_time == _utc(doc["trigger_time"]) + timedelta(seconds=best["event_dt"])
    assert notice.issued_time == _utc(doc["alert_datetime"])
    loc = best["localization"]
    region = notice.region
    assert region is not None and (region.ra_deg, region.dec_deg, region.radius_deg) == (
        loc["ra"], loc["dec"], loc["ra_dec_error"])
    # The GW superevent is a property, never an alias (that would merge into the GW event).
    assert notice.aliases == () and notice.properties["gw_superevent_id"] == doc["ref_ID"]
    assert {"gw_followup", "other_coincident_neutrinos"} <= set(notice.flags)
    assert notice.event_class == "neutrino.gw_followup"  # the GW's window, not a track's
    others = notice.properties["other_neutrinos"]
    assert [o["id"] for o in others] == [e["id"][0] for e in events if e is not best]
    assert notice.properties["most_probable_direction"] == doc["most_probable_direction"]


def test_lvk_track_search_without_neutrinos_is_ignored() -> None:
    doc = json.loads(NU_SEARCH.read_bytes())
    doc.update(coincident_events=[], n_events_coincident=0)
    with pytest.raises(Ignored, match=r"S230914ak.*no coincident neutrino"):
        icecube.parse(json.dumps(doc).encode(), topic="")


def _amon(old: bytes, new: bytes) -> bytes:
    raw = AMON[0].read_bytes()
    assert old in raw
    return raw.replace(old, new)


def test_amon_test_and_retraction_bits() -> None:
    test = icecube.parse(_amon(b'"Test"           value="false"', b'"Test" value="true"'),
                         topic="")
    assert test.test and "test" in test.flags
    gone = icecube.parse(_amon(b'"Retraction"     value="false"', b'"Retraction" value="true"'),
                         topic="")
    assert gone.retraction and gone.region is None


def _track(**changes: Any) -> bytes:
    doc = json.loads(TRACK.read_bytes())
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (_track(id=["137840-57034692"]), InvalidValue, "<run>_<event>"),
        (_track(trigger_time=None), MissingField, "trigger_time"),
        (_track(containment_probability=1.5), InvalidValue, "containment_probability"),
        (_track(dec=95), InvalidValue, "dec 95"),
        (_track(ra_dec_error=[0.5, 0.6, 0]), InvalidValue, "semi-minor"),
        (TRACK.read_bytes().replace(b"345.82", b"NaN"), MalformedMessage, "NaN"),
        (_amon(b"<C2>22.1648</C2>", b"<C2>95</C2>"), InvalidValue, "Dec 95"),
        (_amon(b"<C1>273.4834</C1>", b"<C1>NaN</C1>"), InvalidValue, "C1"),
        (_amon(b'name="run_id"       value="136973"', b'name="run_id" value="x"'),
         InvalidValue, "run_id"),
        (_amon(b"<ISOTime>2022-08-22T20:26:30.03</ISOTime>", b""), MissingField, "ISOTime"),
        (_amon(b'value="174"', b'value="173"'), InvalidValue, "contradicts"),
        (_amon(b"<?xml version = '1.0' encoding = 'UTF-8'?>",
               b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>'), HostileMessage, "DOCTYPE"),
    ],
)
def test_broken_notices(raw: bytes, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        icecube.parse(raw, topic="")


def test_sniff_rejects_other_voevents() -> None:
    assert not icecube.sniff((CORPUS / "voevent/snews/snews_gcn.xml").read_bytes())
    assert not icecube.sniff(b"<VOEvent/>")


@pytest.mark.parametrize(("edit", "words"), [
    ({"trigger_time": "9999-12-31T23:59:59Z"}, "trigger_time 9999-12-31T23:59:59+00:00 is in "
                                                "the future"),
    ({"trigger_time": "2001-01-01T00:00:00Z"}, "trigger_time 2001-01-01T00:00:00+00:00 is before "
                                                "2011-05-13"),
    ({"event_dt": 1e300}, "coincident_events[0].event_dt 1e+300 s is outside ±1000 s"),
    ({"event_dt": -1001.0}, "coincident_events[0].event_dt -1001.0 s is outside ±1000 s"),
])
def test_lvk_track_search_times_are_checked_before_the_arithmetic(edit: dict[str, Any],
                                                                  words: str) -> None:
    """Year 9999 plus 12.9 s, or 1e300 s after the GW, once overflowed datetime."""
    doc = json.loads(NU_SEARCH.read_bytes())
    if "event_dt" in edit:
        doc["coincident_events"][0]["event_dt"] = edit["event_dt"]
    else:
        doc.update(edit)
    with pytest.raises(InvalidValue) as info:
        icecube.parse(json.dumps(doc).encode(), topic="")
    assert words in str(info.value)
