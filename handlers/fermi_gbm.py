"""Fermi GBM notices as GCN Classic VOEvents (``gcn.classic.voevent.FERMI_GBM_*``).

One GBM trigger produces, within ~15 min: an ALERT (trigger time only), a few
flight positions (``GBM_Flt_Pos``, computed on board), ground positions
(``GBM_Gnd_Pos``, automatic, ~20–300 s) and one final position (``GBM_Fin_Pos``,
by a burst advocate). All share ``TrigID`` and become one event
``FermiGBM-<TrigID>``; each newer position supersedes the last. Ground
sub-threshold candidates (``GBM_SubThresh``) have their own numbering
(``Trans_Num``) and become ``FermiGBM-sub-<Trans_Num>``.

Error semantics: ``Error2Radius`` is a **1-sigma statistical**
radius, so the circle encloses 1 − exp(−1/2) ≈ 0.3935 of a 2-D Gaussian; the
GBM systematic (Connaughton et al. 2015 core+tail model) is named in
``RegionSpec.systematic`` for the region code to add. Radii are floored at
0.08°. The HEALPix map of a final position (derived from its
``LocationMap_URL``) or of a sub-threshold candidate (``HealPix_URL``) travels
as ``skymap_url`` beside the circle; those maps include the systematics.

The flight classifier's two most likely classes and their probabilities [%]
are properties (``most_likely_class``, ``most_likely_prob_percent``,
``sec_most_likely_class``, ``sec_most_likely_prob_percent``).
Vetoes are kept as flags, never dropped: the flight classifier's most likely
class when it is not GRB (``not_grb:tgf``...), ``Def_NOT_a_GRB``, a
sub-threshold ``Reliability`` ≤ 4 (``low_reliability``), a source in the
blocked catalogue (``known_source``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mma.errors import Ignored, InvalidValue
from mma.formats.notice_fields import circle_region, grb_aliases, http_url
from mma.formats.voevent import VOEvent, parse_voevent, sniff_ivorn
from mma.models import Notice

__all__ = ["DEFAULT_TOPICS", "ERRORS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff"]

logger = logging.getLogger(__name__)

NAME = "fermi_gbm"
KIND = "notice"
DEFAULT_TOPICS: tuple[str, ...] = tuple(
    f"gcn.classic.voevent.FERMI_GBM_{kind}"
    for kind in ("ALERT", "FLT_POS", "GND_POS", "FIN_POS", "SUBTHRESH")
)

# Fermi launched on 2008-06-11.
FIRST_LIGHT = datetime(2008, 6, 11, tzinfo=UTC)

STREAM_PREFIX = "ivo://nasa.gsfc.gcn/Fermi#GBM_"
ONE_SIGMA_2D = 1.0 - math.exp(-0.5)  # 0.3935: probability inside a 1-sigma circle in 2-D
MIN_RADIUS_DEG = 0.08
LOW_RELIABILITY = 4  # sub-threshold Reliability at or below this is flagged
GRB_CLASS = 4


@dataclass(frozen=True)
class ErrorModel:
    """How to read ``Error2Radius`` for one notice type.

    Attributes
    ----------
    containment : float
        Probability enclosed by the stated radius.
    systematic : str or None
        Name of the systematic-error model to add (None: already included).
    has_position : bool
        False for notices that never carry a localisation (ALERT).
    """

    containment: float
    systematic: str | None
    has_position: bool = True


# Per notice type, keyed by the packet type of the ivorn. Sub-threshold radii
# come from the same ground localisation code as GND_POS, hence its systematic.
ERRORS: dict[str, ErrorModel] = {
    "GBM_ALERT": ErrorModel(ONE_SIGMA_2D, None, has_position=False),
    "GBM_Flt_Pos": ErrorModel(ONE_SIGMA_2D, "fermi_gbm_flt"),
    "GBM_Gnd_Pos": ErrorModel(ONE_SIGMA_2D, "fermi_gbm_gnd"),
    "GBM_Fin_Pos": ErrorModel(ONE_SIGMA_2D, "fermi_gbm_fin"),
    "GBM_SubThresh": ErrorModel(ONE_SIGMA_2D, "fermi_gbm_gnd"),
}

# Flight-software classes of Most_Likely_Index (GCN Fermi GBM notice documentation).
CLASSES: dict[int, str] = {
    0: "error", 1: "unreliable_location", 2: "local_particles", 3: "below_horizon",
    4: "grb", 5: "generic_sgr", 6: "generic_transient", 7: "distant_particles",
    8: "solar_flare", 9: "cyg_x1", 10: "sgr_1806_20", 11: "gro_j0422_32", 19: "tgf",
}  # fmt: skip

_FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz")


def sniff(raw: bytes) -> bool:
    """True for a VOEvent whose ivorn is a GCN Fermi GBM packet."""
    ivorn = sniff_ivorn(raw)
    return ivorn is not None and ivorn.startswith(STREAM_PREFIX)


def _map_url(event: VOEvent, notice_type: str) -> str | None:
    """URL of the HEALPix map (with systematics) for this notice, if one is known.

    Sub-threshold notices state it (``HealPix_URL``). A final position gives
    only the HEASARC quick-look plot ``…/glg_locplot_all_bn….png``; the map
    beside it is ``…/glg_healpix_all_bn….fit`` (the convention gwcelery uses).
    The ground position's ``gbm_gnd_loc_map_*.fits`` is not a documented
    HEALPix product, so it is kept in the properties only.
    """
    if notice_type == "GBM_SubThresh":
        url = http_url(event.params.get("HealPix_URL"))
        return url if url is not None and url.lower().endswith(_FITS_SUFFIXES) else None
    if notice_type == "GBM_Fin_Pos":
        plot = http_url(event.params.get("LocationMap_URL"))
        if plot is not None and "_locplot_" in plot and plot.endswith(".png"):
            url = plot.replace("_locplot_", "_healpix_").removesuffix(".png") + ".fit"
            return url.replace("http://", "https://", 1)
    return None


def _flags(event: VOEvent, props: dict[str, Any]) -> list[str]:
    flags = []
    if "Most_Likely_Index" in event.params:
        index = event.param_int("Most_Likely_Index")
        name = CLASSES.get(index, f"class_{index}")
        props["most_likely_class"] = name
        if "Most_Likely_Prob" in event.params:
            props["most_likely_prob_percent"] = event.param_float("Most_Likely_Prob")
        if index != GRB_CLASS:
            flags.append(f"not_grb:{name}")
    if "Sec_Most_Likely_Index" in event.params:
        # The runner-up: when it is GRB, its probability is the GRB probability the
        # classifier states (mma.match.priors.p_astro reads both).
        second = event.param_int("Sec_Most_Likely_Index")
        props["sec_most_likely_class"] = CLASSES.get(second, f"class_{second}")
        if "Sec_Most_Likely_Prob" in event.params:
            props["sec_most_likely_prob_percent"] = event.param_float("Sec_Most_Likely_Prob")
    if event.param_bool("Def_NOT_a_GRB"):
        flags.append("not_grb")
    if "Reliability" in event.params:
        reliability = event.param_int("Reliability")
        props["reliability"] = reliability
        if reliability <= LOW_RELIABILITY:
            flags.append("low_reliability")
    if event.param_bool("Target_in_Blk_Catalog"):
        flags.append("known_source")
    if event.param_bool("Values_Out_of_Range"):
        flags.append("values_out_of_range")
    if event.param_bool("CRC_Error"):
        flags.append("crc_error")
    return flags


def parse(raw: bytes, *, topic: str) -> Notice:
    """Decode one Fermi GBM VOEvent to a Notice.

    Mapping: ``event_id`` ← ``FermiGBM-<TrigID>`` (``FermiGBM-sub-<Trans_Num>``
    for sub-threshold); ``notice_type`` ← packet type of the ivorn
    (``GBM_Gnd_Pos``); ``event_time`` ← WhereWhen ISOTime (trigger time, UTC);
    ``issued_time`` ← Who/Date; region ← circle per :data:`ERRORS` plus a FITS
    map URL when given; ``test`` ← role ``test`` or ``Test_Submission``.

    Raises
    ------
    Ignored
        A ``utility`` packet.
    HostileMessage, MalformedMessage
        Unsafe or broken XML (see :func:`mma.formats.voevent.parse_voevent`).
    MissingField
        No trigger number, ISOTime or Who/Date.
    InvalidValue
        Not a GBM packet type this handler knows, or a bad value (position out
        of range, negative radius, non-numeric id...).
    """
    event = parse_voevent(raw)
    if not event.ivorn.startswith(STREAM_PREFIX):
        raise InvalidValue(f"{event.ivorn[:80]!r} is not a Fermi GBM VOEvent")
    if event.role == "utility":
        raise Ignored(f"Fermi GBM utility packet {event.ivorn[:80]}")
    notice_type = event.packet_type or ""
    model = ERRORS.get(notice_type)
    if model is None:
        raise InvalidValue(f"Fermi GBM packet type {notice_type[:40]!r} has no error model")
    subthreshold = notice_type == "GBM_SubThresh"
    trigger = event.param_int("Trans_Num" if subthreshold else "TrigID")
    event_id = f"FermiGBM-sub-{trigger}" if subthreshold else f"FermiGBM-{trigger}"
    props: dict[str, Any] = {"ivorn": event.ivorn, "trigger_id": trigger}
    for name, key in (("Packet_Type", "packet_type_number"), ("Sequence_Num", "sequence_num")):
        if name in event.params:
            props[key] = event.param_int(name)
    for name, key in (("Data_Signif", "data_signif_sigma"), ("Burst_Signif", "burst_signif_sigma"),
                      ("Trans_Duration", "duration_s")):  # fmt: skip
        if name in event.params:
            props[key] = event.param_float(name)
    for name in ("LightCurve_URL", "LocationMap_URL", "HealPix_URL", "Long_short",
                 "Spectral_class", "Duration_class"):  # fmt: skip
        if event.params.get(name):
            props[name.lower()] = event.params[name]
    flags = _flags(event, props)
    region = None
    if model.has_position:  # an ALERT's Position2D is a 0,0 placeholder: not even read
        position = event.position()
        if position is not None:
            props["error_radius_stated_deg"] = position.error_radius_deg
        region = circle_region(position, containment=model.containment,
                               systematic=model.systematic, min_radius_deg=MIN_RADIUS_DEG,
                               skymap_url=_map_url(event, notice_type))  # fmt: skip
        if region is None or region.kind != "circle":
            flags.append("no_position")
    test = event.role == "test" or bool(event.param_bool("Test_Submission"))
    return Notice(
        event_id=event_id,
        messenger="grb",
        instrument="Fermi-GBM",
        notice_type=notice_type,
        event_time=event.isotime(),
        issued_time=event.issued_time(),
        region=region,
        test=test,
        aliases=grb_aliases(event.why_names()),
        properties=props,
        flags=tuple(flags),
        event_class="grb",
    )
