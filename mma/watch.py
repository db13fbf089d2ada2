"""Watch regions: a user's sky footprint matched like any event (``mma watch``).

A watch is stored as an event of messenger and class ``watch`` (event id
``watch:<name>``, instrument ``user``) with one notice (handler ``watch``, type
``WATCH``, its raw bytes the file given) and one region, so the correlator matches
optical alerts against it in both directions and its candidates are like any
others. The event's properties hold ``{"watch": {"channels", "source_file",
"start", "end", "kind", "area_deg2"}}``; removing a watch retracts the event.

Three inputs give the region (:func:`read_footprint`):

* a MOC FITS file (mocpy's ``RANGE`` or ``NUNIQ`` tables, no probability): a
  *footprint*, given a uniform density over its tiles;
* a multi-order sky map (``UNIQ`` + ``PROBDENSITY``, as LVK's): used as is;
* a CSV file of ``ra,dec,radius`` rows [deg, ICRS]: the union of the discs, uniform
  density over the union, each disc tiled at an order fine enough for its radius
  (:func:`disc_order`).

A footprint is not a probability: every tile is as likely as any other. The
correlator ranks tiles by density and indexes those inside ``[scoring]
max_credible_level`` (0.99); among equal tiles that rank is arbitrary, so a
footprint holding all the probability would lose its last-ranked 1 %. It is
therefore given ``max_credible_level`` minus a hair, and the rest of the sky the
remainder at a lower density, ranked after every footprint tile and so never
matched (:func:`footprint_table`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import astropy.units as u
import numpy as np
from astropy.table import Table
from mocpy import MOC

from mma.channels import excluded_flags, has_flag
from mma.errors import BadSkymap, HostileMessage, Ignored, InvalidValue
from mma.models import Notice, RegionSpec
from mma.skymaps.fits_table import read_layout
from mma.skymaps.region import tile_ranges
from mma.skymaps.spec import region_table

log = logging.getLogger(__name__)

MESSENGER: Final = "watch"
EVENT_CLASS = HANDLER = "watch"
NOTICE_TYPE = "WATCH"
PREFIX = "watch:"
DEFAULT_CHANNELS = ("kafka",)
MAX_DISCS = 10_000  # CSV rows: each disc is tiled on its own before the union
MAX_DISC_ORDER = 22  # ~0.05 arcsec tiles: enough for a 1 arcsec disc
NPIX29 = 12 << 58  # level-29 pixels on the sky
SKY_DEG2 = 4.0 * math.pi * (180.0 / math.pi) ** 2
# The footprint's probability stays this far below max_credible_level, so that rounding
# in the cumulative sum never pushes its last tile over the cut (see the module doc).
MARGIN = 1e-9
# The rest of the sky's leading tile is this much denser than the others (module doc).
LEAD = 1e-6


@dataclass(frozen=True)
class Footprint:
    """A watch's region: *kind* ``moc``, ``skymap`` or ``discs``; *spec* a ``skymap``
    spec of multi-order FITS bytes; *area_deg2* [deg^2], None for a probability map."""

    kind: str
    spec: RegionSpec
    area_deg2: float | None


class WatchHandler:
    """The handler named on a watch's notices; watches are made by ``mma watch``, not parsed."""

    NAME = HANDLER
    KIND = "notice"

    def parse(self, raw: bytes, *, topic: str) -> Notice:
        """Never used: a watch notice is built from the command line."""
        raise Ignored("watch notices are made by mma watch add, not read from a stream")


def event_id(name: str) -> str:
    """The event id of watch *name*."""
    return PREFIX + name


def read_footprint(data: bytes, *, max_bytes: int, max_tiles: int,
                   max_credible_level: float) -> Footprint:
    """The region of a watch file: MOC FITS, multi-order sky map (maybe gzipped) or CSV.

    A sky map is decoded here once to check it (the notice path decodes it again).

    Raises
    ------
    mma.errors.BadMessage
        A file of none of these forms, an empty footprint, bad CSV values, more
        tiles than *max_tiles* or more bytes than *max_bytes*.
    """
    if len(data) > max_bytes:
        raise HostileMessage(f"file of {len(data)} bytes, above the cap of {max_bytes}")
    if data[:2] == b"\x1f\x8b":  # compressed: only sky maps come so (LVK's .fits.gz)
        spec = RegionSpec(kind="skymap", skymap=data)
        try:
            region_table(spec, max_bytes=max_bytes, max_tiles=max_tiles)
        except BadSkymap as exc:
            raise BadSkymap(f"{exc} (a gzip file must be a multi-order sky map; give a MOC "
                            "uncompressed)") from None
        return Footprint("skymap", spec, None)
    if data[:9] == b"SIMPLE  =":
        layout = read_layout(lambda end: _prefix(data, end), max_bytes)
        if "PROBDENSITY" in layout.columns:  # a sky map, decoded here to check it
            spec = RegionSpec(kind="skymap", skymap=data)
            region_table(spec, max_bytes=max_bytes, max_tiles=max_tiles)
            return Footprint("skymap", spec, None)
        moc = _moc_of(layout, data)
        return _footprint("moc", moc, max_tiles, max_credible_level)
    moc = discs_moc(parse_discs(data))
    return _footprint("discs", moc, max_tiles, max_credible_level)


