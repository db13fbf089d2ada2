"""KM3NeT JSON alerts: the single-event and multiplet schema examples."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from astropy.time import Time

from mma.errors import InvalidValue, MissingField
from mma.handlers import km3net
from tests.conftest import CORPUS

KM3 = CORPUS / "gcn-json/gcn-schema/km3net"
TOPIC = "gcn.notices.km3net.alert"


def _utc(text: str) -> datetime:
    return Time(text.rstrip("Z"), format="isot", scale="utc").to_datetime(timezone=UTC)


def _read(name: str) -> tuple[bytes, dict[str, Any]]:
    raw = (KM3 / name).read_bytes()
    return raw, json.loads(raw)


@pytest.mark.parametrize("name", ["alert.example.json", "alert.multiplet.example.json"])
def test_every_corpus_alert_parses(name: str) -> None:
    raw, doc = _read(name)
    assert km3net.sniff(raw)
    notice = km3net.parse(raw, topic=TOPIC)
    assert notice.event_id == f"KM3NeT-{doc['id']}"
    assert notice.aliases == (doc["event_name"],)
    assert notice.messenger == "neutrino" and notice.instrument == f"KM3NeT-{doc['instrument']}"
    assert notice.event_class == "neutrino.track"  # single track and multiplet alike
    assert notice.event_time == _utc(doc["trigger_time"])
    assert notice.issued_time == _utc(doc["alert_datetime"])
    assert notice.notice_type == doc["alert_type"] and not notice.test
    region = notice.region
    assert region is not None and region.kind == "circle"
    assert (region.ra_deg, region.dec_deg, region.radius_deg) == (
        doc["ra"], doc["dec"], doc["ra_dec_error"])
    assert region.containment == 0.9 and "containment_default_0.9" in notice.flags
    # The portal URL is not a FITS map: recorded, not fetched.
    assert region.skymap_url is None and "healpix_url_not_fits" in notice.flags
    assert notice.properties["src_error_50"] == doc["src_error_50"]
    details = notice.properties["event_details"]
    assert [d["id"] for d in details] == [e["id"] for e in doc["event_details"]]
    assert [d["ra_dec_error"] for d in details] == [e["ra_dec_error"] for e in doc["event_details"]]
    multiplet = doc["alert_topology"] == "Multiplet"
    assert ("multiplet" in notice.flags) is multiplet
    assert ("potential_counterpart" in notice.flags) is doc["potential_counterpart"]


def test_fits_healpix_url_accompanies_the_circle() -> None:
    doc = _read("alert.example.json")[1]
    doc["healpix_url"] = "https://opendata.km3net.de/alerts/KM3-240901A.fits.gz"
    region = km3net.parse(json.dumps(doc).encode(), topic=TOPIC).region
    assert region is not None and region.kind == "circle"
    assert region.skymap_url == doc["healpix_url"]


def _edit(**changes: Any) -> bytes:
    doc = _read("alert.multiplet.example.json")[1]
    for key, value in changes.items():
        if value is ...:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (_edit(trigger_time=...), MissingField, "trigger_time"),
        (_edit(id=...), MissingField, "id"),
        (_edit(dec=-95), InvalidValue, "dec -95"),
        (_edit(healpix_url="file:///etc/passwd"), InvalidValue, "healpix_url"),
        (_edit(event_details=[{"ra": 1, "dec": 2, "ra_dec_error": "x"}]), InvalidValue,
         r"event_details\[0\]"),
        (_edit(event_details=[{}] * 2000), InvalidValue, "at most"),
        (_edit(instrument="../ARCA"), InvalidValue, "instrument"),
        (_edit(far="low"), InvalidValue, "far"),
    ],
)
def test_broken_alerts(raw: bytes, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        km3net.parse(raw, topic=TOPIC)
