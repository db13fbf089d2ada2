"""The candidate: one object with its detections, scored against one event.

:func:`summarise` turns an object's stored detections into what a candidate
says about it (position, detections in the window, first detection after t0,
earlier activity, peak, rise and fade); :func:`payload_of` builds the
published record (``docs/candidate.md``, schema version 2);
:func:`material_changes` decides whether a re-score is worth a new revision.
Pure functions: :mod:`mma.match.revisions` writes the rows.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from mma.config import Config
from mma.match.classes import class_flags, object_classes
from mma.match.finite import check_record, finite_or_none
from mma.match.scoring import Score
from mma.models import PRE_EXISTING_CLASSES, Detection, StoredEvent, StoredObject

SCHEMA_VERSION = 2
# What a candidate of a joint event (mma.ingest.joint_events) says of its pair.
JOINT_FIELDS = ("pair_id", "other_event_id", "overlap_integral", "temporal_far_hz",
                "space_time_far_hz")
# Namespace of candidate ids: uuid5(event_id|survey|object_id), stable for the event's life.
COINCIDENCE_NS = uuid.UUID("5d1c3e0a-6f55-4c36-9a38-8f0e3e0b8a11")
DETECTIONS_CAP = 20  # detections listed in a record (the newest; n_detections counts all)
# A detection this long before t0 is earlier activity (timing slop of the notice).
PRIOR_MARGIN = timedelta(seconds=60)
# How far back a packet's listed history reaches (ZTF prv_candidates: 30 days).
HISTORY_REACH = timedelta(days=30)
# Rise and fade rates use pairs of detections at least this far apart [days]: two
# exposures of one night differ by noise, not by the light curve.
RATE_MIN_GAP_DAYS = 1.0 / 24.0
ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0


def coincidence_id(event_id: str, survey: str, object_id: str) -> str:
    """Stable identifier of the candidate of an object for an event."""
    return str(uuid.uuid5(COINCIDENCE_NS, f"{event_id}|{survey}|{object_id}"))


@dataclass(frozen=True)
class Summary:
    """What a candidate says about its object within one event's window.

    Positions are degrees ICRS, times UTC, magnitudes AB, rates mag/day.
    """

    ra_deg: float
    dec_deg: float
    scatter_arcsec: float
    detections: tuple[Detection, ...]  # vetted, in the window, by time
    n_vetoed: int
    vetoes: tuple[str, ...]  # reasons, when every detection in the window is vetoed
    first_detection: datetime
    first_after_t0: datetime | None
    first_in_window: datetime
    last_detection: datetime
    n_prior: int
    history_source: str
    peak_magnitude: float | None
    peak_band: str | None
    rise_rate: float | None
    fade_rate: float | None
    distance_mpc: float | None
    latest_alert_pk: int

    @property
    def reference_time(self) -> datetime:
        """The time Δt is measured at: the first detection after t0, else the first one."""
        return self.first_after_t0 or self.first_in_window

    @property
    def vetoed(self) -> bool:
        """Every detection in the window fails vetting."""
        return bool(self.vetoes)


def summarise(obj: StoredObject, t0: datetime, start: datetime,
              end: datetime) -> Summary | None:
    """The object's summary in the window [start, end] around t0; None if no detection."""
    inside = [d for d in obj.detections if start <= d.time <= end]
    if not inside:
        return None
    vetted = [d for d in inside if not d.vetoes]
    used = vetted or inside
    ra, dec, scatter = mean_position(used)
    peak = min((d for d in used if _measured(d)), key=lambda d: d.magnitude or 0.0,
               default=None)
    after = [d.time for d in used if d.time >= t0]
    rise, fade = light_curve_rates(used)
    sources = [d.history_source for d in obj.detections if d.history_source]
    distances = [d.distance_mpc for d in used if d.distance_mpc]
    n_prior = count_prior(obj.detections, t0 - PRIOR_MARGIN)
    reach = t0 - (PRIOR_MARGIN if not sources else HISTORY_REACH)
    if not n_prior and obj.first_time < reach:
        # A packet dated the object's first detection (ZTF jdstarthist, >= 3 sigma)
        # before t0, and no listed history covers that date (none was listed, or it
        # is older than a ZTF packet's 30 days): it was there before the event.
        n_prior, sources = 1, ["first_detection"]
    return Summary(
        ra_deg=ra, dec_deg=dec, scatter_arcsec=scatter, detections=tuple(vetted),
        n_vetoed=len(inside) - len(vetted),
        vetoes=() if vetted else tuple(sorted({v for d in inside for v in d.vetoes})),
        first_detection=min([obj.first_time, *(d.time for d in obj.detections)]),
        first_after_t0=min(after, default=None), first_in_window=used[0].time,
        last_detection=used[-1].time,
        n_prior=n_prior,
        history_source=sources[-1] if sources else "stored_alerts",
        peak_magnitude=None if peak is None else peak.magnitude,
        peak_band=None if peak is None else peak.band, rise_rate=rise, fade_rate=fade,
        distance_mpc=distances[-1] if distances else None, latest_alert_pk=used[-1].alert_pk)


