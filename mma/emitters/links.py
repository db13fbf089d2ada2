"""Web pages about a candidate's event and object, for every channel that shows links.

One place decides which pages exist for which ids, so that Slack, email and the event
pages link the same way:

* the event: GraceDB (LVK superevents), the GCN Classic trigger page (Fermi GBM and
  Swift BAT trigger numbers; IceCube gold/bronze and cascade run/event numbers), the
  Swift GUANO trigger report, the GCN Circulars search (GRB and IceCube names);
* the object: TNS cone search at its position (ZTF and Rubin), Fink, ALeRCE and Lasair
  object pages (ZTF object ids);
* mma's own event page (``[pages] base_url``), when one is served.

Every id comes from a record or a notice and may be hostile: only ids that match the
expected shapes make links, and each goes into a URL quoted.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, TypeGuard

__all__ = ("event_links", "message_links", "object_links", "page_url")

Link = tuple[str, str]
"""A (label, URL) pair."""

_SUPEREVENT = re.compile(r"(?:M|T)?S\d{6}[a-z]{1,3}")
# Names GCN Circulars are written under: GRB 240112A, IceCube-230416A, IceCubeCascade-220801a.
_CIRCULAR_NAME = re.compile(r"GRB ?\d{6}[A-Z]?|IceCube(?:Cascade)?-\d{6}[A-Za-z]")
_ZTF_OBJECT = re.compile(r"ZTF\d{2}[a-z]{7}")
_DIGITS = re.compile(r"\d{1,12}")
_ICECUBE = re.compile(r"IceCube-(\d{1,9})_(\d{1,12})")
_TNS_SURVEYS = {"ZTF", "LSST", "RUBIN"}
_TNS_RADIUS_ARCSEC = 10
# GCN Classic keeps one page per trigger, with every notice of that trigger.
_GCN_TRIGGER_PAGES = {"Fermi-GBM": "fermi", "Swift-BAT": "swift"}
_GCN_AMON = {"neutrino.track": "notices_amon_g_b",
             "neutrino.cascade": "notices_amon_icecube_cascade"}


def _is_number(value: Any) -> TypeGuard[float]:
    return (not isinstance(value, bool) and isinstance(value, int | float)
            and math.isfinite(value))


def _properties(event: Mapping[str, Any]) -> Mapping[str, Any]:
    props = event.get("properties")
    return props if isinstance(props, Mapping) else {}


def page_url(base_url: str | None, event_id: Any) -> str | None:
    """mma's page of an event, or None when no ``base_url`` is configured.

    Parameters
    ----------
    base_url : str or None
        ``[pages] base_url``: where the pages directory is served.
    event_id : str
        The event's id; its page's directory is :func:`mma.page.safe_name` of it
        (every character outside ``[A-Za-z0-9._-]`` replaced by ``_``).

    Returns
    -------
    str or None
        ``<base_url>/events/<safe id>/index.html``.
    """
    if not base_url or not isinstance(event_id, str) or not event_id:
        return None
    from mma.page import safe_name  # the pages' own rule (imported late: no cycle)

    return f"{base_url.rstrip('/')}/events/{safe_name(event_id)}/index.html"


def _is_gracedb(url: str) -> bool:
    """An https URL on a GraceDB server (``gracedb.ligo.org``, ``gracedb-test.ligo.org``)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    host = parts.hostname or ""
    return parts.scheme == "https" and host.startswith("gracedb") and host.endswith(".ligo.org")


def _gracedb(payload: Mapping[str, Any], props: Mapping[str, Any]) -> str | None:
    urls = props.get("urls")
    stated = [urls.get("gracedb") if isinstance(urls, Mapping) else None,
              props.get("eventpage")]
    for url in stated:
        if isinstance(url, str) and _is_gracedb(url):
            return url
    event_id = str(payload.get("event_id") or "")
    if payload.get("messenger") == "gw" and _SUPEREVENT.fullmatch(event_id):
        return f"https://gracedb.ligo.org/superevents/{urllib.parse.quote(event_id)}/view/"
    return None


def _trigger(payload: Mapping[str, Any], props: Mapping[str, Any]) -> str | None:
    """The trigger number: ``trigger_id`` of the notice, else the event id's tail."""
    trigger = props.get("trigger_id")
    if isinstance(trigger, int) and not isinstance(trigger, bool):
        trigger = str(trigger)
    if not isinstance(trigger, str):
        trigger = str(payload.get("event_id") or "").rpartition("-")[2]
    return trigger if _DIGITS.fullmatch(trigger) else None


