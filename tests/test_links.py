"""Links and event facts of messages, from real notices of the corpus (parsed by mma's
own handlers, as the daemon stores them): FAR units per handler, LVK classification,
GCN trigger pages for the corpus GRBs and neutrinos, object pages, the event page."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from mma.emitters.event_facts import (
    SECONDS_PER_YEAR,
    classes_lines,
    event_rows,
    far_hz,
    significance_text,
)
from mma.emitters.links import event_links, message_links, object_links, page_url
from mma.models import Notice
from mma.page import safe_name
from mma.registry import Registry

LVK = "gcn-json/igwn-gwalert/S230518h-initial.json"
LVK_NOISE = "gcn-json/igwn-gwalert/O4-2024-01/S240114b-preliminary-1.json"
AMON_BRONZE = "voevent/icecube-amon/AMON_ICECUBE_BRONZE_2022-08-22.xml"
AMON_CASCADE = "voevent/icecube-amon/finkmm_icecube_voevent_number=825.xml"
ICECUBE_JSON = ("gcn-json/gcn-schema/icecube/"
                "single_neutrino_alerts.gold_bronze_track_alerts.example.json")
GBM_170817 = "voevent/fermi-gbm/GRB170817A_GBM_Gnd_Pos_524666471.xml"
GBM_2024 = "voevent/gcn-2024-01-fink-mm/GBM_Gnd_Pos_2024-01-12T173725.12_726773850_57-268.xml"
BAT_2024 = "voevent/gcn-2024-01-fink-mm/BAT_GRB_Pos_1208389-262.xml"


def _notice(corpus: Path, name: str) -> Notice:
    raw = (corpus / name).read_bytes()
    notice = Registry().detect(raw).parse(raw, topic="")
    assert isinstance(notice, Notice)
    return notice


def _candidate(corpus: Path, name: str, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(record, event extras) of a ZTF candidate of the notice's event, as the outbox has them."""
    n = _notice(corpus, name)
    props = dict(n.properties)
    # What mma.match.candidate.significance writes: ``far`` [Hz] (AMON's handler converts).
    far = props.get("far")
    payload = {"event_id": n.event_id, "aliases": list(n.aliases), "messenger": n.messenger,
               "event_class": n.event_class, "instrument": n.instrument,
               "significance": {"far_hz": far, "p_astro": props.get("p_astro"),
                                "significant": props.get("significant"),
                                "signalness": props.get("signalness")},
               "object_id": "ZTF24aacgsfl", "survey": "ZTF", "ra": 10.5, "dec": -20.25}
    event = {"properties": props, "notice_type": n.notice_type, "area90_deg2": 2010.0, **extra}
    return payload, event


def test_lvk_far_is_in_hz_with_classification_and_p_astro(corpus: Path) -> None:
    payload, event = _candidate(corpus, LVK, distance_mpc={"mean": 204.3, "std": 57.9})
    rate, per_year = far_hz(payload, event) or (math.nan, True)
    assert rate == pytest.approx(3.218261352069347e-10) and not per_year
    rows = dict(event_rows(payload, event))
    assert rows["Notice"] == "INITIAL"
    assert rows["Significance"] == "FAR 3.22e-10 Hz (1 per 98.5 yr), p_astro 0.90, significant"
    assert rows["Classification"] == "NSBH 0.86, Terrestrial 0.10, BBH 0.04, BNS 0.00"
    assert rows["Source properties"] == "HasNS 1.00, HasRemnant 0.00, HasMassGap 0.00"
    assert rows["Distance"] == "204 ± 58 Mpc"
    assert rows["90 % area"] == "2,010 deg²"
    links = dict(event_links(payload, event))
    assert links["GraceDB"] == "https://gracedb.ligo.org/superevents/S230518h/view/"


def test_a_noisy_lvk_rate_reads_per_year_and_not_significant(corpus: Path) -> None:
    payload, event = _candidate(corpus, LVK_NOISE)
    text = significance_text(payload, event) or ""
    assert text.startswith("FAR 1.4e-05 Hz (441 per yr), p_astro 0.00")
    assert text.endswith("not significant")


def test_icecube_amon_far_is_per_year_not_hz(corpus: Path) -> None:
    """AMON VOEvents state FAR in yr⁻¹ (2.0054): the handler keeps it and adds ``far`` in
    Hz, which the record's significance.far_hz carries; messages show it per year."""
    payload, event = _candidate(corpus, AMON_BRONZE)
    assert payload["significance"]["far_hz"] == pytest.approx(2.0054 / SECONDS_PER_YEAR)
    rate, per_year = far_hz(payload, event) or (math.nan, False)
    assert per_year and rate == pytest.approx(2.0054 / SECONDS_PER_YEAR)
    text = significance_text(payload, event) or ""
    assert text.startswith("FAR 2.01 per yr (6.35e-08 Hz)")
    assert "signalness 0.38" in text and "2.01 Hz" not in text
    assert dict(event_rows(payload, event))["Notice"] == "ICECUBE_ASTROTRACK_BRONZE"
    assert dict(event_links(payload, event))["GCN notice"] == \
        "https://gcn.gsfc.nasa.gov/notices_amon_g_b/136973_28816141.amon"


