"""vet_rubin: closed cases against the [vetting.rubin] defaults, and real packets."""

from __future__ import annotations

from typing import Any

import pytest

from mma.config import Config
from mma.handlers import rubin
from mma.match import scoring
from tests.conftest import CORPUS

RULES = {"min_reliability": 0.5, "reject_negative": True, "reject_dipole": True,
         "pixel_flags": ["cr", "crCenter", "streak", "streakCenter", "saturatedCenter"],
         "reject_solar_system": True}
CLEAN = {"reliability": 0.9, "isNegative": False, "isDipole": False, "ssObjectId": None,
         "timeWithdrawnMjdTai": None, "pixelFlags_cr": False, "pixelFlags_saturated": True}


@pytest.mark.parametrize(("change", "reasons"), [
    ({}, []),
    ({"reliability": 0.31}, ["reliability=0.31<0.5"]),
    ({"reliability": 0.5}, []),
    ({"isNegative": True}, ["negative"]),
    ({"isDipole": True}, ["dipole"]),
    ({"pixelFlags_cr": True, "pixelFlags_streakCenter": True}, ["pixel_flags:cr,streakCenter"]),
    ({"pixelFlags_saturatedCenter": True}, ["pixel_flags:saturatedCenter"]),
    ({"ssObjectId": 21163}, ["solar_system:21163"]),
    ({"ssObjectId": 0}, []),
    ({"timeWithdrawnMjdTai": 61000.5}, ["withdrawn"]),
    ({"reliability": 0.1, "isNegative": True}, ["reliability=0.10<0.5", "negative"]),
])
def test_rubin_vetting(change: dict[str, Any], reasons: list[str]) -> None:
    assert scoring.vet_rubin({**CLEAN, **change}, RULES) == reasons


def test_missing_fields_never_veto() -> None:
    assert scoring.vet_rubin({}, RULES) == []
    assert scoring.vet_rubin({k: None for k in CLEAN}, RULES) == []


def test_defaults_match(config: Config) -> None:
    assert dict(config.section("vetting.rubin")) == RULES


def test_real_lsstcam_alert_is_vetoed() -> None:
    raw = (CORPUS / "alerts/rubin/avro/lsst_v9_0_7912941781254298.confluent.avro").read_bytes()
    alert = rubin.parse(raw, topic="lsst-alerts-v11")
    assert scoring.vet_rubin(alert.quality, RULES) == ["reliability=0.11<0.5", "negative"]
