"""The order of an event's notices, whatever order they arrive in.

Live, an event's notices come on different topics with no ordering between
them (GBM FLT, GND and FIN positions; IceCube JSON and AMON VOEvents; LVK
alerts re-delivered after a restart). mma therefore orders them itself:

1. by the notice's issue time (``Notice.issued_time``, the instrument's own);
2. where issue times tie, by the notice type's rank (:data:`TYPE_RANK`): a
   refined position outranks a quick one of the same instant;
3. then by the SHA-256 of the raw notice, so that the order is total and the
   same in every daemon.

The newest notice by this order sets the event's time and properties, and its
region is the active one; an older notice that arrives late is stored (its
region too, superseded at once) and changes nothing. A region fetched by URL
from a notice ranks just after the shape stated in the same notice.

Retractions are sticky (:func:`after_retraction`): once an event is retracted,
later notices are stored with the flag ``after_retraction``, activate no
region and create no live candidate, whatever their issue time. None of the
streams mma reads today withdraws a retraction (LVK issues a new superevent,
IceCube a new alert), so no notice lifts one; an operator who must can
re-ingest the event under a new id.
"""

from __future__ import annotations

from datetime import datetime

# Rank of notice types within one instrument, higher = later and better. Types
# not listed rank 0. Names as the handlers give them (Notice.notice_type).
TYPE_RANK: dict[str, int] = {
    # LVK: EARLY_WARNING < PRELIMINARY < INITIAL < UPDATE
    "EARLY_WARNING": 1, "PRELIMINARY": 2, "INITIAL": 3, "UPDATE": 4,
    # Fermi GBM: alert < flight < ground < final positions
    "GBM_ALERT": 1, "GBM_Flt_Pos": 2, "GBM_Gnd_Pos": 3, "GBM_Fin_Pos": 4,
    # Swift: BAT quick-look < BAT position < XRT < UVOT (arcsec refinements)
    "BAT_QuickLook_Pos": 1, "BAT_GRB_Pos": 2, "XRT_Pos": 3, "UVOT_Pos": 4,
    # INTEGRAL IBAS: wakeup < refined < offline
    "Wakeup_Pos": 1, "Refined_Pos": 2, "Offline_Pos": 3,
    # IceCube AMON and GCN JSON, and every GCN JSON stream: initial < update
    "initial": 1, "update": 2,
    # SVOM VOEvents: GRM trigger < ECLAIRs < slew decision < MXT initial < MXT update
    "grm-trigger": 1, "eclairs-wakeup": 2, "eclairs-catalog": 2, "slewing": 3,
    "not-slewing": 3, "mxt-initial": 4, "mxt-update": 5,
    # Fermi LAT: on-board initial < update < diagnostic < ground and offline analyses
    "LAT_POS_INI": 1, "LAT_POS_UPD": 2, "LAT_POS_DIAG": 3, "LAT_GND": 4, "LAT_OFFLINE": 4,
    # GECAM: flight < ground
    "GECAM_FLT": 1, "GECAM_GND": 2,
    # Joint events (mma.ingest.joint_events): mma's product < LVK's combined sky map
    "JOINT": 1, "LVK_COMBINED": 2,
}

OrderKey = tuple[datetime, int, str, int]


def type_rank(notice_type: str) -> int:
    """Rank of a notice type among its instrument's (0 when unknown)."""
    return TYPE_RANK.get(notice_type, 0)


def order_key(issued_time: datetime, notice_type: str, sha256: str,
              within: int = 0) -> OrderKey:
    """The sort key of a notice (or of the *within*-th region one notice gave)."""
    return issued_time, type_rank(notice_type), sha256, within


def after_retraction(event_status: str, retraction: bool) -> bool:
    """Whether a notice comes after a sticky retraction (stored, flagged, inert)."""
    return event_status == "retracted" and not retraction
