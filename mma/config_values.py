"""Value checks of the merged configuration: choices, ranges, topic entries, relations.

The loader (:mod:`mma.config`) checks that every key exists with the right type;
this module checks what a type cannot say, from two declarative tables:

* :data:`VALUE_CHECKS`: a glob pattern over dotted keys (``*`` also matches dots, so
  ``*max_p_chance`` reaches every channel's rules, the email subscribers and the
  Slack destinations) and what its value must be. The first pattern matching a key
  decides; keys no pattern matches are not checked here (the priors and background
  rates are checked by :func:`mma.match.priors.check_priors` and
  :func:`mma.match.scorer.check_rates` when the daemon starts or ``mma config check``
  runs).
* :data:`RELATIONS`: checks between keys of one section.

:func:`value_problems` returns every problem, one line each naming the key.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["LOG_LEVELS", "RELATIONS", "VALUE_CHECKS", "Check", "value_problems"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Check:
    """What a value must be: *ok* says whether it is, *need* says what it must be."""

    ok: Callable[[Any], bool]
    need: str


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def one_of(*choices: str, fold: bool = False, empty: bool = False) -> Check:
    """A string among *choices* (compared upper-cased when *fold*; "" too when *empty*)."""
    def ok(value: Any) -> bool:
        return isinstance(value, str) and ((value.upper() if fold else value) in choices
                                           or (empty and value == ""))
    return Check(ok, ("empty or " if empty else "") + f"one of {' | '.join(choices)}")


def between(low: float, high: float) -> Check:
    """A finite number in [low, high]."""
    return Check(lambda v: _number(v) and low <= v <= high, f"a number in [{low:g}, {high:g}]")


def at_least(low: float) -> Check:
    """A finite number >= *low*."""
    return Check(lambda v: _number(v) and v >= low, f"a number >= {low:g}")


POSITIVE = Check(lambda v: _number(v) and v > 0, "a number > 0")
PROBABILITY = between(0.0, 1.0)


def _topic_entry(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    name, sep, topic = value.partition(":")
    return value == "*" or bool(name and sep and topic)


TOPIC_ENTRY = Check(_topic_entry,
                    "'handler:topic' entries (or \"*\" for every handler's default topics)")

# Pattern -> check; the first matching pattern decides. Keep specific patterns first.
VALUE_CHECKS: tuple[tuple[str, Check], ...] = (
    ("logging.level", one_of(*LOG_LEVELS, fold=True, empty=True)),
    ("channels.email.security", one_of("starttls", "ssl", "none")),
    ("channels.email.port", between(1, 65535)),
    ("daemon.health_port", between(0, 65535)),
    ("kafka.notice_topics", TOPIC_ENTRY),
    ("kafka.alert_topics", TOPIC_ENTRY),
    # The GCN Kafka deployments gcn-kafka knows: production, test, development.
    ("kafka.gcn_domain", one_of("gcn.nasa.gov", "test.gcn.nasa.gov", "dev.gcn.nasa.gov")),
    ("*.batch", at_least(1)),
    ("*min_interval_seconds", at_least(0)),
    ("*_seconds", POSITIVE),
    ("*digest_minutes", at_least(0)),
    ("*max_p_chance", PROBABILITY),
    ("*max_credible_level", Check(lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]")),
    ("*min_has_ns", PROBABILITY),
    ("*min_p_astro", PROBABILITY),
    ("*max_area90_deg2", at_least(0)),
    ("*max_far_hz", at_least(0)),
    ("distance.reach_quantile", Check(lambda v: _number(v) and 0 < v < 1,
                                      "a number in (0, 1)")),
    ("distance.host_offset_scale_kpc", POSITIVE),
    ("distance.host_probability_*", PROBABILITY),
    ("vetting.ztf.min_*", PROBABILITY),
    ("vetting.ztf.star_sgscore", PROBABILITY),
    ("vetting.ztf.*_arcsec", at_least(0)),
    ("vetting.rubin.min_reliability", PROBABILITY),
    ("limits.*", at_least(1)),
    ("background.span_days", at_least(0)),
    ("background.min_*nights", at_least(0)),
    ("candidates.material_*", at_least(0)),
    ("skymaps.retries", at_least(0)),
    ("skymaps.cache_max_age_days", POSITIVE),
    ("outbox.max_attempts", at_least(1)),
    ("replay.progress_min_items", at_least(0)),
    ("replay.max_clock_gap_days", POSITIVE),
    ("pages.max_candidates", at_least(1)),
    ("retention.margin_days", at_least(0)),
    ("retention.*_days", POSITIVE),
)

# (section, description, test of the section): checks between keys of one section.
RELATIONS: tuple[tuple[str, str, Callable[[Mapping[str, Any]], bool]], ...] = (
    ("kafka", "'kafka.alert_bootstrap_servers' is required when 'kafka.alert_topics' is set "
     "(the broker of your optical alert stream)",
     lambda s: not s.get("alert_topics") or bool(str(s.get("alert_bootstrap_servers", "")))),
    ("daemon", "'daemon.max_retry_seconds' must be >= 'daemon.retry_seconds'",
     lambda s: s["max_retry_seconds"] >= s["retry_seconds"]),
    ("outbox", "'outbox.max_backoff_seconds' must be >= 'outbox.backoff_seconds'",
     lambda s: s["max_backoff_seconds"] >= s["backoff_seconds"]),
)


def _leaves(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every scalar of *table* by dotted key; lists of tables as ``key[i].sub``."""
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _leaves(value, dotted + ".")
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                yield from _leaves(item, f"{dotted}[{i}].")
        else:
            yield dotted, value


# Free-form librdkafka tables: their values are librdkafka's to check.
_FREE = ("kafka.alert_client.", "kafka.notice_client.", "channels.kafka.client.")


def value_problems(data: Mapping[str, Any],
                   layers: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> list[str]:
    """Every value of the merged configuration *data* that breaks a check, one line each.

    Parameters
    ----------
    data
        The merged configuration.
    layers
        ``(origin, layer)`` in the order merged: a problem names the last origin
        that set its key (or its section, for :data:`RELATIONS`).
    """
    set_by = [(origin, {k for k, _v in _leaves(layer)}) for origin, layer in layers]

    def origin_of(key: str) -> str:
        return next((o for o, keys in reversed(set_by)
                     if key in keys or any(k.startswith(key + ".") for k in keys)),
                    "packaged default.toml")

    problems = []
    for dotted, value in _leaves(data):
        if dotted.startswith(_FREE) or dotted.startswith("secrets."):
            continue
        check = next((c for p, c in VALUE_CHECKS if fnmatch.fnmatchcase(dotted, p)), None)
        if check is None:
            continue
        bad = [v for v in (value if isinstance(value, list) else [value]) if not check.ok(v)]
        if bad:
            shown = bad[0] if isinstance(value, list) else value
            problems.append(f"{origin_of(dotted)}: '{dotted}' must be {check.need}, "
                            f"got {shown!r}")
    for section, description, test in RELATIONS:
        if section in data and not test(data[section]):
            problems.append(f"{origin_of(section)}: {description}")
    return problems
