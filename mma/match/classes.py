"""Broker classifications of an object, and the catalogue flags they imply.

Brokers stamp each alert they relay with their own classifiers and catalogue
cross-matches; the handlers keep them in ``alerts.quality`` under a broker
prefix. :func:`alert_classes` picks the class fields of one stored alert,
:func:`object_classes` keeps the newest alert's fields per broker (the
candidate's ``classes``, docs/candidate.md) and :func:`class_flags` names the
objects a catalogue already knows as a star (``catalogued_star``) or as a
quasar or other active nucleus (``catalogued_qso``).

Every value comes from a packet: anything may be missing, of the wrong type or
hostile. Only short strings, booleans, finite numbers and small lists or tables
of them are kept; the rest is dropped, never an error.

Lasair (Sherlock) and ALeRCE have no handler in mma: their alerts never reach
the database, so they add no classes (yet).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from mma.models import Detection

# Fields kept per broker: (quality key, name in ``classes``). The Fink handler copies
# Fink's science columns as fink_<column> (mma.handlers.fink.FINK_COLUMNS).
FINK_FIELDS = (
    "cdsxmatch",  # SIMBAD main type of the nearest SIMBAD object within 1.5"
    "gcvs", "vsx",  # General Catalogue of Variable Stars, AAVSO VSX: variability type
    "x3hsp", "x4lac",  # 3HSP and 4LAC blazar catalogues: the source name
    "roid",  # asteroid flag: 0 none, 1 candidate SSO (not yet), 2 candidate, 3 known
    "mulens",  # microlensing score
    "rf_snia_vs_nonia", "snn_snia_vs_nonia", "snn_sn_vs_all",  # SN Ia / SN classifiers
    "rf_kn_vs_nonkn",  # kilonova classifier
    "anomaly_score",
)  # fmt: skip
FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "fink": tuple((f"fink_{name}", name) for name in FINK_FIELDS),
    # AMPEL LSSTReport classification: "<classifier>/<model>" -> {class: probability}.
    "ampel": (("ampel_classification", "classification"),),
    "antares": (("antares_tags", "tags"), ("antares_catalogs", "catalogs")),
    # BOOM properties: star (PS1/Gaia point source near the position), rock (a known
    # solar-system object), near_brightstar, stationary.
    "babamul": tuple((f"babamul_{k}", k) for k in ("star", "rock", "near_brightstar",
                                                   "stationary")),
}
# alerts.broker as the handlers write it -> key in ``classes``.
BROKERS = {"fink": "fink", "ampel": "ampel", "antares": "antares", "babamul": "babamul"}

# SIMBAD main types of stars, as Fink's cdsxmatch writes them: both the old labels
# (Fink's 2024 night files) and the new ones, from SIMBAD's otype table that Fink
# ships (fink-utils, fink_utils/xmatch/otypes.txt: every otype whose code names a
# star, variable star, binary or young stellar object, with its candidate forms).
_STAR_TYPES = """
Star * ** V* Variable* PulsV* Pu* RRLyr RRLyrae RR* EB* EclBin SB* LPV* LongPeriodV*
Mira Mi* Cepheid ClassicalCep deltaCep Type2Cep PulsV*WVir PulsV*delSct delSctV*
pulsV*SX SXPheV* PulsV*bCep bCepV* PulsV*RVTau RVTauV* gammaDor gammaDorV* BYDra
BYDraV* RSCVn RSCVnV* RotV* RotV*alf2CVn alf2CVnV* EllipVar Irregular_V* IrregularV*
Orion_V* OrionV* Eruptive* Erupt*RCrB RCrBV* RCrB_Candidate TTau* TTauri* YSO Y*O
Ae* Be* Em* EmLine* WR* WolfRayet* C* S* AGB* RGB* HB* HorBranch* post-AGB* SG*
Supergiant RedSG* RedSG YellowSG* YellowSG BlueSG* BlueSG HotSubdwarf BlueStraggler
WD* WhiteDwarf brownD* BrownD* low-mass* Low-Mass* PM* HighPM* HV* HighVel* OH/IR
OH/IR* Pec* ChemPec* Symbiotic* CataclyV* CV* Nova XB XrayBin LMXB LowMassXBin HMXB
HighMassXBin Neutron* Pulsar
V*? Candidate_EB* EB*_Candidate Candidate_LP* LP*_Candidate Candidate_Mi* Mi*_Candidate
Candidate_RRLyr RRLyr_Candidate Candidate_Cepheid Cepheid_Candidate Candidate_YSO
YSO_Candidate Candidate_TTau* TTau*_Candidate Candidate_Ae* Ae*_Candidate Candidate_Be*
Be*_Candidate Candidate_WR* WR*_Candidate Candidate_C* C*_Candidate Candidate_S*
S*_Candidate Candidate_AGB* AGB*_Candidate Candidate_RGB* RGB*_Candidate Candidate_HB*
HB*_Candidate Candidate_post-AGB* post-AGB*_Candidate Candidate_SG* SG*_Candidate
Candidate_RSG* RSG*_Candidate Candidate_YSG* YSG*_Candidate Candidate_BSG*
BSG*_Candidate Candidate_Hsd Hsd_Candidate Candidate_BSS BSS_Candidate Candidate_WD*
WD*_Candidate Candidate_brownD* brownD*_Candidate Candidate_low-mass*
low-mass*_Candidate Candidate_CV* CV*_Candidate Candidate_Nova Nova_Candidate
Candidate_Symb* Symb*_Candidate Candidate_XB* XB*_Candidate Candidate_LMXB
LMXB_Candidate Candidate_HMXB HMXB_Candidate Candidate_** **_Candidate Candidate_OH
OH_Candidate Candidate_NS NS_Candidate
"""
SIMBAD_STARS = frozenset(_STAR_TYPES.split())
# SIMBAD main types of quasars and other active galactic nuclei (same source): a
# transient on one is most likely the nucleus varying.
_QSO_TYPES = """
QSO QSO_Candidate AGN AGN_Candidate Seyfert Seyfert_1 Seyfert1 Seyfert_2 Seyfert2
Blazar Blazar_Candidate BLLac BLLac_Candidate LINER LensedQ
"""
SIMBAD_QSOS = frozenset(_QSO_TYPES.split())
# Fink's "no entry" answers of its catalogue columns.
NO_MATCH = frozenset({"", "Unknown", "unknown", "Fail", "nan", "None"})
MAX_TEXT = 64  # characters kept of a class string
MAX_ITEMS = 32  # entries kept of a list or table


def _value(value: Any, depth: int = 0) -> Any:
    """*value* made small and JSON-safe, or None when it is not a class value."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if depth >= 2:
        return None
    if isinstance(value, list | tuple):
        return [_value(v, depth + 1) for v in list(value)[:MAX_ITEMS]]
    if isinstance(value, Mapping):
        return {str(k)[:MAX_TEXT]: _value(v, depth + 1)
                for k, v in list(value.items())[:MAX_ITEMS]}
    return None


