"""Times out of range are refused once, after parse, with a reason that says why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from mma.config import Config
from mma.db.schema import dead_letters
from mma.epochs import EARLIEST, FUTURE_SLACK, check_item, check_time, first_light
from mma.errors import InvalidValue
from mma.ingest import Pipeline
from mma.models import Alert
from mma.registry import Registry
from tests.conftest import CORPUS
from tests.hostile.alerts import ztf_dated

NOW = datetime(2026, 12, 5, tzinfo=UTC)
ZTF_FILE = CORPUS / "alerts/ztf/avro/ZTF18abudxnw_2695378462115010012.avro"


@pytest.mark.parametrize("when", [datetime(1, 1, 1, tzinfo=UTC),
                                  datetime(1989, 12, 31, tzinfo=UTC),
                                  NOW + FUTURE_SLACK + timedelta(seconds=1),
                                  datetime(9999, 12, 31, 23, 59, tzinfo=UTC)])
def test_out_of_range_times_are_refused(when: datetime) -> None:
    with pytest.raises(InvalidValue, match=r"event time .* (before 1990|in the future)"):
        check_time(when, what="event time", now=NOW)


def test_times_in_range_pass_including_the_slack() -> None:
    for when in (EARLIEST, NOW, NOW + FUTURE_SLACK):
        assert check_time(when, what="t", now=NOW) == when


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(InvalidValue, match="no time zone"):
        check_time(datetime(2024, 1, 1), what="t", now=NOW)


def test_each_handler_names_a_first_light_before_the_corpus_and_after_1990() -> None:
    for handler in Registry().handlers:
        since = first_light(handler)
        assert since.tzinfo is not None
        assert EARLIEST <= since <= datetime(2026, 1, 1, tzinfo=UTC), handler.NAME


def test_a_record_before_its_source_began_is_refused() -> None:
    class Survey:
        FIRST_LIGHT = datetime(2018, 3, 20, tzinfo=UTC)

    alert = Alert(alert_id="1", object_id="ZTF17aaaaaaa", survey="ztf", ra_deg=1.0,
                  dec_deg=2.0, time=datetime(2017, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidValue, match=r"detection time 2017.*before 2018-03-20"):
        check_item(alert, Survey, now=NOW)


def test_a_ztf_alert_dated_2099_is_dead_lettered_not_a_clock(engine: Engine, config: Config,
                                                            tmp_path: Path) -> None:
    """Inside the handler's 1970–2100 sanity range, but in the future: refused."""
    raw = ztf_dated(2488069.5 - 300)  # JD 2488069.5 is 2100-01-01: this is March 2099
    handler = Registry().by_name("ztf")
    outcome = Pipeline(engine, config).process(handler, raw, origin="ztf-2099.avro")
    assert outcome.kind == "dead_letter"
    with engine.connect() as conn:
        error = conn.execute(select(dead_letters.c.error)).scalar_one()
    assert "in the future" in error and "detection time" in error


def test_an_lvk_notice_dated_year_9999_is_dead_lettered_with_its_reason(
        engine: Engine, config: Config) -> None:
    notice = json.loads((CORPUS / "gcn-json/igwn-gwalert/S230528ay-preliminary.json")
                        .read_text())
    notice["event"]["time"] = "9999-12-31T23:59:59Z"
    outcome = Pipeline(engine, config).process(Registry().by_name("lvk"),
                                               json.dumps(notice).encode(), origin="y9999")
    assert outcome.kind == "dead_letter"
    with engine.connect() as conn:
        row = conn.execute(select(dead_letters.c.error_type, dead_letters.c.error)).one()
    assert row.error_type == "InvalidValue" and "9999" in row.error
