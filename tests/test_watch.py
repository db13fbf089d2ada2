"""Watch regions (``mma watch``) on the bundled sample's real-format ZTF alerts.

A CSV of discs, mocpy MOCs (MOC 2.0 ranges and MOC 1.x NUNIQ, as mocpy writes them)
and a real BAYESTAR multi-order map become events of class ``watch`` that the normal
notice and alert paths match in both directions, with B_t = 1 and no prior; removal
withdraws their candidates; hostile files and options exit 1 without a traceback.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pytest
from mocpy import MOC
from sqlalchemy import select

from mma.channels import enabled_channels
from mma.cli import main
from mma.config import Config, load_config
from mma.db.engine import make_engine, upgrade
from mma.db.schema import coincidences, events, outbox
from mma.handlers import ztf
from mma.ingest import Parsed, Pipeline
from mma.match.finite import LN_FLOOR
from mma.match.priors import check_priors, ln_b_time, ln_prior_history, p_astro
from mma.models import Alert, StoredEvent
from mma.report import records
from mma.skymaps.region import build_region, hpx29, tile_ranges
from mma.skymaps.spec import region_table
from mma.watch import (
    discs_moc,
    footprint_table,
    parse_discs,
    read_footprint,
    subscribed,
    watch_channels,
    watch_passes,
    window_days,
)
from tests.conftest import CORPUS
from tests.test_cli_look import CHANNELS

SAMPLE = Path(__file__).parents[1] / "mma" / "data" / "sample"
BAYESTAR = CORPUS / "skymaps" / "gw" / "MS181101ab_bayestar.multiorder.fits"
# Two objects of the sample, first seen 2026-11-20: ZTF26aaaaaxd and ZTF26aaaaanw.
NEAR = ((148.66030320926524, 26.74538005667721), (231.99665436251172, 32.55636962118035))
START = "2026-11-18T00:00:00Z"  # before the sample's alerts (2026-11-19 to 22)
# Kafka and Slack enabled, Slack taking everything (every statistical cut open), so a
# watch's own channel choice is all that keeps its candidates from Slack. The watch
# window is a century so that the test does not expire with the wall clock.
CONF = "[windows]\nwatch = [0.0, 36500.0]\n" + CHANNELS


@pytest.fixture(scope="module")
def near_alerts() -> list[tuple[bytes, Alert]]:
    """The sample's alerts within 2 deg of :data:`NEAR` (real ZTF packets), in time order."""
    raw = (SAMPLE / "ztf-sample-alerts.avro").read_bytes()
    out = []
    for payload in ztf.split(raw):
        alert = ztf.parse(payload, topic="")
        if any(_sep(alert.ra_deg, alert.dec_deg, ra, dec) < 2.0 for ra, dec in NEAR):
            out.append((payload, alert))
    return sorted(out, key=lambda pair: pair[1].time)