def _prefix(data: bytes, end: int) -> bytes:
    if len(data) < end:
        raise BadSkymap(f"truncated FITS file: {len(data)} bytes, the headers declare {end}")
    return data


def _moc_of(layout: Any, data: bytes) -> MOC:
    """The MOC of a FITS table of ``UNIQ`` cells or ``RANGE`` pairs (MOC 1.x and 2.0)."""
    if layout.rows == 0:
        raise InvalidValue("the MOC is empty (no cells)")
    _prefix(data, layout.data_end)  # the whole table is there
    if "UNIQ" in layout.columns:
        lo, hi = tile_ranges(layout.view(data, "UNIQ")[:, 0].astype(np.int64))
        ranges = np.stack([lo, hi], axis=1)
    elif "RANGE" in layout.columns:
        flat = layout.view(data, "RANGE")[:, 0].astype(np.int64)
        if len(flat) % 2:
            raise BadSkymap("a RANGE MOC needs an even number of values (start, end pairs)")
        ranges = flat.reshape(-1, 2)
    else:
        raise BadSkymap(f"no UNIQ, RANGE or PROBDENSITY column (columns: "
                        f"{sorted(layout.columns)[:10]}): not a MOC or a multi-order map")
    if np.any(ranges[:, 0] < 0) or np.any(ranges[:, 1] > NPIX29) or np.any(
            ranges[:, 1] <= ranges[:, 0]):
        raise BadSkymap("MOC cells outside the sky or empty ranges")
    merged = _merged(ranges)
    return MOC.from_depth29_ranges(_finest(merged), merged.astype(np.uint64))


def _merged(ranges: np.ndarray) -> np.ndarray:
    """Sorted, disjoint level-29 ranges covering what *ranges* cover (overlaps allowed)."""
    ranges = ranges[np.argsort(ranges[:, 0], kind="stable")]
    reach = np.maximum.accumulate(ranges[:, 1])
    starts = np.r_[True, ranges[1:, 0] > reach[:-1]]
    ends = np.r_[starts[1:], True]
    return np.stack([ranges[starts, 0], reach[ends]], axis=1)