def is_pre_existing(event_class: str, summary: Summary) -> bool:
    """The object was seen before t0 and its event's class counts that against it."""
    return bool(summary.n_prior) and event_class in PRE_EXISTING_CLASSES


def count_prior(detections: Sequence[Detection], before: datetime) -> int:
    """Distinct >= 5 sigma positive detections before *before*.

    The union of every packet's history and the vetted stored alerts, by time
    to the second (the same detection seen in two packets counts once).
    """
    seconds = {round(t.timestamp()) for d in detections for t in d.history if t < before}
    seconds |= {round(d.time.timestamp()) for d in detections
                if not d.vetoes and d.time < before}
    return len(seconds)


def mean_position(detections: Sequence[Detection]) -> tuple[float, float, float]:
    """Mean of the detections' unit vectors: (RA, Dec) [deg ICRS], RMS scatter [arcsec]."""
    ra = np.radians([d.ra_deg for d in detections])
    dec = np.radians([d.dec_deg for d in detections])
    xyz = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    mean = xyz.mean(axis=1)
    mean /= np.linalg.norm(mean)
    sep = np.arccos(np.clip(mean @ xyz, -1.0, 1.0))
    ra_deg = float(np.degrees(np.arctan2(mean[1], mean[0]))) % 360.0
    dec_deg = float(np.degrees(np.arcsin(np.clip(mean[2], -1.0, 1.0))))
    return (0.0 if ra_deg >= 360.0 else ra_deg, dec_deg,
            float(np.sqrt(np.mean(sep**2))) * ARCSEC_PER_RAD)


def light_curve_rates(detections: Sequence[Detection]) -> tuple[float | None, float | None]:
    """Steepest brightening and fading [mag/day, positive] in the best-sampled band.

    Consecutive detections with magnitudes in that band, at least
    :data:`RATE_MIN_GAP_DAYS` apart; None where there is no such change.
    """
    bands: dict[str, list[Detection]] = {}
    for d in detections:
        if _measured(d) and d.band:
            bands.setdefault(d.band, []).append(d)
    if not bands:
        return None, None
    points = max(bands.values(), key=len)
    rise: float | None = None
    fade: float | None = None
    last = points[0]
    for d in points[1:]:
        gap = (d.time - last.time).total_seconds() / 86400.0
        if gap < RATE_MIN_GAP_DAYS:
            continue
        assert d.magnitude is not None and last.magnitude is not None
        rate = (d.magnitude - last.magnitude) / gap
        if rate < 0:
            rise = max(rise or 0.0, -rate)
        elif rate > 0:
            fade = max(fade or 0.0, rate)
        last = d
    return rise, fade


def _measured(d: Detection) -> bool:
    """The detection has a magnitude that is a finite number (NaN and inf: not measured)."""
    return d.magnitude is not None and math.isfinite(d.magnitude)


