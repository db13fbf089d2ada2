"""Commands that act on an event or a candidate, or test a position against a region.

``mma resend``, ``mute`` and ``unmute`` write (through :mod:`mma.db.actions`),
but like the looking commands they refuse a database that does not exist or
is not migrated: acting on an empty new database would only hide a mistyped
``--db``. ``mma check`` and ``mma picture`` only read.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mma.cli.common import (
    UsageError,
    add_db,
    add_json,
    print_json,
    print_jsonl,
    print_table,
    read_engine,
)
from mma.cli.look import find_candidate, find_event, num, p2, when
from mma.config import Config
from mma.printable import printable

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from mma.db.queries import EventRow
    from mma.skymaps.region import Region


def cmd_mute(args: argparse.Namespace, config: Config) -> int:
    """Mute an event: no new deliveries of its candidates to people (Slack, email).

    Kafka still gets every revision, and retractions of what people were told
    still reach them. Deliveries to people already waiting are parked with the
    error ``muted``; ``mma unmute`` does not send them (``mma resend`` does).
    """
    from mma.db.actions import mute

    with read_engine(config, args.db).begin() as conn:
        pk = find_event(conn, args.event)
        parked = mute(conn, pk, datetime.now(UTC))
    print(printable(f"{args.event} muted; {parked} waiting deliveries to people parked"))
    return 0


def cmd_unmute(args: argparse.Namespace, config: Config) -> int:
    """Unmute an event: its new revisions reach people again (parked ones stay parked)."""
    from mma.db.actions import unmute

    with read_engine(config, args.db).begin() as conn:
        done = unmute(conn, find_event(conn, args.event))
    print(printable(f"{args.event} {'unmuted' if done else 'was not muted'}"))
    return 0


def cmd_resend(args: argparse.Namespace, config: Config) -> int:
    """Queue a candidate's latest published revision again (a new pending delivery).

    To --channel, or else to every enabled channel that was sent the candidate.
    A mute does not hold it back. ``mma deliver`` or the daemon sends it.
    """
    from mma.channels import enabled_channels
    from mma.db.actions import resend
    from mma.db.queries import carried_channels

    enabled = sorted(enabled_channels(config))
    if args.channel is not None and args.channel not in enabled:
        raise UsageError(f"channel {args.channel!r} is not enabled (enabled: "
                         f"{', '.join(enabled) or 'none'})")
    with read_engine(config, args.db).begin() as conn:
        cid = find_candidate(conn, args.id)
        channels = ([args.channel] if args.channel is not None
                    else [c for c in carried_channels(conn, cid) if c in enabled])
        if not channels:
            raise UsageError(f"no enabled channel was sent {cid}: name one with --channel")
        queued = resend(conn, cid, channels, datetime.now(UTC))
    if args.json:
        print_jsonl([asdict(q) for q in queued])
    else:
        print_table(("outbox id", "coincidence", "rev", "kind", "channel"),
                    [[q.outbox_id, q.coincidence_id, q.revision, q.kind, q.channel]
                     for q in queued])
    return 0


def _current(conn: Connection, name: str) -> tuple[EventRow, Region]:
    """The event known as *name* and its current region."""
    from mma.db.queries import list_events
    from mma.delivery import region_loader

    [event] = list_events(conn, datetime.now(UTC), event_pk=find_event(conn, name))
    region = None if event.region_pk is None else region_loader(conn.engine)(event.region_pk)
    if region is None:
        raise UsageError(f"event {name!r} has no stored region")
    return event, region


def most_probable_point(region: Region) -> tuple[float, float]:
    """RA, Dec [deg, ICRS] of the centre of the region's most probable tile."""
    import healpy as hp
    import numpy as np

    from mma.skymaps.region import MAX_ORDER

    i = region.density_order[0]
    theta, phi = hp.pix2ang(1 << MAX_ORDER, (region.lo[i] + region.hi[i]) // 2, nest=True)
    return float(np.rad2deg(phi)), float(90.0 - np.rad2deg(theta))


def _label(text: object) -> str:
    """Text for matplotlib: printable, and no ``$`` that would start mathtext."""
    return printable(text).replace("$", r"\$")


def cmd_picture(args: argparse.Namespace, config: Config) -> int:
    """Draw an event's current region as PNG with its ranked live candidates marked.

    Centred on --candidate (any candidate of the event, ranked or not), else on the
    region's most probable point.
    """
    from mma.db.queries import list_candidates
    from mma.emitters.picture import render_region_png

    with read_engine(config, args.db).connect() as conn:
        event, region = _current(conn, args.event)
        found = [c for c in list_candidates(conn, event.pk)
                 if c.ra_deg is not None and c.dec_deg is not None]
        chosen = None if args.candidate is None else find_candidate(conn, args.candidate)
    title = f"{event.event_id}  region v{event.region_version}"
    if chosen is not None:
        centre = next((c for c in found if c.coincidence_id == chosen), None)
        if centre is None or centre.ra_deg is None or centre.dec_deg is None:
            raise UsageError(f"{chosen} is not a candidate of {event.event_id} with a position")
        ra, dec, label = centre.ra_deg, centre.dec_deg, f"{centre.object_id}"
        title += f"  {centre.survey} {centre.object_id}"
    else:
        (ra, dec), label = most_probable_point(region), "most probable"
    marks = [(float(c.ra_deg or 0.0), float(c.dec_deg or 0.0), _label(f"#{c.rank} {c.object_id}"))
             for c in found if c.rank is not None and c.coincidence_id != chosen]
    png = render_region_png(region, ra_deg=ra, dec_deg=dec, title=_label(title),
                            label=_label(label), marks=marks)
    Path(args.output).write_bytes(png)
    print(printable(f"{args.output}: {len(png)} bytes, {len(marks)} candidates marked"))
    return 0


def _when_given(text: str | None) -> datetime:
    """TIME as UTC (a time without zone is UTC); now when not given."""
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"TIME {text!r} is not an ISO 8601 time") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def score_position(conn: Connection, config: Config, event: EventRow, region: Region,
                   survey: str, ra_deg: float, dec_deg: float, at: datetime) -> dict[str, Any]:
    """What a new object of *survey* at (RA, Dec) [deg, ICRS], seen once at *at*, would score.

    Through the daemon's own :class:`~mma.match.scorer.Scorer` (the survey's
    background as measured at *at*), with a summary of one vetted detection and
    no earlier one. Outside the map's tiles nothing is scored (density 0).
    """
    from mma.db.store import load_event
    from mma.match.active import ActiveRegions
    from mma.match.candidate import Summary
    from mma.match.scorer import Scorer

    scorer = Scorer(config)
    assert event.region_pk is not None and event.region_version is not None  # _current
    active = ActiveRegions(config, scorer.max_cl).activate(
        event.region_pk, event.region_version, load_event(conn, event.pk), region)
    tile = int(region.locate([ra_deg], [dec_deg])[0])
    t0 = active.event.event_time
    out: dict[str, Any] = {
        "event_id": event.event_id, "region_version": event.region_version, "survey": survey,
        "ra": ra_deg, "dec": dec_deg, "time": at, "in_map": tile >= 0,
        "prob_density_sr": float(region.probdensity[tile]) if tile >= 0 else 0.0,
        "credible_level": float(region.credible_level[tile]) if tile >= 0 else 1.0,
        "searched_area_deg2": float(region.searched_area_deg2[tile]) if tile >= 0 else None,
        "max_credible_level": scorer.max_cl, "dt_days": (at - t0).total_seconds() / 86400.0,
        "window_start": active.start, "window_end": active.end,
        "in_window": active.start <= at <= active.end,
        "log_bayes_factor": None, "p_chance": None, "components": None}
    out["inside"] = out["in_map"] and out["credible_level"] <= scorer.max_cl
    if tile < 0:
        return out
    summary = Summary(
        ra_deg=ra_deg, dec_deg=dec_deg, scatter_arcsec=0.0, detections=(), n_vetoed=0,
        vetoes=(), first_detection=at, first_after_t0=at if at >= t0 else None,
        first_in_window=at, last_detection=at, n_prior=0, history_source="stored_alerts",
        peak_magnitude=None, peak_band=None, rise_rate=None, fade_rate=None,
        distance_mpc=None, latest_alert_pk=0)
    score = scorer.score(conn, active, survey, summary, tile, at, {event.region_pk})
    out.update(log_bayes_factor=score.log_bayes_factor, p_chance=score.p_chance,
               p_association=score.p_association, components=score.components())
    return out


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    """Score a position against an event's current region as a new object there would be.

    Density, credible level, the window, and the ln B and P_chance of a new
    object of --survey detected once at TIME (default now), with no earlier
    detection, through the daemon's own scorer.
    """
    if not (math.isfinite(args.ra) and math.isfinite(args.dec) and -90 <= args.dec <= 90):
        raise UsageError("RA and Dec must be finite degrees, Dec within [-90, 90]")
    at = _when_given(args.time)
    with read_engine(config, args.db).connect() as conn:
        event, region = _current(conn, args.event)
        result = score_position(conn, config, event, region, args.survey,
                                args.ra % 360.0, args.dec, at)
    if args.json:
        print_json(result)
        return 0
    rows = [("event", f"{event.event_id} region v{event.region_version} ({event.status})"),
            ("position [deg]", f"{args.ra % 360.0:.5f} {args.dec:+.5f}"),
            ("time", when(at)), ("in the map", "yes" if result["in_map"] else "no"),
            ("density [sr⁻¹]", num(result["prob_density_sr"], ".4g")),
            ("credible level", num(result["credible_level"], ".2f")),
            ("inside", f"{'yes' if result['inside'] else 'no'} "
                       f"(max credible level {result['max_credible_level']:.2f})"),
            ("Δt [d]", f"{result['dt_days']:+.3f}"),
            ("window", f"{when(result['window_start'])} .. {when(result['window_end'])} "
                       f"({'inside' if result['in_window'] else 'outside'})"),
            ("ln B (new object)", num(result["log_bayes_factor"], ".1f")),
            ("P_chance (new object)", p2(result["p_chance"]))]
    print_table(("field", "value"), rows)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the acting commands to the ``mma`` parser."""
    def command(name: str, func: Any, json: bool = False) -> argparse.ArgumentParser:
        doc = func.__doc__ or ""
        p = sub.add_parser(name, help=doc.splitlines()[0], description=doc)
        add_db(p)
        if json:
            add_json(p)
        p.set_defaults(func=func)
        return p

    for name, func in (("mute", cmd_mute), ("unmute", cmd_unmute)):
        command(name, func).add_argument("event", help="event id or alias")
    p = command("resend", cmd_resend, json=True)
    p.add_argument("id", help="coincidence id, or its first 8 or more characters")
    p.add_argument("--channel", help="outbox channel (default: every one it was sent to)")
    p = command("picture", cmd_picture)
    p.add_argument("event", help="event id or alias")
    p.add_argument("--candidate", help="centre on this candidate (coincidence id or prefix)")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p = command("check", cmd_check, json=True)
    p.add_argument("event", help="event id or alias")
    p.add_argument("ra", type=float, help="right ascension [deg, ICRS]")
    p.add_argument("dec", type=float, help="declination [deg, ICRS]")
    p.add_argument("time", nargs="?", help="detection time, ISO 8601 (UTC; default now)")
    p.add_argument("--survey", default="ZTF", help="survey whose background applies "
                   "(as stored: ZTF, LSST...; default ZTF)")
