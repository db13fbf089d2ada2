"""Broker classes of a candidate and the catalogue flags, from real Fink rows of the corpus.

Rows of the 2024-01-15 Fink night: a SIMBAD long-period variable, a QSO, a BL Lac,
a Seyfert 1, an unmatched object, an X-ray source and a failed cross-match. Then
through the database: the candidate's ``classes`` are the newest alert's, a class
change that changes a flag is a material change, and hostile class fields are
stored cut down without breaking anything.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from mma.db.schema import coincidence_revisions
from mma.handlers import fink
from mma.ingest import Pipeline
from mma.match.candidate import Thresholds, material_changes
from mma.match.classes import MAX_ITEMS, MAX_TEXT, alert_classes, class_flags
from mma.models import Alert
from tests.conftest import CORPUS
from tests.test_correlator import MAP_1, alert, feed, notice, rows
from tests.test_outbox import _config

PART = CORPUS / "alerts/ztf/fink-2024-01-15/part-00000-e55a3e2d-0f29-423f-8621-3547113ad41b-c000.snappy.parquet"  # noqa: E501
# Row index in PART -> (objectId, Fink's cdsxmatch).
ROWS = {0: ("ZTF18acbyzpj", "LPV*"), 1: ("ZTF19aalwoqe", "X"), 3: ("ZTF24aaccsty", "Unknown"),
        14: ("ZTF19aaoznlz", "Seyfert_1"), 18: ("ZTF20aaozrwf", "QSO"),
        56: ("ZTF19aavtnib", "Fail 500"), 94: ("ZTF18abcvlyn", "BLLac")}


@pytest.fixture(scope="module")
def fink_rows() -> dict[int, Alert]:
    payloads = list(fink.split(PART.read_bytes()))
    return {i: fink.parse(payloads[i], topic="fink") for i in ROWS}


def test_the_rows_are_the_ones_named(fink_rows: dict[int, Alert]) -> None:
    for i, (object_id, simbad) in ROWS.items():
        assert fink_rows[i].object_id == object_id
        assert alert_classes("Fink", fink_rows[i].quality)["fink"]["cdsxmatch"] == simbad


@pytest.mark.parametrize(("row", "flags"), [
    (0, ["catalogued_star"]),  # LPV*, and VSX type SR
    (14, ["catalogued_qso"]), (18, ["catalogued_qso"]), (94, ["catalogued_qso"]),
    (3, []), (1, []),  # unmatched; an X-ray source is neither
    (56, []),  # the cross-match service failed: nothing is known
])
def test_catalogue_flags_of_real_rows(fink_rows: dict[int, Alert], row: int,
                                      flags: list[str]) -> None:
    classes = alert_classes(fink_rows[row].broker, fink_rows[row].quality)
    assert set(classes) == {"fink"}
    assert class_flags(classes) == flags


def test_fink_classes_keep_the_classifier_scores(fink_rows: dict[int, Alert]) -> None:
    fields = alert_classes("Fink", fink_rows[18].quality)["fink"]
    assert {"cdsxmatch", "roid", "mulens", "snn_sn_vs_all", "rf_snia_vs_nonia", "vsx",
            "x4lac"} <= set(fields)
    json.dumps(fields, allow_nan=False)  # JSON-safe as stored


def test_variable_star_and_blazar_catalogues_and_boom_flag_too() -> None:
    assert class_flags({"fink": {"cdsxmatch": "Unknown", "vsx": "EW"}}) == ["catalogued_star"]
    assert class_flags({"fink": {"cdsxmatch": "Unknown", "x4lac": "4FGL J0706.9+6109"}}) == [
        "catalogued_qso"]
    assert class_flags({"fink": {"cdsxmatch": "Unknown", "gcvs": "Fail 504"}}) == []
    assert class_flags({"babamul": {"star": True}}) == ["catalogued_star"]
    assert class_flags({"babamul": {"star": "true"}}) == []  # not BOOM's boolean
    assert class_flags({}) == []


def test_a_survey_alert_or_an_unknown_broker_has_no_classes(fink_rows: dict[int, Alert]) -> None:
    assert alert_classes(None, fink_rows[0].quality) == {}
    assert alert_classes("Nobody", fink_rows[0].quality) == {}
    assert alert_classes("Fink", ["not", "a", "mapping"]) == {}
    assert alert_classes("Fink", {"rb": 0.9}) == {}


HOSTILE: dict[str, Any] = {
    "fink_cdsxmatch": "\x1b[2J\u202eQSO" + "A" * 10_000,
    "fink_roid": math.nan, "fink_mulens": 10**30, "fink_anomaly_score": math.inf,
    "fink_vsx": ["EW"] * 10_000, "fink_gcvs": {"a": {"b": {"c": 1}}},
    "fink_x4lac": object(),
}


def test_hostile_class_fields_are_cut_down_not_fatal() -> None:
    fields = alert_classes("Fink", HOSTILE)["fink"]
    assert fields["cdsxmatch"] == HOSTILE["fink_cdsxmatch"][:MAX_TEXT]
    assert fields["roid"] is None and fields["mulens"] is None
    assert fields["anomaly_score"] is None and fields["x4lac"] is None
    assert len(fields["vsx"]) == MAX_ITEMS
    assert fields["gcvs"] == {"a": {"b": None}}
    json.dumps(fields, allow_nan=False)
    # A list is no variability type: the star flag needs a catalogue's string answer.
    assert class_flags({"fink": fields}) == []


def _broker_alert(alert_id: str, hours: float, quality: dict[str, Any]) -> Alert:
    """An alert of object ZTF25obja relayed by Fink with *quality*'s class fields."""
    base = alert(alert_id, pixel=0, hours=hours)
    fink_fields = {k: v for k, v in quality.items() if k.startswith("fink_")}
    return replace(base, object_id="ZTF25obja", broker="Fink",
                   quality={**base.quality, **fink_fields})


