"""librdkafka settings of mma's Kafka clients: servers, security and client properties.

mma has three Kafka clients, each configured from its own keys (client: servers key,
free-form table, secret holding ``sasl.password``):

* ``alerts``: ``kafka.alert_bootstrap_servers``, ``[kafka.alert_client]``,
  ``kafka_alert_sasl_password``;
* ``notices`` (from a broker of your own instead of GCN Kafka through gcn-kafka):
  ``kafka.gcn_bootstrap_servers``, ``[kafka.notice_client]``, ``kafka_notice_sasl_password``;
* ``output`` (the Kafka channel): ``channels.kafka.bootstrap_servers``,
  ``[channels.kafka.client]``, ``kafka_output_sasl_password``.

A table holds librdkafka properties (``security.protocol``, ``sasl.mechanisms``,
``sasl.username``, ``ssl.ca.location``, ``client.id``...) passed through as they are.
Passwords never live in files: :func:`client_config` adds ``sasl.password`` from the
client's secret (an environment variable or systemd credential, see ``[secrets]``).
Properties mma sets itself (:data:`RESERVED`) are refused with a
:class:`~mma.errors.ConfigError` naming the key, when the file is loaded and again here.

Every client, gcn-kafka's consumer included, logs through Python's logging
(:func:`with_logger`): librdkafka's lines go to the logger ``mma.kafka``, at
most warnings, each kind at most once a minute, instead of raw to stderr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mma.errors import ConfigError
from mma.log import ThrottledLog

if TYPE_CHECKING:
    from mma.config import Config

Client = Literal["alerts", "notices", "output"]


@dataclass(frozen=True)
class _Spec:
    section: str
    servers_key: str
    table: str
    secret: str


_CLIENTS: dict[str, _Spec] = {
    "alerts": _Spec("kafka", "alert_bootstrap_servers", "kafka.alert_client",
                    "kafka_alert_sasl_password"),
    "notices": _Spec("kafka", "gcn_bootstrap_servers", "kafka.notice_client",
                     "kafka_notice_sasl_password"),
    "output": _Spec("channels.kafka", "bootstrap_servers", "channels.kafka.client",
                    "kafka_output_sasl_password"),
}

_EVERY_CLIENT = frozenset({"bootstrap.servers", "metadata.broker.list", "logger"})
_CONSUMER = frozenset({"group.id", "group.instance.id", "enable.auto.commit",
                       "enable.auto.offset.store", "auto.offset.reset", "session.timeout.ms"})
_PRODUCER = frozenset({"enable.idempotence", "acks", "request.required.acks", "transactional.id",
                       "delivery.report.only.error"})

RESERVED: dict[str, frozenset[str]] = {
    "kafka.alert_client": _EVERY_CLIENT | _CONSUMER,
    "kafka.notice_client": _EVERY_CLIENT | _CONSUMER,
    "channels.kafka.client": _EVERY_CLIENT | _PRODUCER,
}
"""Properties mma sets itself, per table: giving one there is a ConfigError.

