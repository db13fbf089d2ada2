"""The event page's HTML builder without a browser: escaping, links, banners, the sorter."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from mma.db.pages import ActiveEvent, PageCandidate, PageEvent, PageNotice, PageRegion
from mma.page import page_url, safe_name
from mma.page.data import EventPage, _joint_view, _view, current_region
from mma.page.html import event_html, index_html
from mma.page.images import Images, plain
from mma.page.links import event_links, object_links, safe_url
from mma.page.markup import CSP, SORT_SCRIPT

T0 = datetime(2026, 11, 20, 3, 12, 45, tzinfo=UTC)
EVIL = "<script>alert(\"x\")</script>'\"&"


def _event(status: str = "active", event_id: str = "S261120ab") -> PageEvent:
    return PageEvent(1, event_id, (), "gw", "gw.cbc", "LVK", T0, status, False, None,
                     {}, ["low_significance", EVIL])


def _candidate(i: int, payload: Any, *, rank: int | None = None,
               status: str = "active") -> PageCandidate:
    return PageCandidate(f"cid-{i}", status, False, rank, 1, 1.5 * i, 0.1 * i, payload, T0)


def _page(event: PageEvent, candidates: list[PageCandidate], n_total: int | None = None,
          notices: tuple[PageNotice, ...] = ()) -> EventPage:
    region = PageRegion(7, 1, "skymap", "active", T0, T0, 10.0, 40.0, 100)
    views = tuple(_view(n, c, ()) for n, c in enumerate(candidates, start=1))
    return EventPage(event, notices, (region,), region, views,
                     sum(1 for v in views if v.live), n_total or len(views),
                     tuple(event_links({"event_id": event.event_id, "messenger": "gw"}, {}, [])),
                     T0)


def _hostile_payload() -> dict[str, Any]:
    return {"object_id": EVIL, "survey": "ZTF", "ra": 10.0, "dec": -5.0, "flags": [EVIL],
            "classes": {EVIL: {"class": EVIL}, "fink": {"cdsxmatch": "QSO", "snn": 0.123456}},
            "peak_magnitude": 19.5, "peak_band": EVIL, "dt_days": 0.5,
            "credible_level": 0.3}


def test_every_stored_string_is_escaped_and_no_script_but_the_sorter() -> None:
    notice = PageNotice(EVIL, EVIL, T0, T0, EVIL, {"urls": {"x": "javascript:alert(1)"}}, [EVIL])
    page = _page(_event(), [_candidate(1, _hostile_payload(), rank=1)], notices=(notice,))
    text = event_html(page, Images())
    assert "<script>alert" not in text
    assert text.count("<script") == 1  # the sorter, and nothing a value could open
    assert "javascript:" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#x27;&quot;&amp;" in text
    # Inside attributes as well: no value closes its quotes.
    for attr in re.findall(r'="([^"]*)"', text):
        assert "<" not in attr and ">" not in attr
    assert "cdsxmatch" in text and "QSO" in text and "0.123" in text


def test_payload_fields_of_the_wrong_type_are_shown_as_missing() -> None:
    payload = {"object_id": {"a": 1}, "ra": "12", "dec": float("nan"), "flags": "notalist",
               "classes": ["x"], "peak_magnitude": True, "credible_level": float("inf")}
    view = _view(1, _candidate(1, payload, rank=1), ())
    assert view.object_id == "?" and view.ra is None and view.dec is None
    assert view.flags == () and view.classes == () and view.peak_magnitude is None
    assert view.credible_level is None and view.links == ()
    text = event_html(_page(_event(), [_candidate(1, payload, rank=1),
                                       _candidate(2, "not a mapping", rank=2)]), Images())
    assert text.count('<tr><td class="num" data-sort="') == 2


def test_retracted_event_shows_a_banner_and_an_active_one_does_not() -> None:
    retraction = PageNotice("lvk", "RETRACTION", T0, T0, "file.json", {}, [])
    retracted = event_html(_page(_event("retracted"), [], notices=(retraction,)), Images())
    assert 'id="retracted"' in retracted and "RETRACTED" in retracted
    assert "RETRACTION notice of 2026-11-20 03:12:45 UTC" in retracted
    assert 'id="retracted"' not in event_html(_page(_event(), []), Images())


def test_table_lists_live_ranked_candidates_and_says_how_many_are_not_shown() -> None:
    cands = [_candidate(1, {"object_id": "ZTF26aaaaaxd", "survey": "ZTF"}, rank=1),
             _candidate(2, {"object_id": "ZTF26aaaaaxe", "survey": "ZTF"}, rank=2),
             _candidate(3, {"object_id": "ZTF26aaaaaxf"}, status="retracted")]
    text = event_html(_page(_event(), cands, n_total=250), Images(sky="sky.png"))
    table = text.split('id="candidates"')[1].split("</table>")[0]
    assert table.count("<tr>") == 3  # header and two ranked rows
    assert 'id="others"' in text and "ZTF26aaaaaxf" in text
    assert "247 more candidates not shown" in text
    assert '<img id="sky" src="sky.png"' in text
    assert "https://fink-portal.org/ZTF26aaaaaxd" in text


def test_sorter_is_inline_and_allowed_by_its_hash_only() -> None:
    digest = base64.b64encode(hashlib.sha256(SORT_SCRIPT.encode()).digest()).decode()
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["script-src"] == f"'sha256-{digest}'"
    text = event_html(_page(_event(), []), Images())
    assert f"<script>{SORT_SCRIPT}</script>" in text
    assert "http://" not in text.split("<body>")[0] and "src=\"http" not in text


def test_links_are_the_channels_plus_the_http_urls_of_notices() -> None:
    ztf = {"object_id": "ZTF24abcdefg", "survey": "ZTF", "ra": 1.0, "dec": 2.0}
    assert [label for label, _ in object_links(ztf)] == ["TNS", "Fink", "ALeRCE", "Lasair"]
    assert [label for label, _ in object_links({**ztf, "object_id": "ZTF24abc/../x"})] == [
        "TNS"]
    assert object_links({"object_id": "1", "survey": "LSST", "ra": None, "dec": 2.0}) == []
    links = dict(event_links({"event_id": "S261120ab", "messenger": "gw"}, {}, [
        {"gracedb": "https://gracedb.ligo.org/superevents/S261120ab/view/",
         "evil": "javascript:alert(1)", "ftp": "ftp://x/y", "sp": "https://a b",
         "skymap": "https://gracedb.ligo.org/S261120ab/files/bayestar.fits"}, None, "x"]))
    assert links == {"GraceDB": "https://gracedb.ligo.org/superevents/S261120ab/view/",
                     "skymap": "https://gracedb.ligo.org/S261120ab/files/bayestar.fits"}
    assert safe_url("https://gcn.nasa.gov/x") and safe_url("//gcn.nasa.gov") is None


def test_safe_name_and_page_url(config: Any) -> None:
    assert safe_name("S261120ab") == "S261120ab"
    assert safe_name("GRB 241105A/../x") == "GRB_241105A_.._x"
    assert safe_name("..") == "__" and safe_name("") == "_"
    assert page_url(config, "S1") is None
    from mma.config import load_config
    with_base = load_config(environ={"MMA_PAGES__BASE_URL": "https://mma.example.org/p/"},
                            system_file=config.state_dir / "absent.toml")
    assert page_url(with_base, "GRB 1") == "https://mma.example.org/p/events/GRB_1/index.html"


def test_index_lists_active_events_with_links_to_their_pages() -> None:
    active = [ActiveEvent(EVIL, "gw", "gw.cbc", T0, True, 2, 130.1, T0, 7, 0.25)]
    text = index_html(active, {EVIL: f"events/{safe_name(EVIL)}/index.html"}, T0)
    assert "<script>alert" not in text and "&lt;script&gt;" in text
    assert f'href="events/{safe_name(EVIL)}/index.html"' in text
    assert "130.1" in text and "muted" in text and "1 events" in text


def test_current_region_prefers_the_newest_active_version() -> None:
    def region(version: int, status: str) -> PageRegion:
        return PageRegion(version, version, "skymap", status, T0, T0, 1.0, 2.0, 3)
    assert current_region([region(1, "active"), region(2, "superseded")]).version == 1  # type: ignore[union-attr]
    assert current_region([region(1, "superseded"), region(2, "retracted")]).version == 2  # type: ignore[union-attr]
    assert current_region([]) is None


def test_matplotlib_titles_cannot_start_mathtext() -> None:
    assert plain("a$b$c") == r"a\$b\$c"


def test_status_says_expired_once_the_window_has_closed() -> None:
    """As ``mma events`` says it: a closed window is expired even while the stored
    region is still marked active (the daemon's expiry job has not run yet)."""
    from dataclasses import replace
    from datetime import timedelta

    page = _page(_event(), [])
    assert page.region is not None
    region = replace(page.region, window_end=T0 + timedelta(days=14))
    open_page = replace(page, region=region, regions=(region,),
                        generated_at=T0 + timedelta(days=1))
    assert "<dd>active</dd>" in event_html(open_page, Images())
    closed = replace(open_page, generated_at=T0 + timedelta(days=15))
    assert "<dd>expired (window closed)</dd>" in event_html(closed, Images())


def test_coincident_events_section_from_either_side_and_escaped() -> None:
    """GW170817 x GRB 170817A on the GW's page (Δt +2.0 s) and on the GRB's (-2.0 s); a
    hostile stored pair is escaped; a page without pairs has no section."""
    from dataclasses import replace

    from tests.test_joint_message import _hostile, gw170817_grb

    record = gw170817_grb()
    page = _page(_event(event_id="G298048"), [])
    assert "Coincident events" not in event_html(page, Images())
    views = (_joint_view({"payload": record, "status": "active", "revision": 1,
                          "primary": True}),
             *(_joint_view({"payload": h, "status": EVIL, "revision": 2, "primary": False})
               for h in _hostile()))
    text = event_html(replace(page, coincident=views), Images())
    section = text[text.index("<h2>Coincident events</h2>"):text.index("<h2>Sky map</h2>")]
    first = section[section.index("<tr><td>FermiGBM-524666471"):].split("</tr>")[0]
    for value in (">GW x GRB<", ">+2.0<", "[-1.0, +5.0] (RAVEN CBC x GRB (Urban 2016))",
                  ">32.5 (skymap)<", "1.2e-20 Hz (1 per 2.64e+12 yr)",
                  "3.7e-22 Hz (1 per 8.56e+13 yr)", ">untargeted<",
                  ">G298048+FermiGBM-524666471<"):
        assert value in first
    assert text.count("<script") == 1 and "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert section.count("<tr><td>") == len(views)
    grb_side = _joint_view({"payload": record, "status": "active", "revision": 1,
                            "primary": False})
    assert (grb_side.other_event_id, grb_side.dt_s) == ("G298048", -2.02429)