def _finest(ranges: np.ndarray) -> int:
    """The finest order whose cells the range bounds fall on (no cell is degraded)."""
    bits = int(np.bitwise_or.reduce(ranges.ravel()))
    if bits == 0:
        return 0
    trailing = (bits & -bits).bit_length() - 1  # bounds are multiples of 2**trailing
    return max(0, 29 - trailing // 2)


@dataclass(frozen=True)
class Disc:
    """One CSV row: a disc of *radius_deg* around (*ra_deg*, *dec_deg*) [deg, ICRS]."""

    ra_deg: float
    dec_deg: float
    radius_deg: float


def parse_discs(data: bytes) -> list[Disc]:
    """The discs of a CSV file of ``ra,dec,radius`` rows [deg]; a header row is optional.

    Raises
    ------
    mma.errors.InvalidValue
        Not UTF-8 text, a row without three numbers, RA outside [0, 360), Dec outside
        [-90, 90], a radius <= 0 or > 180 deg, no rows, or more than :data:`MAX_DISCS`.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidValue("not a FITS file and not UTF-8 CSV text") from exc
    discs = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and [c.lower() for c in cells[:3]] == ["ra", "dec", "radius"]:
            continue
        discs.append(_disc(cells, number))
        if len(discs) > MAX_DISCS:
            raise HostileMessage(f"more than {MAX_DISCS} discs: give a MOC instead")
    if not discs:
        raise InvalidValue("the CSV file has no ra,dec,radius rows")
    return discs


def _disc(cells: list[str], number: int) -> Disc:
    if len(cells) != 3:
        raise InvalidValue(f"CSV line {number}: expected ra,dec,radius [deg], got "
                           f"{len(cells)} values")
    try:
        ra, dec, radius = (float(c) for c in cells)
    except ValueError:
        raise InvalidValue(f"CSV line {number}: {','.join(cells)[:60]!r} is not three "
                           "numbers") from None
    if not all(math.isfinite(v) for v in (ra, dec, radius)):
        raise InvalidValue(f"CSV line {number}: values must be finite")
    if not (0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0):
        raise InvalidValue(f"CSV line {number}: RA {ra} outside [0, 360) or Dec {dec} "
                           "outside [-90, 90] deg")
    if not (0.0 < radius <= 180.0):
        raise InvalidValue(f"CSV line {number}: radius {radius} deg outside (0, 180]")
    return Disc(ra, dec, radius)


def disc_order(radius_deg: float) -> int:
    """The HEALPix order whose tiles are at most 1/32 of *radius_deg* across.

    A disc is covered by every tile it touches, so its area is overstated by about
    two tiles' width around its edge: ~4 % at this order, ~300 tiles a disc.
    """
    size_rad = math.sqrt(math.pi / 3.0)  # tile size at order 0, sqrt(4 pi / 12) [rad]
    wanted = math.radians(radius_deg) / 32.0
    return min(max(math.ceil(math.log2(size_rad / wanted)), 0), MAX_DISC_ORDER)


def discs_moc(discs: Iterable[Disc]) -> MOC:
    """The union of *discs*, each tiled at :func:`disc_order` of its radius."""
    by_order: dict[int, list[Disc]] = {}
    for disc in discs:
        by_order.setdefault(disc_order(disc.radius_deg), []).append(disc)
    union = MOC.new_empty(0)
    for order, group in sorted(by_order.items()):
        part = MOC.from_cones(lon=np.array([d.ra_deg for d in group]) * u.deg,
                              lat=np.array([d.dec_deg for d in group]) * u.deg,
                              radius=np.array([d.radius_deg for d in group]) * u.deg,
                              max_depth=order, union_strategy="small_cones")
        union = union.union(part)
    return union


def _footprint(kind: str, moc: MOC, max_tiles: int, max_cl: float) -> Footprint:
    area = float(moc.sky_fraction) * SKY_DEG2
    if area <= 0.0:
        raise InvalidValue("the footprint is empty")
    table = footprint_table(moc, max_tiles=max_tiles, max_credible_level=max_cl)
    buffer = io.BytesIO()
    table.write(buffer, format="fits")
    return Footprint(kind, RegionSpec(kind="skymap", skymap=buffer.getvalue()), area)


def footprint_table(moc: MOC, *, max_tiles: int, max_credible_level: float) -> Table:
    """A multi-order table (``UNIQ``, ``PROBDENSITY`` [sr^-1]) uniform over *moc*.

    The footprint holds ``max_credible_level - MARGIN`` of the probability and the
    rest of the sky the remainder, at a lower density, so that every footprint tile
    and no other lies inside the correlator's credible-level cut (module docstring).
    With a cut of 1, or a footprint of nearly the whole sky, there is no rest.

    Raises
    ------
    mma.errors.HostileMessage
        More than *max_tiles* tiles (footprint and rest together).
    """
    inside = np.asarray(moc.uniq_hpx, dtype=np.int64)
    fraction = float(moc.sky_fraction)
    sky_sr = 4.0 * math.pi
    share = max_credible_level - MARGIN
    inner = share / (fraction * sky_sr)
    outer = (1.0 - share) / ((1.0 - fraction) * sky_sr) if fraction < 1.0 else math.inf
    # A cut of 1 indexes every tile: the rest of the sky would be matched too.
    pad = share > 0.0 and max_credible_level < 1.0 and outer * (1.0 + 2 * LEAD) < inner
    outside = (np.asarray(moc.complement().uniq_hpx, dtype=np.int64) if pad
               else np.empty(0, dtype=np.int64))
    n_tiles = len(inside) + len(outside)
    if n_tiles > max_tiles:
        raise HostileMessage(f"the footprint needs {n_tiles} tiles, above the cap of "
                             f"{max_tiles} (limits.max_region_tiles): coarsen the MOC")
    if not pad:
        density = np.full(len(inside), 1.0 / (fraction * sky_sr))
    else:
        rest = np.full(len(outside), outer)
        # Equal tiles rank finest first; the coarsest of the rest leads instead, so the
        # first tile past the footprint holds enough probability to cross the cut.
        rest[np.argmin(outside)] *= 1.0 + LEAD
        density = np.concatenate([np.full(len(inside), inner), rest])
    table = Table({"UNIQ": np.concatenate([inside, outside]), "PROBDENSITY": density})
    table["PROBDENSITY"].unit = u.sr**-1
    return table


def watch_properties(*, channels: Iterable[str], source_file: str, start: datetime,
                     end: datetime | None, kind: str, area_deg2: float | None,
                     ) -> dict[str, Any]:
    """The event properties of a watch (see the module docstring)."""
    return {"watch": {"channels": sorted(set(channels)), "source_file": source_file,
                      "start": start.isoformat(), "end": None if end is None else end.isoformat(),
                      "kind": kind, "area_deg2": area_deg2}}


def add_notice(name: str, footprint: Footprint, properties: Mapping[str, Any],
               start: datetime, now: datetime) -> Notice:
    """The notice that creates watch *name*: its time is the start (its t0)."""
    return Notice(event_id=event_id(name), messenger=MESSENGER, instrument="user",
                  notice_type=NOTICE_TYPE, event_time=start, issued_time=now,
                  region=footprint.spec, properties=properties, event_class=EVENT_CLASS)


def remove_notice(name: str, start: datetime, now: datetime) -> tuple[Notice, bytes]:
    """The retraction that removes watch *name*, and its raw bytes (unique per removal)."""
    raw = json.dumps({"mma_watch_remove": name, "at": now.isoformat()}).encode()
    notice = Notice(event_id=event_id(name), messenger=MESSENGER, instrument="user",
                    notice_type="RETRACTION", event_time=start, issued_time=now,
                    retraction=True, event_class=EVENT_CLASS)
    return notice, raw


def watch_channels(properties: Mapping[str, Any]) -> frozenset[str] | None:
    """The channels a watch's candidates go to; None for an event that is not a watch.

    A watch whose stored channels are missing or malformed gets
    :data:`DEFAULT_CHANNELS`: it never wakes anyone unless asked.
    """
    watch = properties.get("watch") if isinstance(properties, Mapping) else None
    if not isinstance(watch, Mapping):
        return None
    channels = watch.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        return frozenset(DEFAULT_CHANNELS)
    return frozenset(channels)


def subscribed(channel: str, chosen: Iterable[str]) -> bool:
    """Whether outbox *channel* is among *chosen*: by name, or by family (``slack``
    takes every ``slack:<destination>``, ``email`` every ``email:<recipient>``)."""
    wanted = set(chosen)
    return channel in wanted or channel.split(":", 1)[0] in wanted


def watch_passes(channel: str, rules: Mapping[str, Any], record: Mapping[str, Any],
                 properties: Mapping[str, Any]) -> bool | None:
    """Whether a watch's new or updated candidate goes to *channel*; None if not a watch.

    The hook for :func:`mma.outbox.enqueue`: where it returns a bool, that replaces
    :func:`mma.channels.passes`. A watch's candidates go only to its own channels,
    and there the statistical cuts (P_chance, ln B, credible level, area, FAR,
    p_astro) do not apply: a footprint has no probability to cut on. The channel's
    surveys, flag rules (``exclude_flags``, ``include_test``, ``require_flags``) and
    ``updates`` still do.
    """
    chosen = watch_channels(properties)
    if chosen is None:
        return None
    flags = [str(f) for f in record.get("flags") or ()]
    return (subscribed(channel, chosen)
            and (not rules.get("surveys") or record.get("survey") in rules["surveys"])
            and not any(has_flag(flags, name) for name in excluded_flags(rules))
            and all(has_flag(flags, str(name)) for name in rules.get("require_flags") or ())
            and (record.get("kind") != "update" or not rules.get("updates")
                 or bool(set(record.get("changes") or ()) & set(rules["updates"]))))


def window_days(event_class: str, properties: Mapping[str, Any],
                default: tuple[float, float]) -> tuple[float, float]:
    """A watch's window relative to its start [days]: ``[0, end - start]`` when it has an
    end, else *default* (the ``[windows] watch`` of the configuration).

    The hook for where a region's window is set (``mma.ingest.notices.store_region``,
    ``mma.match.active.ActiveRegions.activate``).
    """
    watch = properties.get("watch") if event_class == EVENT_CLASS else None
    if not isinstance(watch, Mapping) or not watch.get("end") or not watch.get("start"):
        return default
    try:
        start = datetime.fromisoformat(str(watch["start"]))
        end = datetime.fromisoformat(str(watch["end"]))
        span = (end - start).total_seconds() / 86400.0
    except (TypeError, ValueError):
        return default
    return (0.0, span) if math.isfinite(span) and span > 0 else default
