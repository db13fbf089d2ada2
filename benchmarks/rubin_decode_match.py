"""Rubin decode + match, one core: ``parse()`` of every alert vs "decode what matching needs first".

20,000 Confluent-framed Rubin alerts (the corpus packets: real LSSTCam v9.0,
v9/v10/v11 samples and the HSC v7.1 alerts, re-encoded with fastavro at
positions uniform on the sky and unique ``diaSourceId``) against 10 active
LVK-like regions (``match_throughput.lvk_like``: 20-50k tiles each, 90 % cut),
each with a time window holding every alert:

(a) ``rubin.parse`` of every frame, then ``RegionIndex.match(hpx29(ra, dec))``
    and the window check;
(b) ``rubin_frames.match_keys`` (leading-field decode only) + ``hpx29`` +
    ``RegionIndex.match`` + window check, then ``rubin.parse`` of each matched
    frame only (once, however many regions it falls in).

For 1 and 10 active regions, prints alerts/s of both, their ratio, the fraction
of alerts matched, and the rate of (b)'s first step alone (decode + match,
without the full parse of the matches); checks that (a) and (b) give the same
(alert_id, region, tile) set. Target: (b) >= 50,000 alerts/s. (b) costs the
decode + match of every alert plus one full parse per *matched* alert, so its
rate falls with the fraction of the sky the active regions cover: these maps
(lobes of 3-15 deg) are broad, ten of them cover about half the sky.
Run: ``python benchmarks/rubin_decode_match.py`` (about 20 s).
"""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
from match_throughput import lvk_like

from mma.formats import rubin as schemas
from mma.formats import rubin_frames
from mma.handlers import rubin
from mma.skymaps.index import RegionIndex
from mma.skymaps.region import build_region, hpx29

RUBIN = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "alerts" / "rubin"
N_ALERTS = 20_000
N_REGIONS = 10
Match = set[tuple[str, int, int]]


def templates() -> list[tuple[int, dict[str, Any]]]:
    """(schema id, full record) of every corpus Rubin packet that parses."""
    out = []
    raw = (RUBIN / "avro/lsst_v9_0_7912941781254298.confluent.avro").read_bytes()
    out.append((900, rubin_frames.decode_full(raw)))
    for path in [RUBIN / "avro/lsst_v7_1_hsc_cosmos_10alerts.avro",
                 *sorted(RUBIN.glob("schema/v*/fakeAlert.avro"))]:
        with path.open("rb") as f:
            reader = fastavro.reader(f)
            schema_id = schemas.schema_id_of_name(reader.writer_schema["name"])
            assert schema_id is not None
            out += [(schema_id, r) for r in reader]
    return [(sid, r) for sid, r in out if r["diaSource"]["midpointMjdTai"] < schemas.MJD_MAX]


def frames(rng: np.random.Generator, n: int) -> list[bytes]:
    """*n* frames cycling over the templates, uniform on the sky, unique diaSourceId."""
    base = templates()
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    out = []
    for i in range(n):
        schema_id, record = base[i % len(base)]
        source = record["diaSource"]
        source["ra"], source["dec"] = float(ra[i]), float(dec[i])
        source["diaSourceId"] = 10**15 + i
        if "diaSourceId" in record:  # v9+ repeats it at the top level
            record["diaSourceId"] = source["diaSourceId"]
        buf = io.BytesIO()
        buf.write(struct.pack(">bi", 0, schema_id))
        fastavro.schemaless_writer(buf, schemas.load(schema_id).parsed, record)
        out.append(buf.getvalue())
    return out


def full_path(data: list[bytes], index: RegionIndex, window: dict[int, tuple[float, float]]
              ) -> Match:
    """(a) parse every frame, then match."""
    alerts = [rubin.parse(f, topic="lsst-alerts-v11") for f in data]
    ra = np.array([a.ra_deg for a in alerts])
    dec = np.array([a.dec_deg for a in alerts])
    when = np.array([a.time.timestamp() for a in alerts])
    out = set()
    for p, k, j in zip(*index.match(hpx29(ra, dec)), strict=True):
        lo, hi = window[int(k)]
        if lo <= when[p] <= hi:
            out.add((alerts[p].alert_id, int(k), int(j)))
    return out


def candidates(data: list[bytes], index: RegionIndex, window: dict[int, tuple[float, float]]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(b), first step: leading fields of every frame, match, window check.

    Returns (frame index, region key, tile) of every match in its region's window.
    """
    keys = rubin_frames.match_keys(data)
    good = np.flatnonzero(keys.ok)
    assert len(good) == len(data)  # every benchmark frame is well formed
    point, key, tile = index.match(hpx29(keys.ra_deg[good], keys.dec_deg[good]))
    lo = np.array([window[int(k)][0] for k in key])
    hi = np.array([window[int(k)][1] for k in key])
    when = keys.time_unix[good[point]]
    keep = (lo <= when) & (when <= hi)
    return good[point[keep]], key[keep], tile[keep]


def batch_path(data: list[bytes], index: RegionIndex, window: dict[int, tuple[float, float]]
               ) -> Match:
    """(b) leading fields of every frame, match, then parse each matched frame once."""
    frame, key, tile = candidates(data, index, window)
    alerts = {int(i): rubin.parse(data[i], topic="lsst-alerts-v11") for i in np.unique(frame)}
    return {(alerts[int(i)].alert_id, int(k), int(j))
            for i, k, j in zip(frame, key, tile, strict=True)}


def best(func: Callable[[], object], repeat: int = 3) -> float:
    """Least wall time [s] of *repeat* calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(7)
    t = time.perf_counter()
    data = frames(rng, N_ALERTS)
    regions = [build_region(lvk_like(rng)[0]) for _ in range(N_REGIONS)]
    sizes = [r.n_tiles for r in regions]
    print(f"{N_ALERTS} frames ({sum(map(len, data)) / 2**20:.0f} MB), {N_REGIONS} LVK-like "
          f"regions ({min(sizes)}-{max(sizes)} tiles) made in {time.perf_counter() - t:.1f} s")
    # Active regions: the alerts' epochs lie in every window (as for a live stream).
    print(f"{'regions':>7s} {'(a) al/s':>10s} {'(b) al/s':>10s} {'(b)/(a)':>8s} "
          f"{'matched':>8s} {'decode+match al/s':>18s}")
    for n in (1, N_REGIONS):
        index = RegionIndex(0.9)
        for key, region in enumerate(regions[:n]):
            index.add(key, region)
        index.match(np.zeros(1, dtype=np.int64))  # build the index outside the timings
        window = {k: (0.0, 5e9) for k in range(n)}
        full, batch = full_path(data, index, window), batch_path(data, index, window)
        assert full == batch, "batch path differs from the full path"
        rate_a = N_ALERTS / best(lambda i=index, w=window: full_path(data, i, w), 2)
        rate_b = N_ALERTS / best(lambda i=index, w=window: batch_path(data, i, w))
        rate_c = N_ALERTS / best(lambda i=index, w=window: candidates(data, i, w))
        matched = len({a for a, _, _ in full})
        print(f"{n:7d} {rate_a:10,.0f} {rate_b:10,.0f} {rate_b / rate_a:8.1f} "
              f"{100 * matched / N_ALERTS:7.1f}% {rate_c:18,.0f}")
        print(f"        same (alert, region, tile) set from (a) and (b): {len(full)} matches; "
              f"target (b) >= 50,000 alerts/s: {'met' if rate_b >= 50_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
