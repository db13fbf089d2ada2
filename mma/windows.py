"""``[windows]``: one coincidence time window per event class, and the old messenger keys.

``[windows]`` is keyed by event class (:data:`mma.models.EVENT_CLASSES`), dotted names
quoted: ``"gw.cbc" = [-1.0, 14.0]`` (unquoted, TOML reads ``gw.cbc`` as a nested table;
that is accepted as the same key). A file written for the old messenger keys still
loads: ``gw`` or ``neutrino`` sets every class of that messenger that the same layer
does not set itself, with one warning per such key. In the environment,
``MMA_WINDOWS__GW_CBC`` sets ``gw.cbc``. Every window is two finite numbers of days
with start < end (see ``docs/windows.md``).

:func:`check_windows_layer` does this for each configuration layer (file or
environment) before :mod:`mma.config` merges it; :func:`check_default_windows`
checks the packaged defaults.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from mma.errors import ConfigError
from mma.models import EVENT_CLASSES

__all__ = [
    "LEGACY_WINDOW_KEYS", "WINDOW_ENV_KEYS", "check_default_windows", "check_windows_layer",
]

# The warnings are part of loading the configuration: they keep the logger name of
# mma.config, which operators (and the tests) filter on.
log = logging.getLogger("mma.config")

# [windows] keys of the old layout, which were messenger names: "gw" and "neutrino" each
# stand for every class of that messenger (the part of the class name before the dot).
# The old "grb" and "xray" keys are class names too, so they need no translation.
LEGACY_WINDOW_KEYS: dict[str, tuple[str, ...]] = {
    messenger: tuple(c for c in EVENT_CLASSES if c.split(".", 1)[0] == messenger)
    for messenger in dict.fromkeys(c.split(".", 1)[0] for c in EVENT_CLASSES)
    if messenger not in EVENT_CLASSES
}
# Environment names of the classes: MMA_WINDOWS__GW_CBC sets "gw.cbc" (a variable name
# has no dots; the underscore forms are unambiguous).
WINDOW_ENV_KEYS = {c.replace(".", "_"): c for c in EVENT_CLASSES}


def _window(value: Any, dotted: str, origin: str) -> list[float]:
    """A checked time window ``[start, end]``: two finite numbers of days, start < end."""
    if not isinstance(value, list):
        raise ConfigError(f"{origin}: '{dotted}' must be of type list ([start, end] in days), "
                          f"got {type(value).__name__} {value!r}")
    if len(value) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                  for v in value):
        raise ConfigError(f"{origin}: '{dotted}' must be two numbers [start, end] in days, "
                          f"got {value!r}")
    start, end = float(value[0]), float(value[1])
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ConfigError(f"{origin}: '{dotted}' = {value!r} is not two finite numbers")
    if start >= end:
        raise ConfigError(f"{origin}: '{dotted}' = {value!r}: the start must be before the end "
                          "(days relative to the event time)")
    return [start, end]


def _flat_windows(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``[windows]`` with nested tables flattened: an unquoted ``gw.cbc = […]`` is ``"gw.cbc"``."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flat_windows(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_windows_layer(layer: Mapping[str, Any], origin: str) -> Mapping[str, Any]:
    """*layer* with its ``[windows]`` checked and the legacy messenger keys expanded.

    A legacy key (:data:`LEGACY_WINDOW_KEYS`) sets every class of its messenger that
    the same layer does not set explicitly, and is reported by one warning naming the
    key and those classes.

    Raises
    ------
    ConfigError
        One line per bad key of the layer's ``[windows]`` (unknown key, not two finite
        numbers, start not before end).
    """
    table = layer.get("windows")
    if not isinstance(table, dict):
        return layer  # absent, or not a table (which mma.config reports)
    explicit: dict[str, list[float]] = {}
    legacy: dict[str, list[float]] = {}
    problems: list[str] = []  # every bad key of the layer, reported together
    for key, value in _flat_windows(table).items():
        dotted = f"windows.{key}"
        try:
            if key in EVENT_CLASSES:
                explicit[key] = _window(value, dotted, origin)
            elif key in LEGACY_WINDOW_KEYS:
                legacy[key] = _window(value, dotted, origin)
            else:
                raise ConfigError(f"{origin}: unknown key '{dotted}' (the [windows] keys are "
                                  f"the event classes {', '.join(EVENT_CLASSES)})")
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    windows = dict(explicit)
    for key, window in legacy.items():
        applied = [c for c in LEGACY_WINDOW_KEYS[key] if c not in explicit]
        windows.update({c: list(window) for c in applied})
        if applied:
            log.warning("%s: [windows] key '%s' = %s is a messenger name of the old layout; "
                        "applied to the event classes %s (set them by name to silence this)",
                        origin, key, window, ", ".join(applied))
        else:
            log.warning("%s: [windows] key '%s' = %s is a messenger name of the old layout; "
                        "ignored: the same source sets each of its classes (%s) by name",
                        origin, key, window, ", ".join(LEGACY_WINDOW_KEYS[key]))
    return {**layer, "windows": windows}


def check_default_windows(defaults: Mapping[str, Any]) -> None:
    """The packaged ``[windows]``: one valid window per event class, by class name."""
    origin = "packaged default.toml"
    windows = defaults.get("windows", {})
    missing = [c for c in EVENT_CLASSES if c not in windows]
    if missing or set(windows) - set(EVENT_CLASSES):
        raise ConfigError(f"{origin}: [windows] must name exactly the event classes; "
                          f"missing {missing}, extra {sorted(set(windows) - set(EVENT_CLASSES))}")
    for key, value in windows.items():
        _window(value, f"windows.{key}", origin)