def _gcn_pages(payload: Mapping[str, Any], props: Mapping[str, Any]) -> list[Link]:
    instrument = str(payload.get("instrument") or "")
    links: list[Link] = []
    suffix = _GCN_TRIGGER_PAGES.get(instrument)
    trigger = _trigger(payload, props) if suffix else None
    if suffix and trigger:
        links.append(("GCN notices", f"https://gcn.gsfc.nasa.gov/other/{trigger}.{suffix}"))
    amon = _GCN_AMON.get(str(payload.get("event_class") or ""))
    match = _ICECUBE.fullmatch(str(payload.get("event_id") or ""))
    if amon and match and "AMON_ID" in props:
        run, number = match.groups()
        links.append(("GCN notice", f"https://gcn.gsfc.nasa.gov/{amon}/"
                                    f"{int(run)}_{int(number)}.amon"))
    guano = props.get("data_archive_page")
    if isinstance(guano, str) and guano.startswith("https://guano.swift.psu.edu/"):
        links.append(("GUANO report", guano))
    return links


def _circular_name(payload: Mapping[str, Any], props: Mapping[str, Any]) -> str | None:
    names = [payload.get("event_id"), *(payload.get("aliases") or ()),
             *(props.get("why_names") or ())]
    for name in names:
        if isinstance(name, str) and _CIRCULAR_NAME.fullmatch(name.strip()):
            return name.strip()
    return None


def event_links(payload: Mapping[str, Any], event: Mapping[str, Any]) -> list[Link]:
    """Pages about the event: GraceDB, GCN trigger pages, GUANO, GCN Circulars.

    Parameters
    ----------
    payload : mapping
        The candidate record (``event_id``, ``aliases``, ``messenger``,
        ``event_class``, ``instrument``).
    event : mapping
        Event extras: ``properties`` of the notices (``urls.gracedb``,
        ``eventpage``, ``trigger_id``, ``data_archive_page``, ``why_names``).

    Returns
    -------
    list of (label, url)
    """
    props = _properties(event)
    links: list[Link] = []
    gracedb = _gracedb(payload, props)
    if gracedb:
        links.append(("GraceDB", gracedb))
    links += _gcn_pages(payload, props)
    name = _circular_name(payload, props)
    if name:
        links.append(("GCN Circulars",
                      "https://gcn.nasa.gov/circulars?" + urllib.parse.urlencode({"query": name})))
    return links


def object_links(payload: Mapping[str, Any]) -> list[Link]:
    """Pages about the object: TNS cone search, Fink, ALeRCE and Lasair (ZTF ids).

    Parameters
    ----------
    payload : mapping
        The candidate record (``object_id``, ``survey``, ``ra``/``dec`` [deg, ICRS]).

    Returns
    -------
    list of (label, url)
    """
    links: list[Link] = []
    survey = str(payload.get("survey") or "").upper()
    ra, dec = payload.get("ra"), payload.get("dec")
    if survey in _TNS_SURVEYS and _is_number(ra) and _is_number(dec):
        query = urllib.parse.urlencode({"ra": f"{ra:.6f}", "decl": f"{dec:.6f}",
                                        "radius": _TNS_RADIUS_ARCSEC, "coords_unit": "arcsec"})
        links.append(("TNS", f"https://www.wis-tns.org/search?{query}"))
    object_id = str(payload.get("object_id") or "")
    if _ZTF_OBJECT.fullmatch(object_id):
        links += [("Fink", f"https://fink-portal.org/{object_id}"),
                  ("ALeRCE", f"https://alerce.online/object/{object_id}"),
                  ("Lasair", f"https://lasair-ztf.lsst.ac.uk/objects/{object_id}/")]
    return links


def message_links(payload: Mapping[str, Any], event: Mapping[str, Any],
                  page: str | None = None) -> list[Link]:
    """Every link of a message: mma's event page first, then the event's, then the object's.

    Parameters
    ----------
    payload : mapping
        The candidate record.
    event : mapping
        Event extras (``properties``).
    page : str, optional
        mma's page of the event (:func:`page_url`).

    Returns
    -------
    list of (label, url)
    """
    return ([("Event page", page)] if page else []) + event_links(payload, event) \
        + object_links(payload)
