"""The event page and the index as HTML text (:mod:`mma.page.markup` escapes every value).

Pictures are referenced by relative file names (``sky.png``, ``lc-<n>.png``,
``stamps-<n>.png``) that :mod:`mma.page.images` wrote beside the page; a picture
not drawn is not referenced.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mma import __version__
from mma.db.pages import ActiveEvent
from mma.emitters.joint_message import far_per_years
from mma.page.data import CandidateView, EventPage, JointView, strings
from mma.page.images import IMAGES_CAP, Images
from mma.page.links import Link
from mma.page.markup import cell, esc, fmt, fmt_time, shell, table

__all__ = ("event_html", "index_html")

RANKED_COLUMNS = (
    ("rank", "#"), ("candidate", "candidate"), ("survey", "survey"), ("dt", "Δt [d]"),
    ("credible_level", "credible level"), ("ln_b", "ln B"), ("p_chance", "P_chance"),
    ("flags", "flags"), ("magnitude", "peak mag"), ("classes", "broker classes"),
    ("links", "links"),
)


def _links(links: Sequence[Link]) -> str:
    return " ".join(f'<a href="{esc(url)}" rel="noopener noreferrer">{esc(label)}</a>'
                    for label, url in links)


def _flags(flags: Sequence[str]) -> str:
    return " ".join(f'<span class="flag">{esc(f)}</span>' for f in flags)


def _classes_short(c: CandidateView) -> str:
    return "; ".join(f"{broker}: " + ", ".join(f"{k}={v}" for k, v in fields[:3])
                     for broker, fields in c.classes)


def _ranked_row(c: CandidateView) -> str:
    mag = "-" if c.peak_magnitude is None else f"{c.peak_magnitude:.2f} {c.peak_band or ''}"
    return "<tr>" + "".join((
        cell(c.rank, sort=c.rank, numeric=True),
        cell(c.object_id, raw=f'<a href="#c-{c.n}">{esc(c.object_id)}</a>'),
        cell(c.survey),
        cell(fmt(c.dt_days, ".3f"), sort=_key(c.dt_days), numeric=True),
        cell(fmt(c.credible_level, ".3f"), sort=_key(c.credible_level), numeric=True),
        cell(fmt(c.log_bayes_factor, ".2f"), sort=_key(c.log_bayes_factor), numeric=True),
        cell(fmt(c.p_chance, ".3g"), sort=_key(c.p_chance), numeric=True),
        cell(" ".join(c.flags), raw=_flags(c.flags)),
        cell(mag.strip(), sort=_key(c.peak_magnitude), numeric=True),
        cell(_classes_short(c)),
        cell("", raw=_links(c.links)),
    )) + "</tr>"


def _key(value: float | None) -> str:
    """A sort key: the number in full precision (``repr``), empty for None (sorted last)."""
    return "" if value is None else repr(value)


def _other_row(c: CandidateView) -> str:
    return "<tr>" + "".join((
        cell(c.object_id, raw=f'<a href="#c-{c.n}">{esc(c.object_id)}</a>'),
        cell(c.survey), cell(c.status), cell("vetoed" if c.vetoed else ""),
        cell(fmt(c.log_bayes_factor, ".2f"), sort=_key(c.log_bayes_factor), numeric=True),
        cell(fmt(c.p_chance, ".3g"), sort=_key(c.p_chance), numeric=True),
        cell(" ".join(c.flags), raw=_flags(c.flags)),
    )) + "</tr>"


def _banners(page: EventPage) -> str:
    event, out = page.event, []
    if event.status == "retracted":
        when = [n for n in page.notices if n.notice_type.upper().startswith("RETRACT")]
        by = f" by its {when[-1].notice_type} notice of {fmt_time(when[-1].issued_time)}" \
            if when else ""
        out.append(f'<div class="banner retracted" id="retracted" role="alert">RETRACTED: '
                   f"this event was retracted{esc(by)}; its candidates are withdrawn.</div>")
    if event.muted_at is not None:
        out.append(f'<div class="banner muted" id="muted">Muted since '
                   f"{esc(fmt_time(event.muted_at))}: Slack and email get nothing new about "
                   "it (Kafka still does).</div>")
    if event.test:
        out.append('<div class="banner test" id="test">Test event.</div>')
    return "\n".join(out)


def _shown_status(page: EventPage) -> str:
    """The event's status as ``mma events`` says it: a window closed by the page's
    time is ``expired`` even before the daemon's expiry job marks the region."""
    e, r = page.event, page.region
    if e.status == "retracted":
        return "retracted"
    if r is None or r.status == "expired" or r.window_end <= page.generated_at:
        return "expired (window closed)"
    return e.status


