"""What messages say about a candidate's event, and the brokers' classes of its object.

Shared by Slack and email. Each handler stores its notices' numbers under its own
keys and units in the event's ``properties``; this module is the one place that knows
them:

* false-alarm rate: ``far`` [Hz] (LVK JSON and VOEvent, IceCube JSON notices, KM3NeT,
  Swift GUANO, Fermi LAT); ``FAR`` [yr⁻¹] (IceCube AMON VOEvents, as their ``FAR``
  Param states). The record's ``significance.far_hz`` stands in only when neither is
  stored (it copies ``FAR`` unconverted for AMON events);
* LVK ``classification`` (BNS, NSBH, BBH, Terrestrial: probabilities) and source
  ``properties`` (HasNS, HasRemnant, HasMassGap);
* ``burst_signif_sigma`` (Fermi GBM), ``signif_sigma`` (INTEGRAL) [σ].

The delivery adds ``notice_type`` (the event's newest notice) and ``distance_mpc``
(``{"mean", "std"}`` [Mpc], all-sky marginal distance of a 3-D map) to the event
extras. Everything read here may be missing or hostile: values are formatted, never
trusted, and callers escape the text for their markup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeGuard

from mma.models import SECONDS_PER_YEAR

__all__ = ("SECONDS_PER_YEAR", "classes_lines", "event_rows", "far_hz", "format_far",
           "p_astro", "significance_text")

# AMON first: its handler keeps the per-year ``FAR`` as stated beside ``far`` [Hz], and a
# rate stated per year reads best per year.
_FAR_KEYS = (("FAR", 1.0 / SECONDS_PER_YEAR), ("far", 1.0))
"""(property key, factor to Hz): which handler stores a FAR under which unit."""
_SIGMA_KEYS = ("burst_signif_sigma", "signif_sigma")
_MAX_ITEMS = 8  # classes shown per broker, entries of a classification
_MAX_TEXT = 40  # characters of a broker's class name or a class key


def _is_number(value: Any) -> TypeGuard[float]:
    return (not isinstance(value, bool) and isinstance(value, int | float)
            and math.isfinite(value))


def _short(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT - 1] + "…"


def _properties(event: Mapping[str, Any]) -> Mapping[str, Any]:
    props = event.get("properties")
    return props if isinstance(props, Mapping) else {}


def far_hz(payload: Mapping[str, Any], event: Mapping[str, Any]) -> tuple[float, bool] | None:
    """The event's false-alarm rate [Hz], and whether the notice stated it per year.

    Parameters
    ----------
    payload : mapping
        The candidate record (``significance.far_hz`` [Hz], the fallback).
    event : mapping
        Event extras; ``properties.far`` [Hz] or ``properties.FAR`` [yr⁻¹].

    Returns
    -------
    (float, bool) or None
        Rate [Hz] (per-year rates divided by 365.25 d), True when stated per year;
        None without a finite, non-negative rate.
    """
    props = _properties(event)
    for key, to_hz in _FAR_KEYS:
        value = props.get(key)
        if _is_number(value) and value >= 0:
            return float(value) * to_hz, to_hz != 1.0
    sig = payload.get("significance")
    value = sig.get("far_hz") if isinstance(sig, Mapping) else None
    if _is_number(value) and value >= 0:
        return float(value), False
    return None


def _years(years: float) -> str:
    """``98.5``, ``9,110``, ``2.1e+08``: three digits, grouped below a billion."""
    return f"{float(f'{years:.3g}'):,.0f}" if 1000 <= years < 1e9 else f"{years:.3g}"


def format_far(rate_hz: float, per_year: bool = False) -> str:
    """``3.22e-10 Hz (1 per 98.5 yr)``; ``2.01 per yr (6.35e-08 Hz)`` when stated per year."""
    if not _is_number(rate_hz) or rate_hz < 0:
        return "n/a"
    yearly = rate_hz * SECONDS_PER_YEAR
    if per_year:
        return f"{yearly:.3g} per yr ({rate_hz:.3g} Hz)"
    if rate_hz == 0:
        return "0 Hz"
    inverse = f"1 per {_years(1.0 / yearly)} yr" if yearly < 1.0 else f"{yearly:.3g} per yr"
    return f"{rate_hz:.3g} Hz ({inverse})"


def p_astro(payload: Mapping[str, Any], event: Mapping[str, Any]) -> float | None:
    """Probability that the event is astrophysical: stated, else 1 − LVK's Terrestrial."""
    sig = payload.get("significance")
    stated = sig.get("p_astro") if isinstance(sig, Mapping) else None
    props = _properties(event)
    stated = stated if _is_number(stated) else props.get("p_astro")
    if _is_number(stated) and 0 <= stated <= 1:
        return float(stated)
    classification = props.get("classification")
    if isinstance(classification, Mapping):
        terrestrial = classification.get("Terrestrial")
        if _is_number(terrestrial) and 0 <= terrestrial <= 1:
            return 1.0 - float(terrestrial)
    return None