def alert_classes(broker: Any, quality: Any) -> dict[str, dict[str, Any]]:
    """The class fields of one stored alert: ``{broker: {field: value}}`` or ``{}``.

    Parameters
    ----------
    broker : str or None
        ``alerts.broker`` (``Fink``, ``AMPEL``...); None for a survey's own alert.
    quality : mapping
        ``alerts.quality`` as stored (any JSON; not trusted).
    """
    key = BROKERS.get(broker.lower()) if isinstance(broker, str) else None
    if key is None or not isinstance(quality, Mapping):
        return {}
    fields = {name: _value(quality[stored]) for stored, name in FIELDS[key]
              if stored in quality}
    return {key: fields} if fields else {}


def object_classes(detections: Iterable[Detection]) -> dict[str, dict[str, Any]]:
    """Per broker, the class fields of the object's newest alert from that broker."""
    out: dict[str, Mapping[str, Any]] = {}
    for d in sorted(detections, key=lambda d: (d.time, d.alert_id)):
        out.update(d.classes)
    return {broker: dict(out[broker]) for broker in sorted(out)}


def _text(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if not isinstance(value, str) or value.strip() in NO_MATCH or value.startswith("Fail"):
        return None  # Fink writes "Fail 500" when the cross-match service failed
    return value.strip()


def class_flags(classes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``catalogued_star`` and/or ``catalogued_qso`` when a broker's cross-match says so.

    Fink: the SIMBAD type (``cdsxmatch``) is a star or an AGN type, or the object
    is in a variable-star catalogue (GCVS, VSX: a star) or a blazar catalogue
    (3HSP, 4LAC: an AGN). Babamul: BOOM's ``star`` property.
    """
    fink = classes.get("fink") or {}
    simbad = _text(fink, "cdsxmatch")
    star = simbad in SIMBAD_STARS or bool(_text(fink, "gcvs") or _text(fink, "vsx")) \
        or (classes.get("babamul") or {}).get("star") is True
    qso = simbad in SIMBAD_QSOS or bool(_text(fink, "x3hsp") or _text(fink, "x4lac"))
    return [name for name, hit in (("catalogued_star", star), ("catalogued_qso", qso)) if hit]
