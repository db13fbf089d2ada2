"""A replay in bounded memory, and the clock it re-scores at.

The first pass keeps a key per record and parks the record on a temporary file;
the second reads them back in stream-time order. The final re-score runs at the
latest time among the records stored, not of a refused one, and not of a few
records far beyond the rest of the stream.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy import Engine

from mma.config import Config
from mma.files import Record, Spool, park, read_records, unpark
from mma.ingest import Pipeline
from mma.models import Notice, RegionSpec
from mma.registry import Registry
from mma.replay import StreamClock, feed
from tests.hostile.ztf_volume import write_copies
from tests.memory import measure

SAMPLE = Path(str(resources.files("mma").joinpath("data", "sample")))
DAY = timedelta(days=1)
T0 = datetime(2024, 1, 14, tzinfo=UTC)


def _clock(times: list[datetime]) -> StreamClock:
    clock = StreamClock(max_gap=30 * DAY)
    for i, when in enumerate(times):
        clock.stored(when, f"record-{i}")
    return clock


def test_a_late_record_apart_from_the_stream_does_not_set_its_clock(
        caplog: pytest.LogCaptureFixture) -> None:
    times = [T0 + i * timedelta(hours=1) for i in range(20)] + [T0 + 700 * DAY]
    with caplog.at_level(logging.WARNING, logger="mma.replay"):
        assert _clock(times).now() == T0 + 19 * timedelta(hours=1)
    assert "record-20" in caplog.text and "1 record(s)" in caplog.text


def test_two_real_groups_years_apart_both_count() -> None:
    """GW170817 beside O4: the later group is not the smaller one, so it is trusted."""
    early = [datetime(2017, 8, 17, tzinfo=UTC) + i * DAY for i in range(3)]
    late = [T0 + i * DAY for i in range(3)]
    assert _clock(early + late).now() == late[-1]
    assert _clock(early[:1] + late[:1]).now() == late[0]  # a tie: the later group


def test_outliers_are_peeled_group_by_group() -> None:
    bulk = [T0 + i * DAY for i in range(10)]
    assert _clock([*bulk, T0 + 100 * DAY, T0 + 101 * DAY, T0 + 900 * DAY]).now() == bulk[-1]


def test_nothing_stored_means_no_clock() -> None:
    assert StreamClock().now() is None


def _records(pipeline: Pipeline) -> list[Record]:
    return [rec for _p, _a, rec in read_records(pipeline, Registry(), [SAMPLE],
                                                max_bytes=2**26)]


def test_the_clock_comes_from_records_stored_not_refused(engine: Engine,
                                                        config: Config) -> None:
    pipeline = Pipeline(engine, config)
    records = sorted(_records(pipeline), key=lambda r: r.time)
    latest = records[-1].time
    # Parses, but its map is garbage: dead-lettered when stored, a day after the rest.
    late = latest + DAY
    bad = Notice(event_id="S261122zz", messenger="gw", instrument="LVK",
                 notice_type="preliminary", event_time=late, issued_time=late,
                 region=RegionSpec(kind="skymap", skymap=b"not a FITS file"))
    records.append(Record(late, "bad.json", Registry().by_name("lvk"), b"{}", bad))
    clock = StreamClock()
    assert feed(pipeline, records, clock) == len(records)
    assert pipeline.counts["dead_letter"] == 1
    assert clock.now() == latest


def test_records_come_back_in_stream_order_with_their_bytes(engine: Engine,
                                                           config: Config) -> None:
    pipeline = Pipeline(engine, config)
    direct = _records(pipeline)
    with Spool() as spool:
        keys = park(pipeline, Registry(), [SAMPLE], spool, max_bytes=2**26)
        back = list(unpark(pipeline, keys, spool, max_bytes=2**26))
    assert [r.time for r in back] == sorted(r.time for r in back)
    by_origin = {r.origin: r for r in direct}
    assert sorted(r.origin for r in back) == sorted(by_origin)
    for rec in back:
        assert rec.item == by_origin[rec.origin].item
        # A container's records are re-framed with a fresh sync marker on each split.
        assert "#" in rec.origin or rec.raw == by_origin[rec.origin].raw
    assert any("#" in r.origin for r in back) and any("#" not in r.origin for r in back)


@pytest.mark.slow
@pytest.mark.daemon
def test_replay_memory_does_not_grow_with_the_number_of_alerts(tmp_path: Path) -> None:
    """Real-size ZTF alerts (~65 kB each): the peak grows by far less than their size.

    Holding every record, as the replay once did, costs ~78 kB per alert. Both
    sizes exceed a transaction's batch (500 alerts, held while stored).
    """
    env = {"MMA_PATHS__STATE_DIR": str(tmp_path), "MMA_PATHS__CACHE_DIR": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    (tmp_path / "none.toml").write_text("")
    peaks = {}
    for n in (600, 1400):
        folder = tmp_path / f"ztf-{n}"
        write_copies(folder, n)
        run = measure([sys.executable, "-m", "mma", "--config", str(tmp_path / "none.toml"),
                       "replay", str(folder)], env=env, cwd=str(tmp_path))
        assert run.returncode == 0, run.stderr[-2000:]
        peaks[n] = run.peak_bytes
    per_alert = (peaks[1400] - peaks[600]) / 800
    # Noise of a few MiB in the peak is a few kB per alert here; holding them is ~72 kB.
    assert per_alert < 20_000, f"{per_alert:.0f} bytes of peak memory per alert"