def significance_text(payload: Mapping[str, Any], event: Mapping[str, Any]) -> str | None:
    """``FAR 3.22e-10 Hz (1 per 98.5 yr), p_astro 0.90, significant``; None when unstated.

    Parameters
    ----------
    payload : mapping
        The candidate record (``significance``: ``p_astro``, ``significant``,
        ``signalness``).
    event : mapping
        Event extras (``properties``: FAR in the handler's unit, classification,
        detection significance [σ]).
    """
    sig = payload.get("significance")
    sig = sig if isinstance(sig, Mapping) else {}
    props = _properties(event)
    far = far_hz(payload, event)
    parts = [f"FAR {format_far(*far)}"] if far else []
    astro = p_astro(payload, event)
    if astro is not None:
        parts.append(f"p_astro {astro:.2f}")
    signalness = sig.get("signalness", props.get("signalness"))
    if _is_number(signalness):
        parts.append(f"signalness {signalness:.2f}")
    sigma = next((props[k] for k in _SIGMA_KEYS if _is_number(props.get(k))), None)
    if sigma is not None:
        parts.append(f"{sigma:.1f} σ")
    significant = sig.get("significant", props.get("significant"))
    if isinstance(significant, bool):
        parts.append("significant" if significant else "not significant")
    return ", ".join(parts) or None


def _probabilities(mapping: Any) -> str | None:
    """``NSBH 0.86, Terrestrial 0.10``: numeric entries, most probable first."""
    if not isinstance(mapping, Mapping):
        return None
    items = sorted(((str(k), float(v)) for k, v in mapping.items() if _is_number(v)),
                   key=lambda kv: -kv[1])[:_MAX_ITEMS]
    return ", ".join(f"{_short(k)} {v:.2f}" for k, v in items) or None


def _distance(event: Mapping[str, Any]) -> str | None:
    distance = event.get("distance_mpc")
    if not isinstance(distance, Mapping) or not _is_number(distance.get("mean")):
        return None
    std = distance.get("std")
    spread = f" ± {std:,.0f}" if _is_number(std) else ""
    return f"{distance['mean']:,.0f}{spread} Mpc"


def event_rows(payload: Mapping[str, Any], event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The event's context as (label, text) rows; rows without a value are left out.

    Parameters
    ----------
    payload : mapping
        The candidate record.
    event : mapping
        Event extras: ``notice_type``, ``properties``, ``distance_mpc``, ``area90_deg2``.

    Returns
    -------
    list of (str, str)
        Notice, Significance, Classification, Source properties, Distance, 90 % area.
    """
    props = _properties(event)
    notice = event.get("notice_type") or props.get("alert_type")
    area = event.get("area90_deg2")
    rows = [
        ("Notice", _short(notice) if notice else None),
        ("Significance", significance_text(payload, event)),
        ("Classification", _probabilities(props.get("classification"))),
        ("Source properties", _probabilities(props.get("properties"))),
        ("Distance", _distance(event)),
        ("90 % area", f"{area:,.0f} deg²" if _is_number(area) else None),
    ]
    return [(label, text) for label, text in rows if text]


def _class_value(value: Any, depth: int = 0) -> str | None:
    """A class field as text: scalars; lists (first three); tables of probabilities
    (the three most probable, AMPEL's classifier → class → probability)."""
    if isinstance(value, Mapping) and depth < 2:
        numbers = {k: v for k, v in value.items() if _is_number(v)}
        if numbers and len(numbers) == len(value):
            best = sorted(numbers.items(), key=lambda kv: -kv[1])[:3]
            return ", ".join(f"{_short(k)} {v:.2f}" for k, v in best)
        inner = [(k, _class_value(v, depth + 1)) for k, v in list(value.items())[:3]]
        return "; ".join(f"{_short(k)}: {v}" for k, v in inner if v) or None
    if isinstance(value, list | tuple) and depth < 2:
        shown = [v for v in (_class_value(item, 2) for item in value[:3]) if v]
        return "/".join(shown) + ("/…" if len(value) > 3 else "") if shown else None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if _is_number(value):
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:.3g}"
    if isinstance(value, str) and value.strip():
        return _short(value)
    return None


def classes_lines(payload: Mapping[str, Any]) -> list[str]:
    """The brokers' classes of the object, one line per broker (``fink: cdsxmatch QSO``).

    Parameters
    ----------
    payload : mapping
        The candidate record; ``classes`` maps broker → class field → value (strings,
        numbers, booleans). Absent on records written before brokers' classes were kept.

    Returns
    -------
    list of str
        At most 8 fields per broker; lists show their first three values, tables of
        probabilities their three most probable classes; empty values are left out.
    """
    classes = payload.get("classes")
    if not isinstance(classes, Mapping):
        return []
    lines = []
    for broker, fields in list(classes.items())[:_MAX_ITEMS]:
        if not isinstance(fields, Mapping):
            continue
        shown = [(k, _class_value(v)) for k, v in fields.items()]
        parts = [f"{_short(k)} {v}" for k, v in shown if v is not None][:_MAX_ITEMS]
        if parts:
            lines.append(f"{_short(broker)}: {', '.join(parts)}")
    return lines
