"""MAXI GSC notices: every corpus file (circle, ellipse, rectangle, no error, retractions)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from astropy.coordinates import SkyCoord
from astropy.time import Time

from mma.errors import InvalidValue, MissingField
from mma.handlers import maxi
from tests.conftest import CORPUS

MAXI = CORPUS / "gcn-json/gcn-schema/maxi"
FILES = sorted(MAXI.glob("*.json"))


def _utc(text: str) -> datetime:
    return Time(text.rstrip("Z"), format="isot", scale="utc").to_datetime(timezone=UTC)


def _read(name: str) -> tuple[bytes, dict[str, Any]]:
    raw = (MAXI / name).read_bytes()
    return raw, json.loads(raw)


def test_corpus_is_present() -> None:
    assert len(FILES) == 7


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_corpus_notice_parses(path: Path) -> None:
    raw = path.read_bytes()
    doc = json.loads(raw)
    assert maxi.sniff(raw)
    notice = maxi.parse(raw, topic="gcn.notices.maxi.gsc.unknown")
    assert notice.event_id == f"MAXI-{doc['id']}"
    assert notice.messenger == "xray" and notice.instrument == "MAXI-GSC"
    assert notice.event_class == "xray"  # also the unknown source named GRB 230220A
    assert notice.notice_type == doc["alert_type"]
    assert notice.event_time == _utc(doc["trigger_time"])
    assert notice.issued_time == _utc(doc["alert_datetime"])
    assert notice.retraction is (doc["alert_type"] == "retraction")
    assert notice.properties["record_number"] == doc["record_number"]
    if notice.retraction:
        assert notice.region is None
    known = "gsc.known" in doc["$schema"]
    assert ("known_source" in notice.flags) is known
    if known:  # a source name, never an alias
        assert notice.aliases == () and notice.properties["source_name"] == doc["event_name"]
    else:
        assert notice.aliases == ("GRB230220A",) and doc["event_name"] == "GRB 230220A"


def test_circle() -> None:
    raw, doc = _read("gsc.unknown.circle.example.json")
    region = maxi.parse(raw, topic="").region
    assert region is not None and region.kind == "circle"
    assert (region.ra_deg, region.dec_deg, region.radius_deg) == (doc["ra"], doc["dec"],
                                                                  doc["ra_dec_error"])
    assert region.containment == doc["containment_probability"]


def test_ellipse() -> None:
    raw, doc = _read("gsc.unknown.ellipse.example.json")
    notice = maxi.parse(raw, topic="")
    region = notice.region
    a, b, pa = doc["ra_dec_error"]
    assert region is not None and region.kind == "ellipse"
    assert (region.semi_major_deg, region.semi_minor_deg, region.position_angle_deg) == (a, b, pa)
    assert doc["systematic_included"] is False and "statistical_error_only" in notice.flags


def test_rectangle_becomes_ellipse_of_equal_area_and_orientation() -> None:
    raw, doc = _read("gsc.unknown.rectangle.example.json")
    notice = maxi.parse(raw, topic="")
    region = notice.region
    assert region is not None and region.kind == "ellipse"
    assert "rectangle_as_ellipse" in notice.flags
    assert notice.properties["localization"]["rectangular_error_corners"] == \
        doc["rectangular_error_corners"]
    # Independent: great-circle side lengths and bearing of the long side with astropy.
    c = [SkyCoord(ra, dec, unit="deg") for ra, dec in doc["rectangular_error_corners"]]
    sides = [c[i].separation(c[(i + 1) % 4]).deg for i in range(4)]
    long_side, short_side = max(sides), min(sides)
    assert region.semi_major_deg == pytest.approx(long_side / math.sqrt(math.pi), rel=0.02)
    assert region.semi_minor_deg == pytest.approx(short_side / math.sqrt(math.pi), rel=0.02)
    i = sides.index(long_side)
    bearing = c[i].position_angle(c[(i + 1) % 4]).deg % 180.0
    assert region.position_angle_deg == pytest.approx(bearing, abs=1.0)
    assert region.semi_major_deg is not None and region.semi_minor_deg is not None
    area_ellipse = math.pi * region.semi_major_deg * region.semi_minor_deg
    assert area_ellipse == pytest.approx(long_side * short_side, rel=0.03)


def test_no_error_and_known_source_have_no_region() -> None:
    for name in ("gsc.unknown.noerror.example.json", "gsc.known.example.json"):
        notice = maxi.parse(_read(name)[0], topic="")
        assert notice.region is None and "no_error_region" in notice.flags
        assert notice.properties["localization"]["ra"] == json.loads(_read(name)[0])["ra"]


def test_retraction_shares_the_event() -> None:
    first = maxi.parse(_read("gsc.unknown.circle.example.json")[0], topic="")
    gone = maxi.parse(_read("gsc.unknown.retraction.example.json")[0], topic="")
    assert gone.event_id == first.event_id and gone.retraction and gone.region is None


def _edit(name: str, **changes: Any) -> bytes:
    doc = _read(name)[1]
    for key, value in changes.items():
        if value is ...:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (_edit("gsc.unknown.ellipse.example.json", ra_dec_error=[0.19, 0.22, 153]),
         InvalidValue, "semi-minor"),
        (_edit("gsc.unknown.ellipse.example.json", ra_dec_error=[0.2, 0.1, 5, 6]),
         InvalidValue, "4 values"),
        (_edit("gsc.unknown.circle.example.json", containment_probability=1.5),
         InvalidValue, "containment_probability"),
        (_edit("gsc.unknown.circle.example.json", dec=95), InvalidValue, "dec 95"),
        (_edit("gsc.unknown.circle.example.json", trigger_time=...), MissingField,
         "trigger_time"),
        (_edit("gsc.unknown.circle.example.json", id=...), MissingField, "id"),
        (_edit("gsc.unknown.circle.example.json", alert_type="maybe"), InvalidValue,
         "alert_type"),
        (_edit("gsc.unknown.rectangle.example.json",
               rectangular_error_corners=[[1, 2], [1, 2], [1, 2], [1, 2]]),
         InvalidValue, "rectangle"),
        (_edit("gsc.unknown.rectangle.example.json", rectangular_error_corners=[[1, 2]]),
         InvalidValue, "4"),
        (_edit("gsc.unknown.circle.example.json", **{"$schema": ...}), MissingField, "schema"),
    ],
)
def test_broken_notices(raw: bytes, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        maxi.parse(raw, topic="")
