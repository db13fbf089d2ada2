"""Finite numbers in every score and every published record.

A log Bayes factor term is evidence for or against a candidate on a log scale;
an infinite one would say "certainly not" (or "certainly") where the model only
says "very unlikely", and cannot be written as JSON, stored in a PostgreSQL JSON
column or ranked against another. Every ``ln`` term of the score is therefore
clamped to ``[LN_FLOOR, LN_CEILING]`` (:func:`clamp_ln`), the logarithms of the
smallest positive normal and the largest double: a factor beyond them cannot be
held as a number, and the clamp keeps the sign and the order of what it
replaces. ``docs/statistic.md`` ("Finite numbers") lists each term's floor.

:func:`check_record` is the last guard where a candidate's record is built: a
number that is still NaN or infinite there is a bug, refused with
:class:`~mma.errors.InvalidValue` naming the event, the object and the field, so
the message that caused it is dead-lettered with that reason instead of
reaching the database (which would refuse the row) or a consumer.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from mma.errors import InvalidValue

__all__ = ["LN_CEILING", "LN_FLOOR", "check_record", "clamp_ln", "finite_or_none",
           "non_finite_paths"]

LN_FLOOR = math.log(sys.float_info.min)
"""ln 2.2e-308 ≈ −708.4: the floor of every log term (as strong as evidence against gets)."""
LN_CEILING = math.log(sys.float_info.max)
"""ln 1.8e308 ≈ +709.8: the ceiling of every log term (``exp`` of it is still a double)."""
MAX_LISTED = 5  # non-finite fields named in an error message


def clamp_ln(value: float) -> float:
    """*value* clamped to ``[LN_FLOOR, LN_CEILING]``; NaN is left for :func:`check_record`.

    Parameters
    ----------
    value : float
        A natural log of a factor or density ratio (dimensionless).

    Returns
    -------
    float
        ``-inf`` and anything below the floor give :data:`LN_FLOOR`, ``+inf`` and
        anything above the ceiling :data:`LN_CEILING`. NaN stays NaN: it is a bug,
        not evidence, and must be caught with the message's identity.
    """
    if value < LN_FLOOR:
        return LN_FLOOR
    if value > LN_CEILING:
        return LN_CEILING
    return value


def finite_or_none(value: float | None) -> float | None:
    """*value* if it is a finite number, else None (a measurement that is not one).

    Used for what a record reports rather than computes (magnitudes and their
    errors): ``null`` in the record means "not measured".
    """
    if value is None or isinstance(value, bool):
        return None
    return float(value) if math.isfinite(value) else None


def non_finite_paths(value: Any, path: str = "") -> Iterator[str]:
    """Dotted paths (``components.ln_B_D``, ``detections[3].magnitude``) of NaN or ±inf."""
    if isinstance(value, float):
        if not math.isfinite(value):
            yield f"{path}={float(value)!r}"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from non_finite_paths(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from non_finite_paths(item, f"{path}[{i}]")


def _all_finite(value: Any) -> bool:
    """Every float in *value* is finite (the fast path of :func:`check_record`).

    Exact types first: a record is plain dicts, lists and floats, and this runs
    for every candidate scored (~6 us a record of one detection, ~20 us of 20).
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return value - value == 0.0  # inf - inf and NaN - NaN are NaN
    if kind is dict:
        return all(map(_all_finite, value.values()))
    if kind is list or kind is tuple:
        return all(map(_all_finite, value))
    if isinstance(value, float):  # numpy.float64 and other float subclasses
        return math.isfinite(value)
    if isinstance(value, Mapping | list | tuple):
        return not any(True for _ in non_finite_paths(value))
    return True


def check_record(record: Mapping[str, Any], *, event_id: str, object_id: str) -> None:
    """Refuse a candidate record holding a number that is not finite.

    Parameters
    ----------
    record : mapping
        The record as it will be stored and published.
    event_id, object_id : str
        Its identities, named in the error.

    Raises
    ------
    InvalidValue
        Naming the event, the object and up to :data:`MAX_LISTED` fields.
    """
    if _all_finite(record):
        return
    bad = list(non_finite_paths(record))
    if bad:
        listed = ", ".join(bad[:MAX_LISTED]) + (
            f" and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else "")
        raise InvalidValue(f"candidate of event {event_id} and object {object_id}: "
                           f"non-finite number(s) in its record: {listed}")