def test_icecube_json_far_is_in_hz(corpus: Path) -> None:
    payload, event = _candidate(corpus, ICECUBE_JSON)
    text = significance_text(payload, event) or ""
    assert text.startswith("FAR 8.03e-08 Hz (2.53 per yr), p_astro 0.34")
    links = dict(event_links(payload, event))
    assert links["GCN Circulars"] == "https://gcn.nasa.gov/circulars?query=IceCube-230416A"
    assert "GCN notice" not in links  # no AMON run/event page for the JSON notices


def test_icecube_cascade_links_its_amon_page(corpus: Path) -> None:
    payload, event = _candidate(corpus, AMON_CASCADE)
    links = dict(event_links(payload, event))
    assert links["GCN notice"] == \
        "https://gcn.gsfc.nasa.gov/notices_amon_icecube_cascade/136889_25590129.amon"
    assert links["GCN Circulars"] == \
        "https://gcn.nasa.gov/circulars?query=IceCubeCascade-220801a"


@pytest.mark.parametrize(("name", "url"), [
    (GBM_170817, "https://gcn.gsfc.nasa.gov/other/524666471.fermi"),
    (GBM_2024, "https://gcn.gsfc.nasa.gov/other/726773850.fermi"),
    (BAT_2024, "https://gcn.gsfc.nasa.gov/other/1208389.swift"),
])
def test_corpus_grbs_link_their_gcn_trigger_page(corpus: Path, name: str, url: str) -> None:
    payload, event = _candidate(corpus, name)
    links = dict(event_links(payload, event))
    assert links["GCN notices"] == url
    assert "GraceDB" not in links


def test_gbm_significance_is_in_sigma_and_swift_names_its_grb(corpus: Path) -> None:
    payload, event = _candidate(corpus, GBM_170817)
    assert significance_text(payload, event) == "6.0 σ"
    assert dict(event_rows(payload, event))["Notice"] == "GBM_Gnd_Pos"
    payload, event = _candidate(corpus, BAT_2024)
    assert dict(event_links(payload, event))["GCN Circulars"] == \
        "https://gcn.nasa.gov/circulars?query=GRB+240112"


def test_object_links_for_ztf_and_none_for_hostile_ids() -> None:
    payload = {"object_id": "ZTF24aacgsfl", "survey": "ZTF", "ra": 10.5, "dec": -20.25}
    assert [label for label, _ in object_links(payload)] == \
        ["TNS", "Fink", "ALeRCE", "Lasair"]
    assert dict(object_links(payload))["Lasair"] == \
        "https://lasair-ztf.lsst.ac.uk/objects/ZTF24aacgsfl/"
    assert dict(object_links(payload))["TNS"] == ("https://www.wis-tns.org/search?ra=10.500000"
                                                  "&decl=-20.250000&radius=10&coords_unit=arcsec")
    hostile = {"object_id": "ZTF24aacgsfl/../x", "survey": "ZTF", "ra": float("nan"),
               "dec": 1.0}
    assert object_links(hostile) == []


def test_hostile_event_ids_make_no_links_and_a_safe_page() -> None:
    payload = {"event_id": "S240114b\"><script>", "messenger": "gw", "instrument": "Swift-BAT",
               "aliases": ["GRB 240112<b>"]}
    event = {"properties": {"urls": {"gracedb": "javascript:alert(1)"},
                            "eventpage": "https://gracedb.ligo.org.evil.example/x",
                            "trigger_id": "12; rm -rf", "data_archive_page": "http://x"}}
    assert event_links(payload, event) == []
    assert page_url("https://mma.example.org/pages/", payload["event_id"]) == \
        "https://mma.example.org/pages/events/S240114b___script_/index.html"
    assert page_url("", "S240114b") is None


def test_every_link_is_https_and_the_event_page_comes_first(corpus: Path) -> None:
    for name in (LVK, AMON_BRONZE, AMON_CASCADE, ICECUBE_JSON, GBM_170817, BAT_2024):
        payload, event = _candidate(corpus, name)
        links = message_links(payload, event, page_url("https://m.example/p", name))
        assert links[0][0] == "Event page"
        assert all(url.startswith("https://") for _, url in links), links


def test_broker_classes_one_line_per_broker() -> None:
    payload = {"classes": {
        "fink": {"cdsxmatch": "QSO", "snn_sn_vs_all": 0.1, "roid": 0, "mulens": None,
                 "nested": {"x": 1}},
        "lasair": {"sherlock": "VS"},
        "antares": {"tags": ["nuclear", "in_m31", "young", "other"]},
        "ampel": {"classification": {"Parsnip/elasticc": {"SNII": 0.1, "SNIa": 0.8,
                                                           "KN": 0.05, "AGN": 0.05}}},
        "babamul": {}, "odd": "not a table"}}
    assert classes_lines(payload) == [
        "fink: cdsxmatch QSO, snn_sn_vs_all 0.10, roid 0.00, nested x 1.00",
        "lasair: sherlock VS",
        "antares: tags nuclear/in_m31/young/…",
        "ampel: classification Parsnip/elasticc: SNIa 0.80, SNII 0.10, KN 0.05",
    ]
    assert classes_lines({}) == [] and classes_lines({"classes": ["x"]}) == []


def test_page_url_uses_the_pages_directory_rule() -> None:
    """The link points where mma.page writes the page, dot names included."""
    for event_id in ("S240114b", "..", "IceCube-136973_28816141", "GRB 240112/x"):
        url = page_url("https://m.example/p", event_id)
        assert url == f"https://m.example/p/events/{safe_name(event_id)}/index.html"
    assert page_url("https://m.example/p", "..") == "https://m.example/p/events/__/index.html"