def significance(event: StoredEvent) -> dict[str, Any]:
    """The event's own significance as its notices state it (null when not stated).

    ``p_astro`` is the notice's own, else 1 − the LVK ``Terrestrial`` class probability.
    """
    props = event.properties

    def number(*keys: str) -> float | None:
        for key in keys:
            value = props.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) \
                    and math.isfinite(value):
                return float(value)
        return None

    significant = props.get("significant")
    p_astro = number("p_astro")
    classification = props.get("classification")
    if p_astro is None and isinstance(classification, Mapping):
        # LVK states the source classes, Terrestrial among them: p_astro = 1 - p_terr.
        p_terr = classification.get("Terrestrial")
        if isinstance(p_terr, int | float) and not isinstance(p_terr, bool) \
                and 0.0 <= p_terr <= 1.0:
            p_astro = 1.0 - float(p_terr)
    # ``far`` is in Hz for every handler (AMON's per-year ``FAR`` is converted by it).
    return {"far_hz": number("far", "far_hz"), "p_astro": p_astro,
            "significant": significant if isinstance(significant, bool) else None,
            "signalness": number("signalness")}


def payload_of(cid: str, event: StoredEvent, region_version: int, obj: StoredObject,
               summary: Summary, score: Score) -> dict[str, Any]:
    """The published record of a candidate (``docs/candidate.md``), status and rank aside.

    Raises
    ------
    InvalidValue
        A number of the record is NaN or infinite (a bug upstream): named with
        the event and object ids (:func:`mma.match.finite.check_record`), so
        the message being processed is dead-lettered with that reason.

    Notes
    -----
    Magnitudes, their errors and the rise and fade rates that are not finite
    numbers are published as ``null`` (not measured); every score term is
    finite by construction (:mod:`mma.match.finite`).
    """
    flags = [f"veto:{v}" for v in summary.vetoes]
    if "withdrawn" in summary.vetoes:
        flags.append("source_withdrawn")
    if is_pre_existing(event.event_class, summary):
        flags.append("pre_existing")
    if score.background_unmeasured:
        flags.append("background_unmeasured")
    if event.test:
        flags.append("test")
    classes = object_classes(obj.detections)
    flags += class_flags(classes)
    flags += [f for f in event.flags if f not in flags]
    t0 = event.event_time
    record = {
        "schema_version": SCHEMA_VERSION, "coincidence_id": cid,
        "event_id": event.event_id, "aliases": list(event.aliases),
        "messenger": event.messenger, "event_class": event.event_class,
        "instrument": event.instrument, "event_time": iso(t0),
        "significance": significance(event), "region_version": region_version,
        "object_id": obj.object_id, "survey": obj.survey,
        "ra": summary.ra_deg, "dec": summary.dec_deg,
        "position_scatter_arcsec": summary.scatter_arcsec,
        "detections": [_detection(d, t0) for d in summary.detections[-DETECTIONS_CAP:]],
        "n_detections": len(summary.detections), "n_vetoed_detections": summary.n_vetoed,
        "first_detection": iso(summary.first_detection),
        "first_detection_after_t0": iso(summary.first_after_t0),
        "last_detection": iso(summary.last_detection),
        "n_prior_detections": summary.n_prior, "history_source": summary.history_source,
        "peak_magnitude": summary.peak_magnitude, "peak_band": summary.peak_band,
        "rise_rate_mag_per_day": finite_or_none(summary.rise_rate),
        "fade_rate_mag_per_day": finite_or_none(summary.fade_rate),
        "dt_days": score.dt_days, "prob_density_sr": score.prob_density_sr,
        "credible_level": score.credible_level,
        "searched_area_deg2": score.searched_area_deg2,
        "log_bayes_factor": score.log_bayes_factor, "components": score.components(),
        "p_chance": score.p_chance, "p_association": score.p_association,
        "classes": classes, "flags": flags, "changes": [],
        "coincidence_type": "candidate",
    }
    joint = event.properties.get("joint")
    if isinstance(joint, Mapping):  # a joint event's candidate: the pair's FARs travel too
        record["joint"] = {key: joint.get(key) for key in JOINT_FIELDS}
    check_record(record, event_id=event.event_id, object_id=obj.object_id)
    return record


def _detection(d: Detection, t0: datetime) -> dict[str, Any]:
    return {"alert_id": d.alert_id, "time": iso(d.time), "band": d.band,
            "magnitude": finite_or_none(d.magnitude),
            "magnitude_err": finite_or_none(d.magnitude_err),
            "dt_days": (d.time - t0).total_seconds() / 86400.0}