Servers come from the ``*bootstrap_servers`` keys; the consumers' group, commits, offset
reset and session timeout are how mma reads at least once and shares partitions
between daemons; the producer is idempotent with ``acks=all`` and needs every delivery
report.
"""

SECRET_PROPERTIES = frozenset({"sasl.password", "ssl.key.password", "ssl.keystore.password",
                               "ssl.key.pem", "sasl.oauthbearer.client.secret"})
"""Properties holding secrets (or private keys): never accepted in a table."""

_SCALAR = (str, int, float, bool)


def password_hint(table: str) -> str:
    """Where the SASL password of the client configured by *table* comes from.

    Parameters
    ----------
    table : str
        Dotted table name, e.g. ``"kafka.alert_client"``.

    Returns
    -------
    str
        ``"; the SASL password: secret <name>"``, or ``""`` for another table.
    """
    for spec in _CLIENTS.values():
        if spec.table == table:
            return f"; the SASL password: secret {spec.secret}"
    return ""


def check_properties(table: str, properties: Mapping[str, Any], origin: str) -> None:
    """Refuse secrets, properties mma sets itself and non-scalar values in a client table.

    Parameters
    ----------
    table : str
        Dotted table name (a key of :data:`RESERVED`).
    properties : mapping
        The table, flattened to librdkafka property names.
    origin : str
        Where it came from (a file name), for the message.

    Raises
    ------
    ConfigError
        Naming the first offending key.
    """
    reserved = RESERVED.get(table, _EVERY_CLIENT)
    for key, value in properties.items():
        if key in SECRET_PROPERTIES:
            raise ConfigError(f"{origin}: '{table}.{key}' is a secret and cannot be set in a "
                              f"table (see [secrets]{password_hint(table)})")
        if key in reserved:
            raise ConfigError(f"{origin}: '{table}.{key}' is set by mma itself and cannot be "
                              f"configured (reserved in this table: {', '.join(sorted(reserved))})")
        if not isinstance(value, _SCALAR):
            raise ConfigError(f"{origin}: '{table}.{key}' must be a string, number or boolean, "
                              f"got {type(value).__name__} {value!r}")


def client_config(config: Config, client: Client) -> dict[str, Any]:
    """librdkafka properties of one of mma's Kafka clients.

    ``bootstrap.servers`` from the client's servers key, the properties of its table
    and ``sasl.password`` from its secret when that is set. Callers add what mma
    controls, e.g. ``{**common, **client_config(config, "alerts"), "group.id": group}``.

    Parameters
    ----------
    config : Config
        The loaded configuration.
    client : {"alerts", "notices", "output"}
        The alert consumer, the plaintext-broker notice consumer
        (``kafka.gcn_bootstrap_servers``) or the output channel (``[channels.kafka]``).

    Returns
    -------
    dict
        A new dict of librdkafka properties; it may hold a password: never log it.

    Raises
    ------
    ConfigError
        The servers key is empty (for ``notices``: GCN Kafka is read through gcn-kafka
        instead, which takes no such table), or the table holds a secret, a property mma
        sets itself or a non-scalar value.
    ValueError
        *client* is not one of the three names.
    """
    spec = _CLIENTS.get(client)
    if spec is None:
        raise ValueError(f"unknown Kafka client {client!r}; expected one of {sorted(_CLIENTS)}")
    servers = str(config.section(spec.section)[spec.servers_key]).strip()
    if not servers:
        raise ConfigError(f"{spec.section}.{spec.servers_key} is empty: no broker for the "
                          f"{client} Kafka client")
    properties = config.section(spec.table)
    check_properties(spec.table, properties, "configuration")
    conf: dict[str, Any] = {"bootstrap.servers": servers, **properties}
    password = config.secret(spec.secret)
    if password:
        conf["sasl.password"] = password
    return conf


KAFKA_LOGGER = "mma.kafka"
# One throttle for all clients: their lines repeat alike (but for the client's number).
_KAFKA_LOG = ThrottledLog(KAFKA_LOGGER)


def with_logger(conf: Mapping[str, Any]) -> dict[str, Any]:
    """*conf* with librdkafka's log lines routed through logging (logger ``mma.kafka``).

    Without a ``logger`` property librdkafka writes its lines raw to stderr, each
    reconnection attempt to an unreachable broker one (hundreds a minute, no
    priority for journald). confluent-kafka serves the lines from the client's
    ``poll``/``consume``/``flush`` calls when a logger is given.

    Parameters
    ----------
    conf : mapping
        librdkafka properties of a Consumer, Producer or AdminClient.

    Returns
    -------
    dict
        A new dict: *conf* with ``logger`` set to the shared :class:`~mma.log.ThrottledLog`.
    """
    return {**conf, "logger": _KAFKA_LOG}