def _sep(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Angular separation [deg]."""
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    cos = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[list[str], str]:
    """(``-c CONF`` args, a new SQLite URL)."""
    conf = tmp_path / "mma.toml"
    conf.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n'
                    f'cache_dir = "{tmp_path / "cache"}"\n{CONF}')
    return ["-c", str(conf)], f"sqlite:///{tmp_path / 'w.sqlite'}"


def feed(opts: list[str], url: str, alerts: list[tuple[bytes, Alert]]) -> None:
    """Ingest *alerts* through the normal alert path, deliveries queued."""
    engine = make_engine(url)
    upgrade(engine)
    pipeline = Pipeline(engine, load_config(opts[1]))
    pipeline.process_alerts([Parsed(ztf, raw, f"sample#{i}", alert)
                             for i, (raw, alert) in enumerate(alerts)])
    engine.dispose()


def mma(opts: list[str], url: str, capsys: pytest.CaptureFixture[str], *args: str,
        status: int = 0) -> str:
    capsys.readouterr()
    assert main([*opts, *args, "--db", url]) == status
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.out if status == 0 else captured.err


def of_watch(url: str, name: str) -> list[dict[str, Any]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = [r for r in records(conn) if r["event_id"] == f"watch:{name}"]
    engine.dispose()
    return rows


def csv_file(tmp_path: Path, text: str, name: str = "discs.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def moc_file(tmp_path: Path, *, v1: bool, radius_deg: float = 0.5) -> Path:
    """A MOC of discs around :data:`NEAR`, written by mocpy (v1: NUNIQ, else RANGE)."""
    moc = MOC.from_cones(lon=np.array([p[0] for p in NEAR]) * u.deg,
                         lat=np.array([p[1] for p in NEAR]) * u.deg,
                         radius=np.full(2, radius_deg) * u.deg, max_depth=12,
                         union_strategy="small_cones")
    path = tmp_path / f"near-{'v1' if v1 else 'v2'}.fits"
    moc.save(str(path), format="fits", overwrite=True, v1_compatible=v1)
    return path


def check_watch_scores(rows: list[dict[str, Any]]) -> None:
    """Candidates of a watch: uniform in time, no prior of any kind."""
    assert {r["object_id"] for r in rows} == {"ZTF26aaaaaxd", "ZTF26aaaaanw"}
    for r in rows:
        assert r["messenger"] == "watch" and r["event_class"] == "watch"
        assert r["components"]["ln_B_t"] == 0.0  # B_t = 1
        assert r["components"]["ln_prior"] == 0.0 and r["components"]["p_astro"] == 1.0
        assert r["credible_level"] <= 0.99  # the whole footprint is inside the cut


# ------------------------------------------------------------------ both directions
def test_csv_watch_matches_alerts_already_stored(
        setup: tuple[list[str], str], near_alerts: list[tuple[bytes, Alert]],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    opts, url = setup
    feed(opts, url, near_alerts)
    path = csv_file(tmp_path, "ra,dec,radius\n" + "".join(f"{ra},{dec},0.5\n"
                                                            for ra, dec in NEAR))
    out = mma(opts, url, capsys, "watch", "add", "near", str(path), "--start", START)
    assert "watch near: discs" in out and "2 candidates now" in out
    assert "note:" not in out  # kafka is enabled
    check_watch_scores(of_watch(url, "near"))


@pytest.mark.parametrize("v1", [False, True], ids=["moc2-range", "moc1-nuniq"])
def test_moc_watch_matches_later_alerts(
        setup: tuple[list[str], str], near_alerts: list[tuple[bytes, Alert]],
        tmp_path: Path, capsys: pytest.CaptureFixture[str], v1: bool) -> None:
    opts, url = setup
    out = mma(opts, url, capsys, "watch", "add", "mocs", str(moc_file(tmp_path, v1=v1)),
              "--start", START)
    assert "watch mocs: moc" in out and "0 candidates now" in out
    feed(opts, url, near_alerts)
    check_watch_scores(of_watch(url, "mocs"))
    # Alerts of other objects near, but outside the 0.5 deg discs, did not match.
    outside = {a.object_id for _, a in near_alerts
               if min(_sep(a.ra_deg, a.dec_deg, ra, dec) for ra, dec in NEAR) > 0.6}
    assert outside and not outside & {r["object_id"] for r in of_watch(url, "mocs")}


def test_a_real_multiorder_map_is_used_as_is(setup: tuple[list[str], str], config: Config,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    opts, url = setup
    mma(opts, url, capsys, "watch", "add", "bayestar", str(BAYESTAR), "--start", START)
    [row] = [json.loads(line) for line in mma(opts, url, capsys, "watch", "list", "--json")
             .splitlines()]
    data = BAYESTAR.read_bytes()
    fp = read_footprint(data, max_bytes=len(data), max_tiles=10**6, max_credible_level=0.99)
    region = build_region(region_table(fp.spec))
    assert fp.kind == row["kind"] == "skymap" and fp.spec.skymap == data  # untouched
    assert row["area_deg2"] == pytest.approx(region.area_deg2(0.9))


# ------------------------------------------------------------------ list, remove
def test_list_and_remove(setup: tuple[list[str], str], near_alerts: list[tuple[bytes, Alert]],
                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    opts, url = setup
    feed(opts, url, near_alerts)
    path = csv_file(tmp_path, f"{NEAR[0][0]},{NEAR[0][1]},1.0\n")
    out = mma(opts, url, capsys, "watch", "add", "one", str(path), "--start", START,
              "--end", "2027-01-01T00:00:00+00:00", "--channels", "kafka,slack:ops")
    assert "note: slack:ops not enabled" in out  # only the plain slack channel is
    [row] = [json.loads(line) for line in mma(opts, url, capsys, "watch", "list", "--json")
             .splitlines()]
    assert row["name"] == "one" and row["status"] == "active" and row["kind"] == "discs"
    assert row["area_deg2"] == pytest.approx(math.pi, rel=0.05)  # a 1 deg disc, tiled
    assert row["channels"] == ["kafka", "slack:ops"] and row["candidates"] == 1
    assert row["start"] == "2026-11-18T00:00:00+00:00" and row["end"] == "2027-01-01T00:00:00+00:00"
    assert row["source_file"] == "discs.csv" and row["window_start"].startswith("2026-11-18")
    table = mma(opts, url, capsys, "watch", "list")
    assert table.splitlines()[0].split() == ["NAME", "STATUS", "AREA_DEG2", "WINDOW",
                                             "CHANNELS", "CANDIDATES", "FILE"]
    assert "kafka,slack:ops" in table
    assert "1 candidates withdrawn" in mma(opts, url, capsys, "watch", "remove", "one")
    [gone] = of_watch(url, "one")
    assert gone["status"] == "retracted" and "event_retracted" in gone["flags"]
    with make_engine(url).connect() as conn:  # the retraction goes where it was said
        kinds = {(r.channel, r.payload["kind"]) for r in conn.execute(
            select(outbox.c.channel, outbox.c.payload).where(
                outbox.c.coincidence_id == gone["coincidence_id"]))}
    assert ("kafka", "retraction") in kinds
    [row] = [json.loads(line) for line in mma(opts, url, capsys, "watch", "list", "--json")
             .splitlines()]
    assert row["status"] == "removed" and row["candidates"] == 0
    assert "already removed" in mma(opts, url, capsys, "watch", "remove", "one", status=1)
    assert "not reused" in mma(opts, url, capsys, "watch", "add", "one", str(path), status=1)
    assert "no watch named" in mma(opts, url, capsys, "watch", "remove", "two", status=1)
    assert "one file, one watch" in mma(opts, url, capsys, "watch", "add", "two", str(path),
                                        status=1)


# ------------------------------------------------------------------ channels

def test_a_watch_reaches_only_its_channels(
        setup: tuple[list[str], str], near_alerts: list[tuple[bytes, Alert]],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    opts, url = setup
    mma(opts, url, capsys, "watch", "add", "quiet", str(csv_file(
        tmp_path, f"{NEAR[0][0]},{NEAR[0][1]},0.5\n", "a.csv")), "--start", START)
    mma(opts, url, capsys, "watch", "add", "loud", str(csv_file(
        tmp_path, f"{NEAR[1][0]},{NEAR[1][1]},0.5\n", "b.csv")), "--start", START,
        "--channels", "kafka,slack")
    feed(opts, url, near_alerts)
    with make_engine(url).connect() as conn:
        rows = conn.execute(select(events.c.event_id, outbox.c.channel)
                            .join(coincidences, coincidences.c.event_pk == events.c.id)
                            .join(outbox, outbox.c.coincidence_id
                                  == coincidences.c.coincidence_id)).all()
    assert {c for e, c in rows if e == "watch:quiet"} == {"kafka"}
    assert {c for e, c in rows if e == "watch:loud"} == {"kafka", "slack"}


def test_watch_passes_picks_its_own_channels(setup: tuple[list[str], str]) -> None:
    rules = enabled_channels(load_config(setup[0][1]))
    record = {"flags": ["background_unmeasured"], "survey": "ZTF", "kind": "new",
              "p_chance": 1.0, "credible_level": 0.99, "log_bayes_factor": -50.0}
    props = {"watch": {"channels": ["kafka", "slack"]}}
    assert watch_passes("kafka", rules["kafka"], record, {"far": 1e-9}) is None  # no watch
    assert watch_passes("slack", rules["slack"], record, props) is True  # no cut on P_chance
    assert watch_passes("slack", rules["slack"], record, {"watch": {}}) is False  # kafka only
    assert watch_passes("kafka", rules["kafka"], {**record, "flags": ["test"]}, props) is False
    assert watch_channels({"watch": {"channels": "slack"}}) == {"kafka"}  # malformed
    assert subscribed("slack:ops", ["slack"]) and subscribed("slack:ops", ["slack:ops"])
    assert not subscribed("slack", ["slack:ops"]) and not subscribed("email:ab12", ["kafka"])


def test_end_closes_the_window(setup: tuple[list[str], str],
                               near_alerts: list[tuple[bytes, Alert]], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    opts, url = setup
    feed(opts, url, near_alerts)
    path = csv_file(tmp_path, "".join(f"{ra},{dec},0.5\n" for ra, dec in NEAR))
    # ZTF26aaaaaxd is first seen at 08:12 on 2026-11-20, ZTF26aaaaanw at 10:19.
    out = mma(opts, url, capsys, "watch", "add", "short", str(path), "--start", START,
              "--end", "2026-11-20T09:00:00Z")
    assert "note:" not in out
    [row] = [json.loads(line) for line in mma(opts, url, capsys, "watch", "list", "--json")
             .splitlines()]
    assert row["window_end"].startswith("2026-11-20T09:00:00")
    assert {r["object_id"] for r in of_watch(url, "short")} == {"ZTF26aaaaaxd"}


def test_window_hook_spans_start_to_end() -> None:
    props = {"watch": {"start": "2026-11-18T00:00:00+00:00", "end": "2026-11-28T12:00:00+00:00"}}
    assert window_days("watch", props, (0.0, 365.0)) == (0.0, 10.5)
    assert window_days("watch", {"watch": {"start": "x", "end": "y"}}, (0.0, 1.0)) == (0.0, 1.0)
    assert window_days("grb", props, (-1.0, 10.0)) == (-1.0, 10.0)


# ------------------------------------------------------------------ scoring
def test_a_watch_has_no_time_model_and_no_prior(config: Config) -> None:
    from datetime import UTC, datetime

    event = StoredEvent(1, "watch:x", "watch", "watch", "user", datetime(2026, 1, 1, tzinfo=UTC),
                        "active", False, ("watch:x",), {"watch": {}}, ())
    assert p_astro(event, config) == (1.0, "watch")
    window = config.window_days("watch")
    assert window == (0.0, 365.0)
    assert {ln_b_time("watch", t, window, config) for t in (0.0, 0.3, 200.0, 365.0)} == {0.0}
    assert ln_b_time("watch", -0.1, window, config) == LN_FLOOR
    assert ln_prior_history("watch", True, config) == 0.0
    assert check_priors(config) == []


@pytest.mark.parametrize("max_cl", [0.99, 0.9, 0.5])
def test_the_whole_footprint_and_nothing_else_is_inside_the_cut(max_cl: float) -> None:
    moc = discs_moc(parse_discs(b"148.66,26.75,1\n10,-5,0.01\n300,80,3\n"))
    region = build_region(footprint_table(moc, max_tiles=10**6, max_credible_level=max_cl))
    starts, _ = tile_ranges(np.asarray(moc.uniq_hpx, dtype=np.int64))
    inside = np.isin(region.lo, starts)  # the footprint's tiles
    assert inside.sum() == len(moc.uniq_hpx) and (~inside).any()
    assert region.credible_level[inside].max() <= max_cl < region.credible_level[~inside].min()
    probe = hpx29([148.66, 10.0, 300.0, 148.66], [26.75, -5.0, 80.0, 30.0])
    assert list(region.credible_level[region.lookup(probe)] <= max_cl) == [True] * 3 + [False]
    whole = build_region(footprint_table(moc, max_tiles=10**6, max_credible_level=1.0))
    assert whole.n_tiles == len(moc.uniq_hpx)  # a cut of 1: no rest of the sky


# ------------------------------------------------------------------ hostile input
def _fits_no_rows(tmp_path: Path) -> Path:
    src = moc_file(tmp_path, v1=True)
    from astropy.io import fits

    with fits.open(src) as hdus:
        hdus[1].data = hdus[1].data[:0]
        path = tmp_path / "empty.fits"
        hdus.writeto(path)
    return path


def _truncated(tmp_path: Path) -> Path:
    data = moc_file(tmp_path, v1=False).read_bytes()
    path = tmp_path / "cut.fits"
    path.write_bytes(data[:3000])
    return path


def _cut_in_table(tmp_path: Path) -> Path:
    """A real MOC whose headers are whole but whose table stops half-way."""
    data = moc_file(tmp_path, v1=True).read_bytes()
    path = tmp_path / "half.fits"
    path.write_bytes(data[:2 * 2880 + 100])
    return path


def _bad_nuniq(tmp_path: Path) -> Path:
    """A real NUNIQ MOC with one cell index below every order's (NUNIQ >= 4)."""
    from astropy.io import fits

    with fits.open(moc_file(tmp_path, v1=True)) as hdus:
        hdus[1].data["UNIQ"][0] = 1
        path = tmp_path / "bad-uniq.fits"
        hdus.writeto(path)
    return path


HOSTILE_CSV = {
    "not-numbers": ("148.6,abc,1\n", "not three numbers"),
    "radius-zero": ("148.6,26.7,0\n", "outside (0, 180]"),
    "radius-negative": ("148.6,26.7,-1\n", "outside (0, 180]"),
    "radius-over-180": ("148.6,26.7,180.5\n", "outside (0, 180]"),
    "nan": ("nan,26.7,1\n", "finite"),
    "dec-95": ("10,95,1\n", "outside [-90, 90]"),
    "ra-360": ("360,0,1\n", "outside [0, 360)"),
    "four-columns": ("1,2,3,4\n", "expected ra,dec,radius"),
    "no-rows": ("ra,dec,radius\n\n# nothing\n", "no ra,dec,radius rows"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CSV))
def test_bad_csv_is_refused(setup: tuple[list[str], str], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str], case: str) -> None:
    text, message = HOSTILE_CSV[case]
    err = mma(*setup, capsys, "watch", "add", "bad", str(csv_file(tmp_path, text)),
              status=1)
    assert err.startswith("mma: ") and message in err


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "x.bin", "not a FITS file"),
    (_fits_no_rows, "empty"),
    (_truncated, "truncated"),
    (_cut_in_table, "truncated"),
    (_bad_nuniq, "NUNIQ"),
    (lambda p: p / "latin1.csv", "not UTF-8"),
    (lambda p: p / "x.gz", "gzip"),
    (lambda p: p / "huge.fits", "above the cap"),
    (lambda p: p / "absent.fits", "no such file"),
], ids=["binary", "empty-moc", "truncated-moc", "table-cut", "bad-nuniq", "latin-1",
        "gzip-not-fits", "10-GB", "missing"])
