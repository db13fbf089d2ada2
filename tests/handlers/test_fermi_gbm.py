"""Fermi GBM VOEvents: every corpus file, checked against an independent read."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from mma.errors import BadMessage, Ignored, InvalidValue, MissingField
from mma.handlers import fermi_gbm
from tests.conftest import CORPUS
from tests.handlers.test_voevent_format import read_xml

VOEVENT = CORPUS / "voevent"
FILES = sorted(
    p for p in [*(VOEVENT / "fermi-gbm").glob("*.xml"),
                *(VOEVENT / "gcn-2024-01-fink-mm").glob("GBM_*.xml")]
    if "#GBM_" in (read_xml(p)["ivorn"] or "")
)  # fmt: skip
OTHERS = sorted(p for p in VOEVENT.rglob("*.xml") if p not in FILES)
GRB170817A = VOEVENT / "fermi-gbm/GRB170817A_GBM_Gnd_Pos_524666471.xml"
FIN = VOEVENT / "gcn-2024-01-fink-mm/GBM_Fin_Pos2024-01-12T173725.12_726773850_0-315.xml"
SUB = VOEVENT / "fermi-gbm/fermi_subthresh_grb_gcn.xml"
SUB_LOW = VOEVENT / "fermi-gbm/fermi_subthresh_grb_lowconfidence.xml"
NOISE = VOEVENT / "fermi-gbm/fermi_noise_gcn.xml"
ALERT = VOEVENT / "fermi-gbm/fermi_initial_grb_gcn.xml"
FLT_SOLAR = VOEVENT / "gcn-2024-01-fink-mm/GBM_Flt_Pos_2024-01-12T035757.58_726724682_49-265.xml"
SYSTEMATIC = {"GBM_Flt_Pos": "fermi_gbm_flt", "GBM_Gnd_Pos": "fermi_gbm_gnd",
              "GBM_Fin_Pos": "fermi_gbm_fin", "GBM_SubThresh": "fermi_gbm_gnd"}  # fmt: skip


def _edit(path: Path, old: str, new: str) -> bytes:
    text = path.read_text()
    assert old in text, old
    return text.replace(old, new, 1).encode()


def test_corpus_is_present() -> None:
    assert len(FILES) == 38  # 13 in fermi-gbm/ (+1 LAT packet), 25 from 2024-01


def test_error_table() -> None:
    one_sigma = 1 - math.exp(-0.5)
    assert abs(fermi_gbm.ONE_SIGMA_2D - 0.3935) < 1e-4
    for kind, model in fermi_gbm.ERRORS.items():
        assert model.containment == pytest.approx(one_sigma)
        assert model.systematic == SYSTEMATIC.get(kind)
        assert model.has_position is (kind != "GBM_ALERT")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_corpus_notice_parses(path: Path) -> None:
    raw = path.read_bytes()
    ref = read_xml(path)
    params = ref["params"]
    assert fermi_gbm.sniff(raw)
    notice = fermi_gbm.parse(raw, topic="gcn.classic.voevent.FERMI_GBM_GND_POS")
    kind = re.match(r"GBM_[A-Za-z_]*[A-Za-z]", ref["ivorn"].split("#")[1]).group(0)  # type: ignore[union-attr]
    assert notice.notice_type == kind
    sub = kind == "GBM_SubThresh"
    number = int(params["Trans_Num" if sub else "TrigID"])
    assert notice.event_id == (f"FermiGBM-sub-{number}" if sub else f"FermiGBM-{number}")
    assert notice.messenger == "grb" and notice.instrument == "Fermi-GBM"
    assert notice.event_class == "grb"  # noise and sub-threshold too: flagged, same window
    assert notice.event_time == ref["isotime"] and notice.issued_time == ref["date"]
    assert notice.properties["ivorn"] == ref["ivorn"]
    assert not notice.retraction and not notice.test
    ra, dec, radius = ref["position"]
    if kind == "GBM_ALERT":
        assert notice.region is None  # time only: not even a "no_position" caveat
    elif radius == 0:
        assert notice.region is None and "no_position" in notice.flags
    else:
        region = notice.region
        assert region is not None and region.kind == "circle"
        assert (region.ra_deg, region.dec_deg) == (ra, dec)
        assert region.radius_deg == max(radius, 0.08)
        assert region.containment == pytest.approx(0.3935, abs=1e-4)
        assert region.systematic == SYSTEMATIC[kind]
    index = params.get("Most_Likely_Index")
    not_grb = [f for f in notice.flags if f.startswith("not_grb:")]
    assert bool(not_grb) == (index is not None and index != "4")
    second = params.get("Sec_Most_Likely_Index")
    assert ("sec_most_likely_class" in notice.properties) == (second is not None)
    reliability = params.get("Reliability")
    assert ("low_reliability" in notice.flags) == (
        reliability is not None and int(reliability) <= 4
    )


def test_grb170817a_ground_position() -> None:
    notice = fermi_gbm.parse(GRB170817A.read_bytes(), topic="")
    assert notice.event_id == "FermiGBM-524666471"
    assert notice.notice_type == "GBM_Gnd_Pos"
    assert notice.event_time.isoformat() == "2017-08-17T12:41:06.470000+00:00"
    region = notice.region
    assert region is not None
    assert (region.ra_deg, region.dec_deg, region.radius_deg) == (186.62, -48.84, 17.45)
    # The ground map URL is not a documented HEALPix product: kept, not fetched.
    assert region.skymap_url is None
    assert notice.properties["locationmap_url"].endswith("gbm_gnd_loc_map_524666471.fits")
    assert notice.flags == ()


def test_final_position_gets_the_heasarc_healpix_map() -> None:
    notice = fermi_gbm.parse(FIN.read_bytes(), topic="")
    assert notice.region is not None and notice.region.kind == "circle"
    assert notice.region.skymap_url == (
        "https://heasarc.gsfc.nasa.gov/FTP/fermi/data/gbm/triggers/2024/bn240112734/"
        "quicklook/glg_healpix_all_bn240112734.fit"
    )


def test_subthreshold_reliability_and_map() -> None:
    good = fermi_gbm.parse(SUB.read_bytes(), topic="")
    low = fermi_gbm.parse(SUB_LOW.read_bytes(), topic="")
    assert good.properties["reliability"] == 8 and "low_reliability" not in good.flags
    assert low.properties["reliability"] == 2 and "low_reliability" in low.flags
    assert good.region is not None
    assert good.region.skymap_url == read_xml(SUB)["params"]["HealPix_URL"]
    assert good.event_id != low.event_id  # different Trans_Num, different candidates


def test_noise_is_flagged_not_dropped() -> None:
    notice = fermi_gbm.parse(NOISE.read_bytes(), topic="")
    assert "not_grb:tgf" in notice.flags and notice.region is not None
    assert notice.properties["most_likely_class"] == "tgf"


def test_flight_classifier_runner_up_is_kept() -> None:
    # Solar flare 72 %, GRB second at 11 %: the GRB probability is the runner-up's.
    notice = fermi_gbm.parse(FLT_SOLAR.read_bytes(), topic="")
    props = notice.properties
    assert (props["most_likely_class"], props["most_likely_prob_percent"]) == ("solar_flare", 72.0)
    assert (props["sec_most_likely_class"], props["sec_most_likely_prob_percent"]) == ("grb", 11.0)
    assert "not_grb:solar_flare" in notice.flags
    noise = fermi_gbm.parse(NOISE.read_bytes(), topic="").properties
    assert (noise["sec_most_likely_class"], noise["sec_most_likely_prob_percent"]) == ("error", 0.0)


def test_alert_has_no_region_even_with_a_broken_placeholder() -> None:
    raw = _edit(ALERT, "<C1>0.0</C1>", "<C1>NaN</C1>")
    notice = fermi_gbm.parse(raw, topic="")
    assert notice.region is None and notice.notice_type == "GBM_ALERT"


@pytest.mark.parametrize("path", OTHERS, ids=lambda p: p.name)
def test_sniff_refuses_other_voevents(path: Path) -> None:
    assert not fermi_gbm.sniff(path.read_bytes())


def test_tiny_radius_is_floored() -> None:
    raw = _edit(GRB170817A, "<Error2Radius>17.4500</Error2Radius>",
                "<Error2Radius>0.0100</Error2Radius>")
    notice = fermi_gbm.parse(raw, topic="")
    assert notice.region is not None and notice.region.radius_deg == 0.08
    assert notice.properties["error_radius_stated_deg"] == 0.01


def test_test_traffic() -> None:
    sub = fermi_gbm.parse(_edit(GRB170817A, 'name="Test_Submission"       value="false"',
                                'name="Test_Submission"       value="true"'), topic="")
    role = fermi_gbm.parse(_edit(GRB170817A, 'role="observation"', 'role="test"'), topic="")
    assert sub.test and role.test
    with pytest.raises(Ignored, match="utility"):
        fermi_gbm.parse(_edit(GRB170817A, 'role="observation"', 'role="utility"'), topic="")


@pytest.mark.parametrize(
    ("old", "new", "error", "words"),
    [
        ('name="TrigID"                value="524666471"', 'name="TrigIDx" value="1"',
         MissingField, "TrigID"),
        ('value="524666471"', 'value="52466647x"', InvalidValue, "not an integer"),
        ("#GBM_Gnd_Pos_", "#GBM_Odd_Pos_", InvalidValue, "no error model"),
        ("ivo://nasa.gsfc.gcn/Fermi#", "ivo://nasa.gsfc.gcn/Other#", InvalidValue, "not a Fermi"),
        ("<Error2Radius>17.4500</Error2Radius>", "<Error2Radius>-3</Error2Radius>",
         InvalidValue, "Error2Radius -3.0 deg is outside the accepted range"),
        ("<Error2Radius>17.4500</Error2Radius>", "<Error2Radius>1e-9</Error2Radius>",
         InvalidValue, "Error2Radius 1e-09 deg is outside the accepted range [1e-05 deg"),
        ("<Error2Radius>17.4500</Error2Radius>", "<Error2Radius>361</Error2Radius>",
         InvalidValue, "Error2Radius 361.0 deg is outside the accepted range"),
        ("<C2>-48.8400</C2>", "<C2>-91</C2>", InvalidValue, "Dec"),
        ("<ISOTime>2017-08-17T12:41:06.47Z</ISOTime>", "", MissingField, "ISOTime"),
        ("<Date>2017-08-17T12:41:43</Date>", "", MissingField, "Who/Date"),
        ('name="Def_NOT_a_GRB"         value="false"', 'name="Def_NOT_a_GRB" value="maybe"',
         InvalidValue, "true/false"),
    ],
)
def test_bad_values(old: str, new: str, error: type[BadMessage], words: str) -> None:
    with pytest.raises(error) as info:
        fermi_gbm.parse(_edit(GRB170817A, old, new), topic="")
    assert words in str(info.value)


@pytest.mark.parametrize("radius", ["180", "360.0", "80"])
def test_radius_meaning_anywhere_gives_no_region(radius: str) -> None:
    """180 deg and more is "anywhere"; a 1-sigma circle of 80 deg holds less than the
    uniform sky does (0.41 > 0.39): no density can honour it, so no region either."""
    notice = fermi_gbm.parse(_edit(GRB170817A, "<Error2Radius>17.4500</Error2Radius>",
                                   f"<Error2Radius>{radius}</Error2Radius>"), topic="")
    assert notice.region is None and "no_position" in notice.flags
    assert notice.properties["error_radius_stated_deg"] == float(radius)