def _facts(page: EventPage) -> str:
    e, r = page.event, page.region
    facts = [
        ("event time (t0)", esc(fmt_time(e.event_time))),
        ("messenger / class", esc(f"{e.messenger} / {e.event_class or '-'}")),
        ("instrument", esc(e.instrument)),
        ("status", esc(_shown_status(page))),
        ("aliases", esc(", ".join(e.aliases) or "-")),
        ("flags", _flags(strings(e.flags)) or "-"),
        ("current region", "-" if r is None else esc(
            f"v{r.version} ({r.kind}, {r.status}): 50 % {r.area50_deg2:,.1f} deg², "
            f"90 % {r.area90_deg2:,.1f} deg²; window {fmt_time(r.window_start)} to "
            f"{fmt_time(r.window_end)}")),
        ("candidates", esc(f"{page.n_ranked} live ranked, {page.n_total} in all")),
        ("links", _links(page.links) or "-"),
    ]
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>"
                                          for k, v in facts) + "</dl>"


def _history(c: CandidateView) -> str:
    if not c.history:
        return '<p class="note">No scoring history stored.</p>'
    headers = [(k, k) for k in ("revision", "published", "reason", "changes", "region",
                                "status", "CL", "ln B", "P_chance", "detections", "rank",
                                "scorings", "first", "last")]
    rows = ["<tr>" + "".join((
        cell(h.revision, numeric=True), cell("yes" if h.published else "no"),
        cell(h.reason), cell(", ".join(strings(h.changes))),
        cell(f"v{h.region_version}"), cell(h.status),
        cell(fmt(h.credible_level, ".3f"), numeric=True),
        cell(fmt(h.log_bayes_factor, ".2f"), numeric=True),
        cell(fmt(h.p_chance, ".3g"), numeric=True),
        cell("-" if h.n_detections is None else h.n_detections, numeric=True),
        cell("-" if h.rank is None else h.rank, numeric=True),
        cell(h.n_scorings, numeric=True), cell(fmt_time(h.created_at)),
        cell(fmt_time(h.updated_at)),
    )) + "</tr>" for h in c.history]
    return table(headers, rows)


def _classes_table(c: CandidateView) -> str:
    if not c.classes:
        return '<p class="note">No broker classes.</p>'
    rows = [f"<tr>{cell(broker)}{cell(k)}{cell(v)}</tr>"
            for broker, fields in c.classes for k, v in fields]
    return table((("broker", "broker"), ("field", "field"), ("value", "value")), rows)


