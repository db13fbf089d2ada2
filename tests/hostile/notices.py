"""Hostile notices: crafted sky maps, impossible times, absurd numbers and errors.

Everything is built in memory from the corpus notices of each family:

* sky maps (:mod:`tests.skymaps.hostile_maps`) inside valid notices: flat HEALPix
  maps whose sibling pixels never merge (``12 * nside**2`` tiles from a few
  hundred kB of gzip), gzip bombs, FITS headers that declare tables beyond the caps;
* :func:`mutations`: every field of one corpus notice per family (GCN JSON and
  VOEvent) replaced in turn by years 1 and 9999, huge digit strings, NaN and
  Infinity, tiny and huge radii and wrong types. A parse of each must end in a
  Notice, :class:`mma.errors.Ignored`, or a :class:`mma.errors.BadMessage` whose
  reason names the field (one of :attr:`Mutation.fields`);
* :func:`cases`: the notice-side cases a replay must dead-letter (with a reason
  fragment), and valid controls it must store.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path as FilePath
from typing import Any

from lxml import etree

from tests.conftest import CORPUS
from tests.hostile import Case
from tests.skymaps.hostile_maps import declared_table, flat_map, zeros_bomb

GCN = CORPUS / "gcn-json/gcn-schema"
DATA = FilePath(__file__).resolve().parents[1] / "data"  # real notices kept in the repo
LVK_NOTICE = CORPUS / "gcn-json/igwn-gwalert/S230528ay-preliminary.json"
DIGITS = "9" * 401  # no float holds it
YEAR_1, YEAR_9999 = "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"
# Valid ISO 8601, but their conversion to UTC leaves the years datetime can hold.
YEAR_1_EAST, YEAR_9999_WEST = "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"
TIMES = (YEAR_1, YEAR_9999, YEAR_1_EAST, YEAR_9999_WEST)
TIME_WORDS = ("event time", "issue time")  # what mma.epochs.check_item names

# (handler NAME, corpus file) for every notice family, JSON first.
JSON_BASES = (
    ("lvk", LVK_NOTICE),
    ("icecube", GCN / "icecube/single_neutrino_alerts.gold_bronze_track_alerts.example.json"),
    ("icecube", GCN / "icecube/lvk_nu_track_search.example.json"),
    ("einstein_probe", GCN / "einstein_probe/wxt/alert.example.json"),
    ("km3net", GCN / "km3net/alert.multiplet.example.json"),
    ("maxi", GCN / "maxi/gsc.unknown.ellipse.example.json"),
    ("maxi", GCN / "maxi/gsc.unknown.rectangle.example.json"),
    ("snews", GCN / "superk/sn_alert.real.example.json"),
    ("svom", GCN / "svom/eclairs/trigger.slewing.example.json"),
    ("swift_guano", GCN / "swift/bat/guano.loc_arc_min.example.json"),
    ("fermi_lat", GCN / "fermi/lat/flare.example.json"),
    ("gcn_other", GCN / "chime/frb.detection.example.json"),
)
VOEVENT_BASES = (
    ("fermi_gbm", CORPUS / "voevent/fermi-gbm/GRB170817A_GBM_Gnd_Pos_524666471.xml"),
    ("swift", CORPUS / "voevent/gcn-2024-01-fink-mm/XRT_Pos_1208389-303.xml"),
    ("integral", CORPUS / "voevent/gcn-2024-01-fink-mm/Refined_Pos_010472-1-937.xml"),
    ("agile", CORPUS / "voevent/agile/agile_grb_gcn.xml"),
    ("icecube", CORPUS / "voevent/icecube-amon/AMON_ICECUBE_BRONZE_2022-08-22.xml"),
    ("snews", CORPUS / "voevent/snews/snews_gcn.xml"),
    ("lvk_voevent", CORPUS / "voevent/gw/S190425z-1-Initial_GW190425.xml"),
    ("voevent_other", CORPUS / "voevent/other/MOA_Lensing_Event_2015-07-10T14_50_54.00.xml"),
    ("svom_voevent", DATA / "svom/eclairs_296.xml"),
    ("svom_voevent", DATA / "svom/mxt_40.xml"),
    ("fermi_lat", DATA / "fermi_lat/fermi_lat_offline_29.xml"),
    ("gecam", DATA / "gecam/260-GND.xml"),
    ("amon", DATA / "amon/NU_EM_Event2023-10-20T04-29-20.00_000000_000142904-795.xml"),
    ("hawc", DATA / "hawc" / ("HAWC_BURST_MONITOR_Event2023-05-04T04-32-16.00_10011296_"
                              "000009331-066.xml")),
    ("ipn", DATA / "ipn/Raw_2023-12-10T15-25-06.26_-00001-740.xml"),
)


# ---------------------------------------------------------------- notices
@cache
def _document(path: Any) -> dict[str, Any]:
    return dict(json.loads(path.read_bytes()))


Path = str | tuple[str | int, ...]


def _tokens(path: Path) -> list[str | int]:
    """``event.skymap`` → ['event', 'skymap']; ``ids[2].x`` → ['ids', 2, 'x']; a tuple as is."""
    if isinstance(path, tuple):
        return list(path)
    out: list[str | int] = []
    for part in path.split("."):
        name, *indices = part.replace("]", "").split("[")
        out.append(name)
        out.extend(int(i) for i in indices)
    return out


def _dotted(tokens: Sequence[str | int]) -> str:
    return "".join(f"[{t}]" if isinstance(t, int) else f".{t}" for t in tokens).lstrip(".")


def edited_json(path: Any, edits: dict[Path, Any], raw: dict[Path, str] | None = None) -> bytes:
    """A corpus JSON notice with each dotted path set to a value.

    *raw* maps paths to JSON text written verbatim (``NaN``, 401-digit numbers),
    which :func:`json.dumps` cannot produce.
    """
    doc = copy.deepcopy(_document(path))
    markers = {}
    for i, (where, value) in enumerate([*edits.items(), *(raw or {}).items()]):
        if where in (raw or {}):
            markers[f'"@@raw{i}@@"'], value = value, f"@@raw{i}@@"
        *parents, last = _tokens(where)
        node: Any = doc
        for key in parents:
            node = node[key]
        node[last] = value
    text = json.dumps(doc)
    for marker, verbatim in markers.items():
        text = text.replace(marker, verbatim)
    return text.encode()


def lvk_with_map(fits_bytes: bytes, **edits: Any) -> bytes:
    """The corpus LVK notice (S230528ay) carrying *fits_bytes* as its ``event.skymap``."""
    changes: dict[Path, Any] = {"event.skymap": base64.b64encode(fits_bytes).decode()}
    changes.update(edits)
    return edited_json(LVK_NOTICE, changes)


def edited_xml(path: Any, tag: str, value: str) -> bytes:
    """A corpus VOEvent with the text of the first *tag* element (or Param *tag*'s value)."""
    root = etree.fromstring(path.read_bytes())
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        if etree.QName(el).localname == tag:
            el.text = value
            break
        if etree.QName(el).localname == "Param" and el.get("name") == tag:
            el.set("value", value)
            break
    else:
        raise KeyError(f"{tag} not in {path.name}")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


# ---------------------------------------------------------------- mutations
@dataclass(frozen=True)
class Mutation:
    """One field of a corpus notice replaced.

    Attributes
    ----------
    name : str
        ``handler:file:field=label``, the test id.
    handler : str
        NAME of the handler that parses the family.
    data : bytes
        The mutated notice.
    fields : tuple of str
        Fragments naming the field; a refusal's reason must contain one of them.
    """

    name: str
    handler: str
    data: bytes
    fields: tuple[str, ...]


# JSON values per kind of leaf, as (label, value, raw JSON text or None).
_RAW_NUMBERS = (("401_digits", DIGITS), ("minus_401_digits", "-" + DIGITS), ("nan", "NaN"),
                ("infinity", "Infinity"))
_NUMBERS = (("1e-9", 1e-9), ("zero", 0), ("minus_1", -1), ("1e300", 1e300), ("text", "x"),
            ("null", None), ("true", True))
_TEXTS = (("number", 42), ("null", None), ("empty", ""), ("nul", "a\x00b"),
          ("lone_surrogate", "\ud800"))
_TIME_LABELS = ("year_1", "year_9999", "year_1_east", "year_9999_west")


Tokens = tuple[str | int, ...]


def _leaves(value: Any, path: Tokens = ()) -> Iterator[tuple[Tokens, Any]]:
    """Every (path, value) of a JSON document, containers included; long texts left out."""
    if path:
        yield path, value
    items: Any = ()
    if isinstance(value, dict):
        items = (((*path, k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = (((*path, i), v) for i, v in enumerate(value))
    for sub, item in items:
        if not (isinstance(item, str) and len(item) > 200):  # inline maps: see cases()
            yield from _leaves(item, sub)


def _json_values(value: Any) -> Iterator[tuple[str, Any, str | None]]:
    if isinstance(value, bool) or value is None:
        yield from (("text", "x", None), ("number", 42, None))
    elif isinstance(value, int | float):
        yield from ((label, None, text) for label, text in _RAW_NUMBERS)
        yield from ((label, v, None) for label, v in _NUMBERS)
    elif isinstance(value, str):
        if len(value) >= 19 and value[4] == "-" and value[10] == "T":
            yield from ((label, t, None) for label, t in zip(_TIME_LABELS, TIMES, strict=True))
        yield "401_digits", None, DIGITS
        yield from ((label, v, None) for label, v in _TEXTS)
    else:
        yield from (("number", 42, None), ("text", "x", None))


def _field_words(path: Path, label: str) -> tuple[str, ...]:
    key = str([t for t in _tokens(path) if isinstance(t, str)][-1])
    return (key, *TIME_WORDS) if label.startswith("year") else (key,)


def json_mutations(bases: Sequence[tuple[str, Any]] = JSON_BASES) -> Iterator[Mutation]:
    """Every leaf of every JSON base notice replaced by every value of its kind."""
    for handler, path in bases:
        for where, value in _leaves(_document(path)):
            for label, new, raw in _json_values(value):
                data = edited_json(path, {} if raw else {where: new},
                                   {where: raw} if raw else None)
                yield Mutation(f"{handler}:{path.stem}:{_dotted(where)}={label}", handler, data,
                               _field_words(where, label))


_XML_NUMBERS = (("401_digits", DIGITS), ("minus_401_digits", "-" + DIGITS), ("nan", "NaN"),
                ("infinity", "Infinity"), ("1e-9", "1e-9"), ("zero", "0"), ("minus_1", "-1"),
                ("1e300", "1e300"), ("empty", ""), ("text", "x"))
_XML_PARAMS = (("401_digits", DIGITS), ("nan", "NaN"), ("minus_1", "-1"), ("1e300", "1e300"),
               ("empty", ""), ("text", "x"))
_XML_TIMES = (*zip(_TIME_LABELS, TIMES, strict=True), ("empty", ""), ("text", "x"))
_XML_WORDS = {"ISOTime": ("ISOTime", *TIME_WORDS), "Date": ("Who/Date", *TIME_WORDS),
              "C1": ("C1", "RA"), "C2": ("C2", "Dec"), "Error2Radius": ("Error2Radius",)}


def _xml_targets(root: Any) -> Iterator[tuple[int, str, tuple[str, ...], Any]]:
    """(element index, field, words, values) of each mutable element of a VOEvent."""
    for i, el in enumerate(root.iter()):
        if not isinstance(el.tag, str):
            continue
        local = etree.QName(el).localname
        if local in ("ISOTime", "Date"):
            yield i, local, _XML_WORDS[local], _XML_TIMES
        elif local in ("C1", "C2", "Error2Radius"):
            yield i, local, _XML_WORDS[local], _XML_NUMBERS
        elif local == "Param" and el.get("name") and el.get("value") is not None:
            yield i, str(el.get("name")), (str(el.get("name")),), _XML_PARAMS


def voevent_mutations(bases: Sequence[tuple[str, Any]] = VOEVENT_BASES) -> Iterator[Mutation]:
    """Times, position, radius and every Param value of every VOEvent base replaced."""
    for handler, path in bases:
        raw = path.read_bytes()
        for index, field, words, values in _xml_targets(etree.fromstring(raw)):
            for label, text in values:
                root = etree.fromstring(raw)
                el = list(root.iter())[index]
                if etree.QName(el).localname == "Param":
                    el.set("value", text)
                else:
                    el.text = text
                data = bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
                yield Mutation(f"{handler}:{path.stem}:{field}={label}", handler, data, words)


def mutations(handler: str = "", path: Any = None) -> list[Mutation]:
    """Every mutation of every notice family (about 4300), or of one base notice."""
    if path is not None:
        base = [(handler, path)]
        return list(json_mutations(base) if path.suffix == ".json" else voevent_mutations(base))
    return [*json_mutations(), *voevent_mutations()]


# ---------------------------------------------------------------- cases
ICECUBE_TRACK = GCN / "icecube/single_neutrino_alerts.gold_bronze_track_alerts.example.json"
NU_SEARCH = GCN / "icecube/lvk_nu_track_search.example.json"
MAXI_ELLIPSE = GCN / "maxi/gsc.unknown.ellipse.example.json"
MAXI_RECTANGLE = GCN / "maxi/gsc.unknown.rectangle.example.json"
GUANO = GCN / "swift/bat/guano.loc_arc_min.example.json"
GBM_GND = CORPUS / "voevent/fermi-gbm/GRB170817A_GBM_Gnd_Pos_524666471.xml"
LVK_VOEVENT = CORPUS / "voevent/gw/S190425z-1-Initial_GW190425.xml"
INFLATED_CAP = 512 * 2**20  # limits.max_skymap_inflated_bytes, the default


def _map_cases() -> list[Case]:
    """Crafted sky maps inside valid notices."""
    no_merge = flat_map(1024)  # 12,582,912 tiles from ~240 kB of gzip
    guano_map = base64.b64encode(no_merge).decode()
    return [
        Case("lvk_flat_nside1024_no_merge", "lvk_flat_nside1024.json",
             lvk_with_map(no_merge), reason="tiles"),
        Case("guano_flat_nside1024_no_merge", "guano_flat_nside1024.json",
             edited_json(GUANO, {"healpix_file": guano_map}), reason="tiles"),
        Case("lvk_gzip_bomb_zeros", "lvk_gzip_bomb.json",
             lvk_with_map(zeros_bomb(INFLATED_CAP + 2**20)), reason="not a FITS file"),
        Case("lvk_fits_table_beyond_cap", "lvk_fits_beyond_cap.json",
             lvk_with_map(declared_table(INFLATED_CAP, nuniq_rows=INFLATED_CAP // 16 + 1)),
             reason="above the cap"),
        Case("lvk_nuniq_rows_beyond_max_tiles", "lvk_nuniq_rows.json",
             lvk_with_map(declared_table(0, nuniq_rows=2_000_000)), reason="tiles"),
    ]


def _time_cases() -> list[Case]:
    return [
        Case("lvk_year_1", "lvk_year_1.json",
             edited_json(LVK_NOTICE, {"event.time": YEAR_1}), reason="event time"),
        Case("lvk_year_9999", "lvk_year_9999.json",
             edited_json(LVK_NOTICE, {"event.time": YEAR_9999}), reason="in the future"),
        Case("lvk_created_year_9999_west", "lvk_created_9999_west.json",
             edited_json(LVK_NOTICE, {"time_created": YEAR_9999_WEST}), reason="time_created"),
        Case("icecube_search_year_9999", "icecube_search_9999.json",
             edited_json(NU_SEARCH, {"trigger_time": YEAR_9999}), reason="trigger_time"),
        Case("icecube_search_event_dt_1e300", "icecube_search_dt.json",
             edited_json(NU_SEARCH, {"coincident_events[0].event_dt": 1e300}),
             reason="event_dt"),
        Case("gbm_isotime_year_1_east", "gbm_year_1_east.xml",
             edited_xml(GBM_GND, "ISOTime", YEAR_1_EAST), reason="ISOTime"),
        Case("gbm_isotime_year_9999", "gbm_year_9999.xml",
             edited_xml(GBM_GND, "ISOTime", YEAR_9999), reason="event time"),
    ]


def _number_cases() -> list[Case]:
    return [
        Case("lvk_far_401_digits", "lvk_far_401.json",
             edited_json(LVK_NOTICE, {}, {"event.far": DIGITS}), reason="event.far"),
        Case("lvk_far_nan", "lvk_far_nan.json",
             edited_json(LVK_NOTICE, {}, {"event.far": "NaN"}), reason="event.far"),
        Case("lvk_has_ns_1e300", "lvk_has_ns.json",
             edited_json(LVK_NOTICE, {"event.properties": {"HasNS": 1e300}}),
             reason="event.properties.HasNS"),
        Case("icecube_record_number_401_digits", "icecube_record_401.json",
             edited_json(ICECUBE_TRACK, {}, {"record_number": DIGITS}), reason="record_number"),
        Case("lvk_voevent_far_401_digits", "lvk_voevent_far_401.xml",
             edited_xml(LVK_VOEVENT, "FAR", DIGITS), reason="FAR"),
        # Valid JSON that PostgreSQL refuses to store: once a database error, retried.
        Case("lvk_nul_in_pipeline", "lvk_nul.json",
             edited_json(LVK_NOTICE, {"event.pipeline": "gstlal\x00"}),
             reason="event.pipeline: JSON text holds a NUL character"),
    ]


def _error_cases() -> list[Case]:
    track = ICECUBE_TRACK
    return [
        Case("icecube_circle_1e-9_deg", "icecube_circle_1e-9.json",
             edited_json(track, {"ra_dec_error": 1e-9}), reason="ra_dec_error 1e-09 deg"),
        Case("icecube_circle_zero", "icecube_circle_zero.json",
             edited_json(track, {"ra_dec_error": 0}), reason="ra_dec_error 0.0 deg"),
        Case("icecube_circle_negative", "icecube_circle_negative.json",
             edited_json(track, {"ra_dec_error": -0.5}), reason="ra_dec_error -0.5 deg"),
        Case("icecube_circle_1000_deg", "icecube_circle_1000.json",
             edited_json(track, {"ra_dec_error": 1000}), reason="ra_dec_error 1000.0 deg"),
        Case("icecube_containment_1e-9", "icecube_containment.json",
             edited_json(track, {"containment_probability": 1e-9}),
             reason="containment_probability"),
        Case("maxi_ellipse_minor_1e-9_deg", "maxi_ellipse_minor.json",
             edited_json(MAXI_ELLIPSE, {"ra_dec_error[1]": 1e-9}), reason="ra_dec_error[1]"),
        Case("maxi_rectangle_degenerate", "maxi_rectangle.json",
             edited_json(MAXI_RECTANGLE, {"rectangular_error_corners": [[10.0, 20.0]] * 4}),
             reason="rectangular_error_corners"),
        Case("gbm_error2radius_1e-9_deg", "gbm_radius_1e-9.xml",
             edited_xml(GBM_GND, "Error2Radius", "1e-9"), reason="Error2Radius"),
        Case("gbm_error2radius_401_digits", "gbm_radius_401.xml",
             edited_xml(GBM_GND, "Error2Radius", DIGITS), reason="Error2Radius"),
    ]


def cases() -> list[Case]:
    """Every hostile notice-side case (dead-lettered, with a reason) and valid controls."""
    controls = [
        Case("lvk_valid_control", "S230528ay-preliminary.json", LVK_NOTICE.read_bytes(),
             outcome="stored"),
        Case("icecube_circle_at_minimum", "icecube_circle_1e-5.json",
             edited_json(ICECUBE_TRACK, {"ra_dec_error": 1e-5}), outcome="stored"),
    ]
    return [*_map_cases(), *_time_cases(), *_number_cases(), *_error_cases(), *controls]
