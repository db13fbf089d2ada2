"""Channels and their rules: which outbox channels a configuration enables, and
whether a channel's subscription rules accept a candidate.

Channel names: ``kafka``, ``slack``, ``email``, ``slack:<destination>`` for each
``[[channels.slack.destinations]]`` entry and ``email:<hash of the address>`` for
each ``[[channels.email.subscribers]]`` entry, each with its own rules, retries and
parking (:mod:`mma.outbox`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from mma.config import Config
from mma.errors import ConfigError
from mma.printable import printable

CHANNELS = ("kafka", "slack", "email")


def subscriber_channel(address: str) -> str:
    """Outbox channel name of a per-recipient email subscription (fits the 32-char column)."""
    return "email:" + hashlib.sha1(address.strip().lower().encode()).hexdigest()[:12]


def enabled_channels(config: Config) -> dict[str, Mapping[str, Any]]:
    """Rules of each enabled channel, by outbox channel name.

    Each ``[[channels.email.subscribers]]`` entry is a channel of its own
    (``email:<hash of the address>``) whose rules are the email rules with the
    entry's keys on top, so recipients are retried and parked independently.
    Each ``[[channels.slack.destinations]]`` entry likewise is channel
    ``slack:<name>``; the plain ``slack`` channel is then kept only when its
    own webhook secret is set.

    Raises
    ------
    ConfigError
        A Slack destination's name or webhook secret name is invalid, or a
        name is used twice.
    """
    channels = {name: config.section(f"channels.{name}.rules") for name in CHANNELS
                if config.section(f"channels.{name}")["enabled"]}
    email = config.section("channels.email")
    if email["enabled"]:
        if not email["recipients"]:
            channels.pop("email")
        base = config.section("channels.email.rules")
        for sub in email["subscribers"]:
            rules = {**base, **{k: v for k, v in sub.items() if k != "address"}}
            channels[subscriber_channel(sub["address"])] = rules
    slack = config.section("channels.slack")
    if slack["enabled"] and slack["destinations"]:
        if not config.secret("slack_webhook_url"):
            channels.pop("slack")
        base = config.section("channels.slack.rules")
        for dest in _checked_destinations(slack["destinations"]):
            rules = {**base, **{k: v for k, v in dest.items()
                                if k not in ("name", "webhook_secret")}}
            channels[f"slack:{dest['name']}"] = rules
    return channels


# Slack destination names: short, so that "slack:<name>" fits the 32-character
# outbox.channel column and reads well in logs and metrics.
DESTINATION_NAME = re.compile(r"[a-z0-9_-]{1,26}")
# The webhook is named by its environment variable or credential file, never given.
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _checked_destinations(destinations: Iterable[Mapping[str, Any]]
                          ) -> list[Mapping[str, Any]]:
    """The ``[[channels.slack.destinations]]`` tables, their names checked."""
    seen: set[str] = set()
    for i, dest in enumerate(destinations):
        where = f"channels.slack.destinations[{i}]"
        name, secret = dest.get("name"), dest.get("webhook_secret")
        if not isinstance(name, str) or not DESTINATION_NAME.fullmatch(name):
            raise ConfigError(f"{where}.name must be 1-26 characters of a-z, 0-9, _ "
                              f"and -, got {printable(repr(name))[:80]}")
        if name in seen:
            raise ConfigError(f"{where}.name {name!r} is used twice")
        seen.add(name)
        if not isinstance(secret, str) or not SECRET_NAME.fullmatch(secret):
            raise ConfigError(f"{where}.webhook_secret must be the NAME of the environment "
                              "variable or systemd credential holding the webhook URL "
                              "(letters, digits and _), never the URL itself")
    return list(destinations)


def digest_minutes(config: Config, channel: str) -> float:
    """Digest period of an outbox channel [minutes]; 0 = one message per delivery."""
    name = channel.split(":", 1)[0]
    return float(config.section(f"channels.{name}").get("digest_minutes", 0))


def has_flag(flags: Iterable[str], name: str) -> bool:
    """*flags* hold *name* or a qualified form of it (``not_grb:classification``)."""
    return any(f == name or f.startswith(name if name.endswith(":") else name + ":")
               for f in flags)


def excluded_flags(rules: Mapping[str, Any]) -> set[str]:
    """The flags a channel refuses: ``exclude_flags``, with ``test`` as ``include_test`` says.

    ``include_test`` is the older spelling of excluding ``test``: false adds
    it, true lets test events through even when ``exclude_flags`` names it.
    """
    excluded = {str(f) for f in rules.get("exclude_flags") or ()}
    if rules.get("include_test"):
        excluded.discard("test")
    else:
        excluded.add("test")
    return excluded


def passes(rules: Mapping[str, Any], record: Mapping[str, Any], event: Mapping[str, Any],
           area90_deg2: float) -> bool:
    """Whether a channel's subscription rules accept a new or updated candidate.

    An update passes only if it changed something the channel's ``updates``
    names (empty: anything), e.g. not a rank shift alone on Slack and email.
    ``min_p_astro`` and ``significant_only`` read the record's ``significance``:
    an event whose notices state no p_astro fails a ``min_p_astro`` above 0;
    ``significant_only`` drops only events stated not significant (LVK's
    ``significant`` = false, or the ``low_significance`` flag the LVK VOEvent
    handler sets from ``Significant``; no other messenger states it).
    """
    props = event.get("properties") or {}
    far = props.get("far")
    has_ns = (props.get("properties") or {}).get("HasNS")
    flags = [str(f) for f in record.get("flags") or ()]
    stated = record.get("significance") or {}
    p_astro = stated.get("p_astro") if isinstance(stated, Mapping) else None
    significant = stated.get("significant") if isinstance(stated, Mapping) else None
    min_p_astro = rules.get("min_p_astro") or 0.0
    checks = (
        not rules["messengers"] or record["messenger"] in rules["messengers"],
        not rules["surveys"] or record["survey"] in rules["surveys"],
        not any(has_flag(flags, name) for name in excluded_flags(rules)),
        all(has_flag(flags, str(name)) for name in rules.get("require_flags") or ()),
        not min_p_astro or (isinstance(p_astro, int | float) and p_astro >= min_p_astro),
        not rules.get("significant_only")
        or (significant is not False and not has_flag(flags, "low_significance")),
        record["p_chance"] <= rules["max_p_chance"],
        record["log_bayes_factor"] >= rules["min_log_bayes_factor"],
        record["credible_level"] <= rules["max_credible_level"],
        not rules["max_area90_deg2"] or area90_deg2 <= rules["max_area90_deg2"],
        not rules["max_far_hz"] or (far is not None and far <= rules["max_far_hz"]),
        not rules["min_has_ns"] or (has_ns is not None and has_ns >= rules["min_has_ns"]),
        record.get("kind") != "update" or not rules.get("updates")
        or bool(set(record.get("changes") or ()) & set(rules["updates"])),
    )
    return all(checks)


def passes_pair(rules: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether a channel's rules accept a new or updated event x event coincidence.

    ``event_event`` turns them on; ``messengers`` (either event's), the flag
    rules and ``max_joint_far_hz`` (the space-time FAR, else the temporal one;
    a pair with neither passes only without a limit) apply; the candidate
    rules (surveys, P_chance, ln B, credible level) do not.
    """
    other = record.get("other") or {}
    flags = [str(f) for f in record.get("flags") or ()]
    far = record.get("space_time_far_hz")
    if far is None:
        far = record.get("temporal_far_hz")
    limit = rules.get("max_joint_far_hz") or 0.0
    checks = (
        bool(rules.get("event_event", True)),
        not rules["messengers"] or record.get("messenger") in rules["messengers"]
        or other.get("messenger") in rules["messengers"],
        not any(has_flag(flags, name) for name in excluded_flags(rules)),
        all(has_flag(flags, str(name)) for name in rules.get("require_flags") or ()),
        not limit or (isinstance(far, int | float) and far <= limit),
        record.get("kind") != "update" or not rules.get("updates")
        or bool(set(record.get("changes") or ()) & {*rules["updates"], *PAIR_CHANGES}),
    )
    return all(checks)


# Changes of a pair that every channel hears of (its numbers moved materially).
PAIR_CHANGES = ("status", "flags", "overlap_integral", "space_time_far_hz",
                "temporal_far_hz", "dt_s", "joint_event_id")