def _candidate_section(c: CandidateView, images: Images) -> str:
    where = "-" if c.ra is None or c.dec is None else f"RA {c.ra:.5f}°, Dec {c.dec:+.5f}° (ICRS)"
    title = (f"{c.n}. {c.object_id} ({c.survey}): "
             + (f"rank {c.rank}" if c.live else c.status + (", vetoed" if c.vetoed else ""))
             + f", revision {c.revision}")
    pictures = []
    if c.n in images.light:
        pictures.append(f'<img src="{esc(images.light[c.n])}" alt="light curve of '
                        f'{esc(c.object_id)}">')
    if c.n in images.stamps:
        pictures.append(f'<img src="{esc(images.stamps[c.n])}" alt="cutouts of '
                        f'{esc(c.object_id)}">')
    if not pictures:
        pictures.append('<p class="note">No light curve or cutouts drawn'
                        + (f" (drawn for the first {IMAGES_CAP} candidates)."
                           if c.n > IMAGES_CAP else ".") + "</p>")
    return (f'<section class="cand" id="c-{c.n}"><h3>{esc(title)}</h3>'
            f'<dl class="facts"><dt>candidate id</dt><dd>{esc(c.coincidence_id)}</dd>'
            f"<dt>position</dt><dd>{esc(where)}</dd>"
            f"<dt>detections in window</dt><dd>{esc(fmt(c.n_detections, '.0f'))}</dd>"
            f"<dt>flags</dt><dd>{_flags(c.flags) or '-'}</dd>"
            f"<dt>links</dt><dd>{_links(c.links) or '-'}</dd></dl>"
            + '<div class="pictures">' + "".join(pictures) + "</div>"
            + "<h4>Broker classes</h4>" + _classes_table(c)
            + "<h4>Revision history</h4>" + _history(c) + "</section>")


JOINT_COLUMNS = (
    ("other", "other event"), ("messengers", "messengers"), ("dt", "Δt [s]"),
    ("window", "window [s]"), ("overlap", "overlap I"), ("far_t", "temporal FAR"),
    ("far_st", "space-time FAR"), ("method", "FAR method"), ("joint", "joint event"),
    ("status", "status"), ("revision", "revision"),
)


def _far(rate_hz: float | None) -> str:
    """``3.7e-22 Hz (1 per 8.56e+13 yr)``; ``-`` when not stated."""
    return "-" if rate_hz is None else f"{rate_hz:.2g} Hz ({far_per_years(rate_hz)})"


def _joint_row(j: JointView) -> str:
    window = "-" if j.window is None else f"[{j.window[0]:+.1f}, {j.window[1]:+.1f}]"
    return "<tr>" + "".join((
        cell(j.other_event_id), cell(j.messengers),
        cell(fmt(j.dt_s, "+.1f"), sort=_key(j.dt_s), numeric=True),
        cell(window + (f" ({j.window_source})" if j.window_source else "")),
        cell(fmt(j.overlap, ".3g") + (f" ({j.overlap_method})" if j.overlap_method else ""),
             sort=_key(j.overlap), numeric=True),
        cell(_far(j.temporal_far_hz), sort=_key(j.temporal_far_hz), numeric=True),
        cell(_far(j.space_time_far_hz), sort=_key(j.space_time_far_hz), numeric=True),
        cell(j.far_method or "-"), cell(j.joint_event_id or "-"), cell(j.status),
        cell(j.revision, numeric=True),
    )) + "</tr>"


def _coincident(page: EventPage) -> list[str]:
    """The "Coincident events" section: the event's event x event coincidences (Δt from
    this event: the other's t0 minus this one's); nothing when it has none."""
    if not page.coincident:
        return []
    return ["<h2>Coincident events</h2>",
            table(JOINT_COLUMNS, [_joint_row(j) for j in page.coincident], sortable=True,
                  table_id="coincident")]


def _notices(page: EventPage) -> str:
    rows = ["<tr>" + "".join((
        cell(fmt_time(n.issued_time)), cell(n.notice_type), cell(n.handler),
        cell(fmt_time(n.received_at)), cell(n.origin or "-"),
        cell(" ".join(strings(n.flags)), raw=_flags(strings(n.flags))),
    )) + "</tr>" for n in page.notices]
    return table((("issued", "issued"), ("type", "type"), ("handler", "handler"),
                  ("received", "received"), ("origin", "origin"), ("flags", "flags")), rows)