@dataclass(frozen=True)
class Thresholds:
    """When a re-score is material (``[candidates]`` and the enabled channels' rules)."""

    credible_level: float = 0.01
    log_bayes_factor: float = 0.1
    p_chance_relative: float = 0.1
    rank_top: int = 10
    p_chance_cuts: tuple[float, ...] = ()
    credible_level_cuts: tuple[float, ...] = ()
    log_bayes_factor_cuts: tuple[float, ...] = ()

    @classmethod
    def of(cls, config: Config, channels: Mapping[str, Mapping[str, Any]]) -> Thresholds:
        """From the configuration and the enabled channels' rules (their cuts)."""
        section = config.section("candidates")

        def cuts(key: str) -> tuple[float, ...]:
            return tuple(sorted({float(r[key]) for r in channels.values() if key in r}))

        return cls(float(section["material_credible_level"]),
                   float(section["material_log_bayes_factor"]),
                   float(section["material_p_chance_relative"]),
                   int(section["material_rank_top"]), cuts("max_p_chance"),
                   cuts("max_credible_level"), cuts("min_log_bayes_factor"))

    def below_top(self, old: int | None, new: int | None) -> bool:
        """Both ranks below the top ranks: a move between them is never published.

        Every rank change reaching the top ranks is published, so a candidate whose
        stored rank is below the top was published below the top too (or with
        that very rank): :func:`mma.match.revisions.rerank` need not read its
        record to know that the move is not material. An event holds thousands of
        candidates by the end of a Rubin night, and each new one at the top moves
        them all down by one.
        """
        return (self.rank_top > 0 and old is not None and new is not None
                and min(old, new) > self.rank_top)

    def rank_is_material(self, old: int | None, new: int | None) -> bool:
        """A rank change worth a revision: within the top ranks, or any when top is 0."""
        if old == new:
            return False
        if self.rank_top <= 0 or old is None or new is None:
            return True
        return min(old, new) <= self.rank_top


def material_changes(old: Mapping[str, Any], new: Mapping[str, Any],
                     th: Thresholds) -> list[str]:
    """What changed between the last published record and a re-score, if material."""
    changes = []
    if sorted(old.get("flags", [])) != sorted(new.get("flags", [])):
        changes.append("flags")
    # Vetted detections only: a bogus subtraction beside the object is no news.
    if (_alert_ids(old), old.get("n_detections")) != (_alert_ids(new), new.get("n_detections")):
        changes.append("detections")
    if _moved(old.get("credible_level"), new.get("credible_level"), th.credible_level,
              th.credible_level_cuts):
        changes.append("credible_level")
    if _moved(old.get("log_bayes_factor"), new.get("log_bayes_factor"),
              th.log_bayes_factor, th.log_bayes_factor_cuts):
        changes.append("log_bayes_factor")
    p_old, p_new = old.get("p_chance"), new.get("p_chance")
    if _moved(p_old, p_new, math.inf, th.p_chance_cuts) or (
            isinstance(p_old, float) and isinstance(p_new, float)
            and abs(p_new - p_old) > th.p_chance_relative * max(abs(p_old), 1e-300)):
        changes.append("p_chance")
    # A newer map is always news for the record, even when it scores the object the same:
    # otherwise which version a record ends on would depend on whether the object's
    # detections arrived before or after the map. Human channels leave ``region`` alone
    # out of their ``updates``.
    if old.get("region_version") != new.get("region_version"):
        changes.append("region")
    return changes


def _alert_ids(record: Mapping[str, Any]) -> list[Any]:
    return [d.get("alert_id") for d in record.get("detections") or ()]


def _moved(old: Any, new: Any, step: float, cuts: Sequence[float]) -> bool:
    """*new* differs from *old* by more than *step*, or lies across one of *cuts*."""
    if not isinstance(old, int | float) or not isinstance(new, int | float):
        return old != new
    if not (math.isfinite(old) and math.isfinite(new)):
        return old != new
    if abs(new - old) > step:
        return True
    return any((old <= cut) != (new <= cut) for cut in cuts)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC with a ``Z`` suffix and millisecond precision."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