def test_hostile_files_are_refused(setup: tuple[list[str], str], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str], make: Any,
                                   message: str) -> None:
    (tmp_path / "x.bin").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "x.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(100))
    (tmp_path / "latin1.csv").write_bytes("10,20,1 # café\n".encode("latin-1"))
    with open(tmp_path / "huge.fits", "wb") as fh:  # sparse: no disk used
        fh.truncate(10 * 2**30)
    err = mma(*setup, capsys, "watch", "add", "bad", str(make(tmp_path)), status=1)
    assert err.startswith("mma: ") and message in err


@pytest.mark.parametrize("args, message", [
    (("--start", "yesterday"), "not an ISO 8601 time"),
    (("--start", START, "--end", "2026-11-17"), "is not after the start"),
    (("--channels", "kafka,pager"), "--channels"),
    (("--channels", ","), "--channels"),
])
def test_bad_options_are_refused(setup: tuple[list[str], str], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                                 message: str) -> None:
    path = csv_file(tmp_path, "10,10,1\n")
    assert message in mma(*setup, capsys, "watch", "add", "x", str(path), *args, status=1)
    assert "watch name" in mma(*setup, capsys, "watch", "add", "a b\x1b", str(path), status=1)


# ------------------------------------------------------------------ PostgreSQL
def test_add_match_list_remove_on_postgresql(
        setup: tuple[list[str], str], postgres_url: str,
        near_alerts: list[tuple[bytes, Alert]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    opts, _ = setup
    feed(opts, postgres_url, near_alerts)
    mma(opts, postgres_url, capsys, "watch", "add", "pg", str(moc_file(tmp_path, v1=False)),
        "--start", START)
    check_watch_scores(of_watch(postgres_url, "pg"))
    [row] = [json.loads(line) for line in mma(opts, postgres_url, capsys, "watch", "list",
                                              "--json").splitlines()]
    assert row["candidates"] == 2 and row["channels"] == ["kafka"]
    assert "2 candidates withdrawn" in mma(opts, postgres_url, capsys, "watch", "remove", "pg")
    assert {r["status"] for r in of_watch(postgres_url, "pg")} == {"retracted"}

