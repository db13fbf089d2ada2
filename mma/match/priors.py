"""Priors of the counterpart score and the association probability (``docs/priors.md``).

Pure functions, no I/O. Each returns one term of

``ln B_total = ln p_astro + ln B_sky + ln B_t + ln B_D + ln prior_history + ln prior_class``

and :func:`association_probability` turns ``ln B_total`` into the probability that
the candidate is the counterpart, given the expected number of unrelated objects.
Every number comes from ``[priors]`` of the configuration (its defaults, with their
sources, are in ``default.toml`` and ``docs/priors.md``); a notice's own values
that are missing or malformed (strings, NaN, out of range) fall back to the
configured defaults, so no function returns NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mma.config import Config
from mma.match.finite import LN_FLOOR, clamp_ln
from mma.models import EVENT_CLASSES, PRE_EXISTING_CLASSES, SECONDS_PER_YEAR, StoredEvent

P_ASTRO_MIN = 1e-6
# n_sky at or below zero (no background measured yet) stands for this: odds stay finite.
N_SKY_MIN = 1e-300
# Used when a [priors] value itself is unusable (a user layer can only change types it
# keeps, but not ranges): the shipped defaults.
FALLBACK_DEFAULT_P_ASTRO = 0.5
FALLBACK_TAIL_FRACTION = 0.1
FALLBACK_PRE_EXISTING_FACTOR = 1e-3
FALLBACK_HAS_REMNANT_FLOOR = 0.01
# Flags that say the trigger is not an astrophysical burst → the source name p_astro gives.
# Swift: StarTrack_Lost_Lock (a trigger while the attitude is lost is almost always
# spurious), Def_NOT_a_GRB (Swift and GBM), GRB_Identified false.
VETO_FLAGS = {"startrack_lost_lock": "star_tracker_lost", "not_grb": "not_grb",
              "grb_not_identified": "grb_not_identified"}
LVK_ASTRO_CLASSES = ("BNS", "NSBH", "BBH", "MassGap")
# A user's watch region (mma.watch): a footprint, not an event. It has no t0 (its start is
# when watching began), no time model and no significance: B_t = 1 across its window,
# p_astro = 1, and an object seen before it started is not penalised.
WATCH_CLASS = "watch"


def _probability(value: Any) -> float | None:
    """*value* if it is a real number in [0, 1] (not a bool, a string or NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0.0 <= value <= 1.0 else None


def _non_negative(value: Any) -> float | None:
    """*value* if it is a finite real number >= 0 (not a bool or a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0.0 else None


def _family(instrument: str) -> str:
    """Short lower-case name of the facility: ``Fermi-GBM`` → ``gbm``, ``EP-WXT`` → ``ep``."""
    name = instrument.strip().lower()
    if name.startswith("fermi-"):
        return name.removeprefix("fermi-") or "fermi"
    return name.split("-", 1)[0] or "unknown"


def _default(event_class: str, section: Mapping[str, Any]) -> float:
    value = _probability(section.get(f"default_p_astro.{event_class}"))
    return value if value is not None and value > 0.0 else FALLBACK_DEFAULT_P_ASTRO


def p_astro(event: StoredEvent, config: Config) -> tuple[float, str]:
    """Probability that the event is astrophysical, and where it came from.

    Parameters
    ----------
    event
        The stored event; its ``properties`` and ``flags`` are the newest notice's.
    config
        Configuration; ``[priors]`` gives the defaults.

    Returns
    -------
    float
        p_astro, dimensionless, clipped to [1e-6, 1].
    str
        Its source, ``<facility>:<what>`` (``lvk:1-p_terrestrial``, ``lvk:far``,
        ``icecube:signalness``, ``gbm:reliability``, ``gbm:classifier``,
        ``swift:star_tracker_lost``...) or ``default``.

    Notes
    -----
    In order: a retracted event, or a veto flag (:data:`VETO_FLAGS`), gets
    ``flagged_p_astro``; GW events 1 − p_terrestrial, else the FAR [Hz] against
    ``lvk_astro_rate_per_year`` as p = R / (R + FAR); GBM sub-threshold
    Reliability (0–10) / 10, else the flight classifier's GRB probability (no
    less than ``flagged_p_astro``); a ``classification`` with a ``GRB`` entry;
    a stated ``signalness`` or ``p_astro``; else ``default_p_astro.<class>``. A
    watch region (class ``watch``) states no significance: 1, source ``watch``.
    """
    if event.event_class == WATCH_CLASS:
        return 1.0, "watch"
    section = config.section("priors")
    family = _family(event.instrument)
    value, source = _flagged(event, section)
    if value is None and event.messenger == "gw":
        value, source = _lvk(event.properties, section)
    if value is None and family == "gbm":
        value, source = _gbm(event.properties)
        if source == "classifier":
            # Rounded percentages: a stated 0 % is a veto, worth what a veto flag is.
            value = max(value or 0.0, _flagged_value(section))
    if value is None:
        value, source = _stated(event.properties)
    if value is None:
        return _default(event.event_class, section), "default"
    return min(max(value, P_ASTRO_MIN), 1.0), f"{family}:{source}"


def _flagged(event: StoredEvent, section: Mapping[str, Any]) -> tuple[float | None, str]:
    reason = "retracted" if event.status == "retracted" else next(
        (VETO_FLAGS[f] for f in event.flags if f in VETO_FLAGS), None)
    if reason is None:
        return None, ""
    return _flagged_value(section), reason


def _flagged_value(section: Mapping[str, Any]) -> float:
    value = _probability(section.get("flagged_p_astro"))
    return P_ASTRO_MIN if value is None else value


def _lvk(props: Mapping[str, Any], section: Mapping[str, Any]) -> tuple[float | None, str]:
    """1 − p_terrestrial from the classification, else p = R / (R + FAR)."""
    classification = props.get("classification")
    if isinstance(classification, Mapping) and classification:
        terrestrial = _probability(classification.get("Terrestrial"))
        if terrestrial is not None:
            return 1.0 - terrestrial, "1-p_terrestrial"
        astro = [_probability(classification.get(k)) for k in LVK_ASTRO_CLASSES
                 if k in classification]
        if astro and all(p is not None for p in astro):
            return min(sum(p or 0.0 for p in astro), 1.0), "classification"
    far_hz = _non_negative(props.get("far"))
    rate = _non_negative(section.get("lvk_astro_rate_per_year"))
    if far_hz is None or not rate:
        return None, ""
    rate_hz = rate / SECONDS_PER_YEAR
    return rate_hz / (rate_hz + far_hz), "far"


def _gbm(props: Mapping[str, Any]) -> tuple[float | None, str]:
    """Sub-threshold Reliability / 10, else the flight classifier's GRB probability.

    The classifier states its two most likely classes [%]. GRB first or second:
    that probability. GRB in neither: at most what the first two leave, and no
    more than the second's (an upper bound, so a misclassified burst keeps a chance).
    """
    reliability = _non_negative(props.get("reliability"))
    if reliability is not None:
        return min(reliability / 10.0, 1.0), "reliability"
    first = _probability(_percent(props.get("most_likely_prob_percent")))
    if props.get("most_likely_class") is None or first is None:
        return None, ""
    if props.get("most_likely_class") == "grb":
        return first, "classifier"
    second = _probability(_percent(props.get("sec_most_likely_prob_percent")))
    if second is None:
        return 1.0 - first, "classifier"
    if props.get("sec_most_likely_class") == "grb":
        return second, "classifier"
    return max(min(second, 1.0 - first - second), 0.0), "classifier"


def _percent(value: Any) -> float | None:
    """A percentage as a fraction (not checked against 1: the caller's _probability does)."""
    number = _non_negative(value)
    return None if number is None else number / 100.0


def _stated(props: Mapping[str, Any]) -> tuple[float | None, str]:
    """A GRB classification, an IceCube signalness, or a stated p_astro (0–1)."""
    classification = props.get("classification")
    if isinstance(classification, Mapping):
        grb = _probability(classification.get("GRB"))
        if grb is not None:
            return grb, "classification"
    for key in ("signalness", "p_astro"):
        value = _probability(props.get(key))
        if value is not None:
            return value, key
    return None, ""


def ln_b_time(event_class: str, dt_days: float | None, window: tuple[float, float],
              config: Config) -> float:
    """Temporal log Bayes factor of the candidate's first detection after t0.

    Parameters
    ----------
    event_class
        One of :data:`mma.models.EVENT_CLASSES`.
    dt_days
        Time of the first detection after t0 minus t0 [days]; the caller passes
        the first detection in the window (possibly negative) when there is none
        after t0. None or NaN: no timing information, ln B_t = 0.
    window
        The class's time window ``(start, end)`` relative to t0 [days].
    config
        ``[priors] signal_days.<class>`` = [a, b] [days] and ``tail_fraction`` ε.

    Returns
    -------
    float
        ln B_t with B_t = p_sig(dt) · T, T = end − start [days] and
        p_sig = (1 − ε) · U[a', b'] + ε · U[window], [a', b'] = [a, b] ∩ window
        [day⁻¹]. A signal range that is missing, malformed or outside the window
        gives 0 (uniform: no preference), as does the ``watch`` class (no t0).

    Notes
    -----
    Outside the window, and inside it away from the signal range with ε = 0,
    the time rules the object out: ln B_t is then
    :data:`~mma.match.finite.LN_FLOOR` (≈ −708), not −inf. A signal range
    narrower than a double can divide by is capped at
    :data:`~mma.match.finite.LN_CEILING`.
    """
    start, end = window
    span = end - start
    if dt_days is None or not math.isfinite(dt_days) or not (
            math.isfinite(span) and span > 0.0):
        return 0.0
    if not start <= dt_days <= end:
        return LN_FLOOR
    if event_class == WATCH_CLASS:
        return 0.0
    section = config.section("priors")
    signal = _signal_range(section.get(f"signal_days.{event_class}"), window)
    if signal is None:
        return 0.0
    a, b = signal
    tail = _probability(section.get("tail_fraction"))
    tail = FALLBACK_TAIL_FRACTION if tail is None else tail
    b_t = tail + ((1.0 - tail) * span / (b - a) if a <= dt_days <= b else 0.0)
    return clamp_ln(math.log(b_t)) if b_t > 0.0 else LN_FLOOR


def _signal_range(value: Any, window: tuple[float, float]) -> tuple[float, float] | None:
    """``[a, b]`` clipped to *window* [days], or None if malformed or not overlapping."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    a, b = value
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
               for v in (a, b)):
        return None
    lo, hi = max(float(a), window[0]), min(float(b), window[1])
    return (lo, hi) if lo < hi else None


def ln_prior_history(event_class: str, pre_existing: bool, config: Config) -> float:
    """Log prior of a candidate with detections (>= 5 sigma) before t0.

    Parameters
    ----------
    event_class
        The event's class.
    pre_existing
        The object was detected before t0 (``n_prior > 0``).
    config
        ``[priors] pre_existing_factor.<class>``, a probability factor in [0, 1].

    Returns
    -------
    float
        0 when not *pre_existing* or for neutrino classes (a flare rises before
        its neutrino); else ln(factor), ln(1e-3) by default for gw.*, grb and
        xray: a merger or burst has no optical precursor. A factor 0 (such
        objects excluded) gives :data:`~mma.match.finite.LN_FLOOR` (≈ −708), not
        −inf.
    """
    if not pre_existing or event_class not in PRE_EXISTING_CLASSES:
        return 0.0
    factor = _probability(config.section("priors").get(f"pre_existing_factor.{event_class}"))
    if factor is None:
        factor = FALLBACK_PRE_EXISTING_FACTOR
    return clamp_ln(math.log(factor)) if factor > 0.0 else LN_FLOOR


def ln_class_prior(event: StoredEvent, config: Config) -> float:
    """Log prior from the GW source class: ln HasRemnant for gw.cbc, when enabled.

    Parameters
    ----------
    event
        The event; LVK notices keep ``properties["properties"]["HasRemnant"]``
        (legacy O2 VOEvents ``ProbHasRemnant``), a probability.
    config
        ``[priors] use_has_remnant`` (default false) and ``has_remnant_floor``.

    Returns
    -------
    float
        ln(max(HasRemnant, floor)), dimensionless; 0 when disabled, for other
        classes, or when the notice states no usable HasRemnant.
    """
    section = config.section("priors")
    if section.get("use_has_remnant") is not True or event.event_class != "gw.cbc":
        return 0.0
    props = event.properties
    nested = props.get("properties")
    sources = [nested if isinstance(nested, Mapping) else {}, props]
    has_remnant = next((p for s in sources for k in ("HasRemnant", "ProbHasRemnant")
                        if (p := _probability(s.get(k))) is not None), None)
    if has_remnant is None:
        return 0.0
    floor = _probability(section.get("has_remnant_floor"))
    if floor is None or floor <= 0.0:
        floor = FALLBACK_HAS_REMNANT_FLOOR
    return math.log(max(has_remnant, floor))


def association_probability(ln_b_total: float, n_sky: float) -> float:
    """Posterior probability that the candidate is the event's counterpart.

    Parameters
    ----------
    ln_b_total
        ln of the total Bayes factor, ln p_astro and the priors included.
    n_sky
        Expected number of unrelated objects over the whole sky in the window
        (the normalisation of B_sky, which uses a background uniform on 4π sr).
        At or below zero (nothing measured): a tiny positive number.

    Returns
    -------
    float
        P in [0, 1], always finite: odds / (1 + odds), odds = exp(ln_b_total) /
        n_sky, evaluated as a logistic of ln odds (no overflow); 0 for −inf or
        NaN, and for ln odds below ≈ −745, where the odds underflow to 0 (a
        candidate at the score's floors); 1 for +inf.

    Notes
    -----
    Objects in (position, time, ...) space x form a Poisson process of intensity
    p · s(x) + N · b(x), with s and b the normalised densities of a counterpart
    and of unrelated objects, p the probability that the event has a detectable
    counterpart (p_astro) and N = n_sky the expected number of unrelated ones.
    An object at x is the counterpart with probability
    p · s / (p · s + N · b) = p · B / (p · B + N), B = s / b.
    """
    if math.isnan(ln_b_total) or ln_b_total == -math.inf:
        return 0.0
    if math.isnan(n_sky) or n_sky == math.inf:
        return 0.0
    ln_odds = ln_b_total - math.log(max(n_sky, N_SKY_MIN))
    if ln_odds == math.inf:
        return 1.0
    if ln_odds >= 0.0:
        return 1.0 / (1.0 + math.exp(-ln_odds))
    odds = math.exp(ln_odds)
    return odds / (1.0 + odds)


def check_priors(config: Config) -> list[str]:
    """Problems of ``[priors]``, one sentence each; empty when it is consistent.

    Checks what the loader's type check cannot: ranges of probabilities and rates,
    and that each class's signal range [a, b] (a < b, finite) overlaps its window.
    """
    section = config.section("priors")
    problems = []
    classes = [c for c in EVENT_CLASSES if c != WATCH_CLASS]  # a watch has no priors
    for key in ("flagged_p_astro", "tail_fraction", "has_remnant_floor",
                *(f"default_p_astro.{c}" for c in classes),
                *(f"pre_existing_factor.{c}" for c in PRE_EXISTING_CLASSES)):
        if _probability(section.get(key)) is None:
            problems.append(f"[priors] {key} must be a probability in [0, 1]")
    if not _non_negative(section.get("lvk_astro_rate_per_year")):
        problems.append("[priors] lvk_astro_rate_per_year must be a positive rate [yr^-1]")
    for event_class in classes:
        key = f"signal_days.{event_class}"
        value = section.get(key)
        window = config.window_days(event_class)
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, int | float) and math.isfinite(v) for v in value)
                and value[0] < value[1]):
            problems.append(f"[priors] {key} must be [a, b] with a < b [days]")
        elif _signal_range(value, window) is None:
            problems.append(f"[priors] {key} = {value} does not overlap the window "
                            f"{list(window)} of {event_class}: time is ignored (ln B_t = 0)")
    return problems
