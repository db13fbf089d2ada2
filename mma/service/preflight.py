"""What the daemon needs before it starts: sources, handler names, secrets, model settings.

The loader (:mod:`mma.config`) checks each key on its own; this module checks that
a loaded configuration can run a daemon, for ``mma config check`` and ``mma run``
(not for ``mma replay``, which needs no source and sends nothing):

* sources: at least one of ``kafka.notice_topics``, ``kafka.alert_topics`` and
  ``daemon.spool_dir``; every ``handler:topic`` entry names a registered handler of
  the list's kind (:mod:`mma.registry`);
* secrets (:data:`NEEDS`): what each enabled source and channel cannot work without,
  e.g. the GCN client id and secret when notices come from GCN Kafka, the Slack
  webhook when Slack is enabled, the SMTP password when a user name is set;
* the model's settings checked by their own modules: priors
  (:func:`mma.match.priors.check_priors`), background rates
  (:func:`mma.match.scorer.check_rates`) and ``[distance]``.

:func:`daemon_problems` lists every problem, one line each; :func:`check_daemon`
raises one :class:`~mma.errors.ConfigError` with all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mma.channels import enabled_channels
from mma.config import Config
from mma.errors import ConfigError
from mma.service.sources import EVERY_DEFAULT

__all__ = ["NEEDS", "check_daemon", "daemon_problems", "describe_sources", "secret_problems",
           "source_problems"]


def _gcn_kafka(c: Config) -> bool:
    kafka = c.section("kafka")
    return bool(kafka["notice_topics"]) and not kafka["gcn_bootstrap_servers"]


def _sasl_user(table: str, servers: str) -> Callable[[Config], bool]:
    """The client of *table* is in use (its servers set) and names a SASL user."""
    def used(c: Config) -> bool:
        section, _, key = servers.rpartition(".")
        return bool(c.section(section)[key]) and "sasl.username" in c.section(table)
    return used


def _slack_plain(c: Config) -> bool:
    slack = c.section("channels.slack")
    return bool(slack["enabled"]) and not slack.get("destinations")


def _email_login(c: Config) -> bool:
    email = c.section("channels.email")
    return bool(email["enabled"]) and bool(email["username"])


# (when it is needed, the secret (a key of [secrets]), what needs it).
NEEDS: tuple[tuple[Callable[[Config], bool], str, str], ...] = (
    (_gcn_kafka, "gcn_client_id", "notices from GCN Kafka (kafka.notice_topics without "
     "kafka.gcn_bootstrap_servers)"),
    (_gcn_kafka, "gcn_client_secret", "notices from GCN Kafka (kafka.notice_topics without "
     "kafka.gcn_bootstrap_servers)"),
    (_slack_plain, "slack_webhook_url", "channels.slack (enabled)"),
    (_email_login, "smtp_password", "channels.email (enabled, with a username)"),
    (_sasl_user("kafka.alert_client", "kafka.alert_bootstrap_servers"),
     "kafka_alert_sasl_password", "kafka.alert_client (sasl.username)"),
    (_sasl_user("kafka.notice_client", "kafka.gcn_bootstrap_servers"),
     "kafka_notice_sasl_password", "kafka.notice_client (sasl.username)"),
    (_sasl_user("channels.kafka.client", "channels.kafka.bootstrap_servers"),
     "kafka_output_sasl_password", "channels.kafka.client (sasl.username)"),
)


def secret_problems(config: Config) -> list[str]:
    """The secrets that enabled sources and channels need but are not set."""
    problems = []
    for needed, secret, by in NEEDS:
        if needed(config) and not config.secret(secret):
            var = config.section("secrets")[secret]
            problems.append(f"secret {secret} is not set (environment variable {var} or "
                            f"systemd credential {secret}); needed by {by}")
    slack = config.section("channels.slack")
    destinations = (slack.get("destinations") or []) if slack["enabled"] else []
    try:  # names, uniqueness, and no URL where a variable's name belongs
        enabled_channels(config)
    except ConfigError as exc:
        return [*problems, str(exc)]
    for i, dest in enumerate(destinations):
        name = dest.get("webhook_secret", "")
        if not config.named_secret(name):
            problems.append(f"channels.slack.destinations[{i}] ({dest.get('name')}): its "
                            f"webhook_secret {name} is not set (environment variable or "
                            "systemd credential of that name)")
    return problems


def source_problems(config: Config) -> list[str]:
    """Missing sources, unknown handlers and handlers of the wrong kind in the topics."""
    from mma.registry import Registry

    kafka, daemon = config.section("kafka"), config.section("daemon")
    if not (kafka["notice_topics"] or kafka["alert_topics"] or daemon["spool_dir"]):
        return ["nothing to consume: set kafka.notice_topics (GCN notices), "
                "kafka.alert_topics (optical alerts) or daemon.spool_dir (files)"]
    kinds = {h.NAME: h.KIND for h in Registry().handlers}
    problems = []
    for kind in ("notice", "alert"):
        key = f"kafka.{kind}_topics"
        of_kind = sorted(n for n, k in kinds.items() if k == kind)
        for entry in kafka[f"{kind}_topics"]:
            name = entry.partition(":")[0]
            if entry == EVERY_DEFAULT:
                continue
            if name not in kinds:
                problems.append(f"'{key}': {entry!r} names no handler; the {kind} handlers "
                                f"are {', '.join(of_kind)}")
            elif kinds[name] != kind:
                problems.append(f"'{key}': {entry!r}: {name} is an {kinds[name]} handler, "
                                f"not a {kind} handler")
    spool = Path(str(daemon["spool_dir"])) if daemon["spool_dir"] else None
    if spool is not None and spool.exists() and not spool.is_dir():
        problems.append(f"'daemon.spool_dir': {spool} is not a directory")
    return problems


def model_problems(config: Config) -> list[str]:
    """Problems of the priors, background rates and distance settings."""
    from mma.match import priors
    from mma.match.distance import DistanceSettings
    from mma.match.scorer import check_rates

    problems = priors.check_priors(config) + check_rates(config)
    try:
        DistanceSettings.from_section(config.section("distance"))
    except ConfigError as exc:
        problems.append(str(exc))
    return problems


def daemon_problems(config: Config, *, secrets: bool = True) -> list[str]:
    """Every reason *config* cannot run the daemon, one line each (empty: it can).

    Parameters
    ----------
    secrets
        Also check the secrets (off when they reach the daemon only through
        systemd's ``LoadCredential=``, which an administrator's shell lacks).
    """
    problems = source_problems(config) + model_problems(config)
    return problems + (secret_problems(config) if secrets else [])


def check_daemon(config: Config, *, secrets: bool = True) -> None:
    """Raise one ConfigError listing every :func:`daemon_problems` of *config*."""
    problems = daemon_problems(config, secrets=secrets)
    if problems:
        where = ", ".join(config.sources)
        raise ConfigError(f"cannot run the daemon with this configuration ({where}):\n"
                          + "\n".join(problems))



def describe_sources(config: Config) -> str:
    """What the daemon will consume, in one line (``mma config check`` prints it)."""
    kafka, daemon = config.section("kafka"), config.section("daemon")

    def topics(entries: list[str]) -> str:
        named = [e for e in entries if e != EVERY_DEFAULT]
        every = "every handler's default topics" if EVERY_DEFAULT in entries else ""
        return " and ".join(filter(None, [every, f"{len(named)} topics" if named else ""]))

    parts = []
    if kafka["notice_topics"]:
        where = kafka["gcn_bootstrap_servers"] or f"GCN Kafka ({kafka['gcn_domain']})"
        parts.append(f"notices: {topics(kafka['notice_topics'])} from {where}")
    if kafka["alert_topics"]:
        parts.append(f"alerts: {topics(kafka['alert_topics'])} from "
                     f"{kafka['alert_bootstrap_servers']}")
    if daemon["spool_dir"]:
        parts.append(f"files: {daemon['spool_dir']}")
    return "; ".join(parts) or "none"