def test_the_candidate_carries_the_newest_alerts_classes(engine: Engine, tmp_path: Path,
                                                         fink_rows: dict[int, Alert]) -> None:
    p = Pipeline(engine, _config(tmp_path))
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, _broker_alert("a", 2, dict(fink_rows[18].quality)))  # a QSO
    first = rows(engine)["a"]
    assert first["classes"]["fink"]["cdsxmatch"] == "QSO"
    assert "catalogued_qso" in first["flags"]
    feed(p, _broker_alert("b", 3, dict(fink_rows[3].quality)))  # then: unmatched
    second = rows(engine)["a"]
    assert second["classes"]["fink"]["cdsxmatch"] == "Unknown"
    assert "catalogued_qso" not in second["flags"]
    assert "flags" in second["changes"] and second["revision"] == 2


def test_hostile_classes_reach_the_database_cut_down(engine: Engine, tmp_path: Path) -> None:
    p = Pipeline(engine, _config(tmp_path))
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    quality = {k: v for k, v in HOSTILE.items() if k != "fink_x4lac"}  # a packet is JSON
    feed(p, _broker_alert("a", 2, {**quality, "fink_gcvs": "\x00\x1b"}))
    stored = rows(engine)["a"]
    assert stored["classes"]["fink"]["cdsxmatch"] == HOSTILE["fink_cdsxmatch"][:MAX_TEXT]
    assert stored["classes"]["fink"]["roid"] is None
    with engine.connect() as conn:
        assert conn.execute(select(coincidence_revisions.c.id)).first() is not None



def test_classes_are_material_only_through_the_flags() -> None:
    base = {"flags": ["catalogued_qso"], "detections": [], "n_detections": 1,
            "credible_level": 0.5, "log_bayes_factor": 1.0, "p_chance": 0.1,
            "region_version": 1, "classes": {"fink": {"cdsxmatch": "QSO"}}}
    seyfert = {**base, "classes": {"fink": {"cdsxmatch": "Seyfert_1"}}}
    assert material_changes(base, seyfert, Thresholds()) == []
    unmatched = {**seyfert, "flags": [], "classes": {"fink": {"cdsxmatch": "Unknown"}}}
    assert material_changes(base, unmatched, Thresholds()) == ["flags"]