def _regions(page: EventPage) -> str:
    rows = ["<tr>" + "".join((
        cell(f"v{r.version}" + (" (current)" if r == page.region else ""), sort=r.version),
        cell(r.kind), cell(r.status), cell(fmt_time(r.window_start)),
        cell(fmt_time(r.window_end)), cell(f"{r.area50_deg2:,.1f}", numeric=True),
        cell(f"{r.area90_deg2:,.1f}", numeric=True), cell(r.n_tiles, numeric=True),
    )) + "</tr>" for r in page.regions]
    return table((("version", "version"), ("kind", "kind"), ("status", "status"),
                  ("window_start", "window start"), ("window_end", "window end"),
                  ("area50", "50 % area [deg²]"), ("area90", "90 % area [deg²]"),
                  ("tiles", "tiles")), rows)


def event_html(page: EventPage, images: Images) -> str:
    """The whole event page."""
    e = page.event
    shown = len(page.candidates)
    more = page.n_total - shown
    sky = (f'<img id="sky" src="{esc(images.sky)}" alt="sky map of {esc(e.event_id)}">'
           if images.sky else '<p class="note">No sky map (no region stored, or not drawn).</p>')
    body = [
        '<p><a href="../../index.html">All active events</a></p>',
        f'<h1 id="event-id">{esc(e.event_id)}</h1>', _banners(page), _facts(page),
        *_coincident(page), "<h2>Sky map</h2>", sky,
        f"<h2>Ranked candidates ({len(page.ranked)} shown of {page.n_ranked})</h2>",
        table(RANKED_COLUMNS, [_ranked_row(c) for c in page.ranked], sortable=True,
              table_id="candidates"),
    ]
    if more > 0:
        body.append(f'<p class="note" id="more">{more} more candidates not shown '
                    f"(the page shows the first {shown}, best first).</p>")
    if page.others:
        body += ["<h2>Vetoed and retracted candidates</h2>",
                 table((("candidate", "candidate"), ("survey", "survey"), ("status", "status"),
                        ("vetoed", "vetoed"), ("ln_b", "ln B"), ("p_chance", "P_chance"),
                        ("flags", "flags")), [_other_row(c) for c in page.others],
                       sortable=True, table_id="others")]
    body += ["<h2>Candidates</h2>", *(_candidate_section(c, images) for c in page.candidates),
             "<h2>Notices</h2>", _notices(page), "<h2>Region versions</h2>", _regions(page),
             f'<p class="note">Written by mma {esc(__version__)} at '
             f"{esc(fmt_time(page.generated_at))}.</p>"]
    return shell(f"mma: event {e.event_id}", "\n".join(body))


def index_html(events: Sequence[ActiveEvent], pages: dict[str, str], now: datetime) -> str:
    """The index of active events; *pages* maps an event id to its page's relative URL."""
    rows = ["<tr>" + "".join((
        cell(a.event_id, raw=f'<a href="{esc(pages[a.event_id])}">{esc(a.event_id)}</a>'),
        cell(fmt_time(a.event_time), sort=a.event_time.isoformat()),
        cell(f"{a.messenger} / {a.event_class or '-'}"),
        cell(f"{a.area90_deg2:,.1f}", sort=a.area90_deg2, numeric=True),
        cell(a.n_live, numeric=True),
        cell(fmt(a.best_p_chance, ".3g"), sort=_key(a.best_p_chance), numeric=True),
        cell(fmt_time(a.window_end), sort=a.window_end.isoformat()),
        cell("muted" if a.muted else ""),
    )) + "</tr>" for a in events]
    body = ["<h1>Active events</h1>",
            f'<p class="note">{len(events)} events whose window is open at '
            f"{esc(fmt_time(now))} (retracted events and closed windows are not listed).</p>",
            table((("event", "event"), ("time", "event time"), ("messenger", "messenger"),
                   ("area90", "90 % area [deg²]"), ("candidates", "live candidates"),
                   ("p_chance", "best P_chance"), ("window_end", "window ends"),
                   ("muted", "muted")), rows, sortable=True, table_id="events"),
            f'<p class="note">Written by mma {esc(__version__)}.</p>']
    return shell("mma: active events", "\n".join(body))
