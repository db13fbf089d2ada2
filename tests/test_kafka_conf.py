"""librdkafka settings of the Kafka clients: tables, secrets, refused keys, a real broker."""

from __future__ import annotations

import json
import re
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from mma.config import Config
from mma.emitters import Delivery
from mma.emitters.kafka import KafkaEmitter
from mma.errors import ConfigError, DeliveryError
from mma.kafka_conf import RESERVED, client_config
from tests.services.kafka import KafkaBroker
from tests.services.procs import free_port, start_with_port_retry
from tests.test_config import _load

EXAMPLE = Path(__file__).resolve().parents[1] / "mma" / "schema" / "coincidence.example.json"

SASL_TOML = """
[kafka]
alert_bootstrap_servers = "alerts.example.org:9094"
gcn_bootstrap_servers = "mirror.example.org:9092"

[kafka.alert_client]
"security.protocol" = "SASL_SSL"
"sasl.mechanisms" = "SCRAM-SHA-512"
"sasl.username" = "mma-alerts"
"ssl.ca.location" = "/etc/ssl/certs/ca.pem"
"client.id" = "mma-site1"

[kafka.notice_client]
security.protocol = "SSL"
"fetch.wait.max.ms" = 100

[channels.kafka]
bootstrap_servers = "out.example.org:9093"

[channels.kafka.client]
"security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanisms" = "PLAIN"
"sasl.username" = "mma-out"
"compression.type" = "zstd"
"enable.ssl.certificate.verification" = false
"""


def test_defaults_give_bootstrap_servers_only(tmp_path: Path) -> None:
    cfg = _load(tmp_path)
    # No alert broker by default (sources are opt-in): alert_topics needs one.
    with pytest.raises(ConfigError, match=r"kafka\.alert_bootstrap_servers is empty"):
        client_config(cfg, "alerts")
    cfg = _load(tmp_path, '[kafka]\nalert_bootstrap_servers = "localhost:9092"\n')
    assert client_config(cfg, "alerts") == {"bootstrap.servers": "localhost:9092"}
    assert client_config(cfg, "output") == {"bootstrap.servers": "localhost:9092"}
    with pytest.raises(ConfigError, match=r"kafka\.gcn_bootstrap_servers is empty"):
        client_config(cfg, "notices")  # GCN Kafka through gcn-kafka instead
    with pytest.raises(ValueError, match="unknown Kafka client"):
        client_config(cfg, "bogus")  # type: ignore[arg-type]


def test_tables_round_trip_through_load_config(tmp_path: Path) -> None:
    cfg = _load(tmp_path, SASL_TOML)
    assert client_config(cfg, "alerts") == {
        "bootstrap.servers": "alerts.example.org:9094", "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "mma-alerts",
        "ssl.ca.location": "/etc/ssl/certs/ca.pem", "client.id": "mma-site1"}
    # An unquoted dotted key is a nested table in TOML: flattened back to the property.
    assert client_config(cfg, "notices") == {
        "bootstrap.servers": "mirror.example.org:9092", "security.protocol": "SSL",
        "fetch.wait.max.ms": 100}
    assert client_config(cfg, "output") == {
        "bootstrap.servers": "out.example.org:9093", "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "PLAIN", "sasl.username": "mma-out", "compression.type": "zstd",
        "enable.ssl.certificate.verification": False}
    # The rendered configuration is TOML again, with the dotted keys quoted.
    rendered = tomllib.loads(cfg.render())
    assert rendered["kafka"]["alert_client"]["security.protocol"] == "SASL_SSL"
    assert rendered["channels"]["kafka"]["client"]["compression.type"] == "zstd"


def test_layers_merge_per_property(tmp_path: Path) -> None:
    system = '[kafka.alert_client]\n"client.id" = "sys"\n"security.protocol" = "SSL"\n'
    user = '[kafka.alert_client]\n"client.id" = "user"\n'
    env = {"MMA_KAFKA__ALERT_BOOTSTRAP_SERVERS": "localhost:9092",
           "MMA_KAFKA__ALERT_CLIENT__SASL_USERNAME": "from-env",
           "MMA_KAFKA__ALERT_CLIENT__SOCKET_KEEPALIVE_ENABLE": "true"}
    cfg = _load(tmp_path, user, env=env, system=system)
    assert client_config(cfg, "alerts") == {
        "bootstrap.servers": "localhost:9092", "client.id": "user", "security.protocol": "SSL",
        "sasl.username": "from-env", "socket.keepalive.enable": True}


def test_sasl_password_from_environment_and_credentials(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "kafka_output_sasl_password").write_text("out-pass\n")
    env = {"MMA_KAFKA_ALERT_SASL_PASSWORD": "alert-pass",
           "MMA_KAFKA_NOTICE_SASL_PASSWORD": "notice-pass",
           "CREDENTIALS_DIRECTORY": str(creds)}
    cfg = _load(tmp_path, SASL_TOML, env=env)
    assert client_config(cfg, "alerts")["sasl.password"] == "alert-pass"
    assert client_config(cfg, "notices")["sasl.password"] == "notice-pass"
    assert client_config(cfg, "output")["sasl.password"] == "out-pass"
    assert "sasl.password" not in client_config(_load(tmp_path, SASL_TOML), "alerts")
    shown = cfg.render()
    for secret in ("alert-pass", "notice-pass", "out-pass"):
        assert secret not in shown
    assert 'kafka_alert_sasl_password = "MMA_KAFKA_ALERT_SASL_PASSWORD"  # set' in shown


def test_drop_in_for_the_daemon_consumers(tmp_path: Path) -> None:
    """What mma sets after the table wins, and the table cannot hold it anyway."""
    cfg = _load(tmp_path, SASL_TOML, env={"MMA_KAFKA_ALERT_SASL_PASSWORD": "p"})
    common = {"enable.auto.commit": False, "auto.offset.reset": "earliest"}
    conf = {**common, **client_config(cfg, "alerts"), "group.id": "mma"}
    assert conf["enable.auto.commit"] is False and conf["auto.offset.reset"] == "earliest"
    assert conf["group.id"] == "mma" and conf["sasl.password"] == "p"


@pytest.mark.parametrize("key", ["sasl.password", "ssl.key.password", "ssl.keystore.password",
                                 "sasl.oauthbearer.client.secret", "ssl.key.pem"])
@pytest.mark.parametrize("quoted", [True, False])
def test_secret_in_a_table_is_refused(tmp_path: Path, key: str, quoted: bool) -> None:
    name = f'"{key}"' if quoted else key
    with pytest.raises(ConfigError, match=rf"user\.toml: .*'kafka\.alert_client\.{key}'.*"
                                          r"secret.*kafka_alert_sasl_password"):
        _load(tmp_path, f'[kafka.alert_client]\n{name} = "hunter2"\n')
    with pytest.raises(ConfigError, match=rf"'channels\.kafka\.client\.{key}'.*secret"):
        _load(tmp_path, f'[channels.kafka.client]\n{name} = "hunter2"\n')
    with pytest.raises(ConfigError, match=rf"environment.*'kafka\.notice_client\.{key}'"):
        env_name = "MMA_KAFKA__NOTICE_CLIENT__" + key.upper().replace(".", "_")
        _load(tmp_path, env={env_name: "hunter2"})


@pytest.mark.parametrize(("table", "key", "value"), [
    ("kafka.alert_client", "group.id", '"other"'),
    ("kafka.alert_client", "enable.auto.commit", "true"),
    ("kafka.alert_client", "bootstrap.servers", '"elsewhere:9092"'),
    ("kafka.notice_client", "group.instance.id", '"x"'),
    ("kafka.notice_client", "auto.offset.reset", '"latest"'),
    ("channels.kafka.client", "enable.idempotence", "false"),
    ("channels.kafka.client", "acks", '"1"'),
    ("channels.kafka.client", "metadata.broker.list", '"elsewhere:9092"'),
    ("channels.kafka.client", "transactional.id", '"t"'),
])
def test_keys_mma_sets_are_refused(tmp_path: Path, table: str, key: str, value: str) -> None:
    assert key in RESERVED[table]
    pattern = re.escape(f"user.toml: '{table}.{key}' is set by mma itself")
    with pytest.raises(ConfigError, match=pattern):
        _load(tmp_path, f'[{table}]\n"{key}" = {value}\n')


def test_values_must_be_scalars(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'kafka\.alert_client\.client\.id' must be a string"):
        _load(tmp_path, '[kafka.alert_client]\n"client.id" = ["a", "b"]\n')
    with pytest.raises(ConfigError, match=r"'channels\.kafka\.client' must be a table"):
        _load(tmp_path, '[channels.kafka]\nclient = "SASL_SSL"\n')


def test_client_config_checks_a_config_built_by_hand(tmp_path: Path) -> None:
    """The checks hold also for a Config not made by load_config."""
    cfg = _load(tmp_path)
    data: dict[str, Any] = json.loads(json.dumps(cfg.data))
    data["kafka"]["alert_bootstrap_servers"] = "localhost:9092"
    data["kafka"]["alert_client"] = {"group.id": "x"}
    with pytest.raises(ConfigError, match=r"'kafka\.alert_client\.group\.id' is set by mma"):
        client_config(Config(data=data, environ={}), "alerts")
    data["kafka"]["alert_client"] = {"sasl.password": "x"}
    with pytest.raises(ConfigError, match=r"'kafka\.alert_client\.sasl\.password' is a secret"):
        client_config(Config(data=data, environ={}), "alerts")


def test_emitter_from_config_forces_idempotence(tmp_path: Path) -> None:
    text = ('[channels.kafka]\ntopic = "site.coincidences"\n'
            '[channels.kafka.client]\n"client.id" = "mma-out"\n"linger.ms" = 5\n')
    cfg = _load(tmp_path, text, env={"MMA_KAFKA_OUTPUT_SASL_PASSWORD": "pw"})
    emitter = KafkaEmitter.from_config(cfg, timeout_s=7)
    assert emitter.topic == "site.coincidences"
    assert emitter._config == {
        "bootstrap.servers": "localhost:9092", "client.id": "mma-out", "linger.ms": 5,
        "sasl.password": "pw", "enable.idempotence": True, "acks": "all",
        "message.timeout.ms": 7000}


def _delivery() -> Delivery:
    payload = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return Delivery(outbox_id=1, channel="kafka", coincidence_id=payload["coincidence_id"],
                    revision=1, kind="new", payload=payload,
                    event={"properties": {}, "area90_deg2": 130.0, "test": False})


@pytest.mark.kafka
def test_table_property_reaches_the_producer(tmp_path: Path, kafka_bootstrap: str,
                                             kafka_topic: str) -> None:
    """security.protocol = "SSL" against the plaintext broker: no delivery; default delivers."""
    base = (f'[channels.kafka]\nbootstrap_servers = "{kafka_bootstrap}"\n'
            f'topic = "{kafka_topic}"\n')
    good = KafkaEmitter.from_config(_load(tmp_path, base), timeout_s=20)
    try:
        good.send(_delivery())
    finally:
        good.close()
    bad_cfg = _load(tmp_path, base + '[channels.kafka.client]\n"security.protocol" = "SSL"\n'
                                      '"message.timeout.ms" = 3000\n')
    bad = KafkaEmitter.from_config(bad_cfg, timeout_s=3)
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryError) as excinfo:
            bad.send(_delivery())
    finally:
        bad.timeout_s = 1
        bad.close()
    assert not excinfo.value.permanent
    assert time.monotonic() - started < 15


# -- SASL/PLAIN on a broker of this module's own ------------------------------------------

SASL_USER, SASL_PASSWORD = "mma", "mma-sasl-pass"


class _SaslKafka(KafkaBroker):
    """The harness broker plus a SASL_PLAINTEXT listener (mechanism PLAIN, one user).

    The PLAINTEXT listener stays (readiness checks and the inter-broker listener use it);
    ``sasl_bootstrap`` is the SASL one.
    """

    def _write_config(self) -> None:
        super()._write_config()
        self.sasl_port = free_port()
        while self.sasl_port in (self.port, self.controller_port):
            self.sasl_port = free_port()
        self.sasl_bootstrap = f"{self.host}:{self.sasl_port}"
        settings = dict(line.split("=", 1) for line in self.properties.read_text().splitlines()
                        if "=" in line)
        settings["listeners"] += f",SASL_PLAINTEXT://{self.sasl_bootstrap}"
        settings["advertised.listeners"] += f",SASL_PLAINTEXT://{self.sasl_bootstrap}"
        settings["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
        settings["sasl.enabled.mechanisms"] = "PLAIN"
        settings["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_{SASL_USER}="{SASL_PASSWORD}";')
        self.properties.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))


@pytest.fixture(scope="module")
def sasl_kafka() -> Iterator[_SaslKafka]:
    """A broker with a SASL_PLAINTEXT/PLAIN listener, stopped at the end of this module."""
    broker = start_with_port_retry(_SaslKafka, port_taken="Address already in use",
                                   what="Kafka (SASL)")
    try:
        yield broker
    finally:
        broker.cleanup()


def _sasl_toml(broker: _SaslKafka, topic: str) -> str:
    table = ('"security.protocol" = "SASL_PLAINTEXT"\n"sasl.mechanisms" = "PLAIN"\n'
             f'"sasl.username" = "{SASL_USER}"\n')
    return (f'[kafka]\nalert_bootstrap_servers = "{broker.sasl_bootstrap}"\n'
            f"[kafka.alert_client]\n{table}"
            f'[channels.kafka]\nbootstrap_servers = "{broker.sasl_bootstrap}"\n'
            f'topic = "{topic}"\n'
            f'[channels.kafka.client]\n{table}"message.timeout.ms" = 5000\n')


@pytest.mark.kafka
def test_sasl_plain_round_trip(tmp_path: Path, sasl_kafka: _SaslKafka) -> None:
    """Output producer and alert consumer authenticate with the table and the secret."""
    topic = f"mma-sasl-{uuid.uuid4().hex}"
    text = _sasl_toml(sasl_kafka, topic)
    wrong = _load(tmp_path, text, env={"MMA_KAFKA_OUTPUT_SASL_PASSWORD": "wrong"})
    emitter = KafkaEmitter.from_config(wrong, timeout_s=5)
    try:
        with pytest.raises(DeliveryError):
            emitter.send(_delivery())
    finally:
        emitter.timeout_s = 1
        emitter.close()

    env = {"MMA_KAFKA_OUTPUT_SASL_PASSWORD": SASL_PASSWORD,
           "MMA_KAFKA_ALERT_SASL_PASSWORD": SASL_PASSWORD}
    cfg = _load(tmp_path, text, env=env)
    emitter = KafkaEmitter.from_config(cfg, timeout_s=20)
    try:
        emitter.send(_delivery())
    finally:
        emitter.close()

    consumer = Consumer({"enable.auto.commit": False, "auto.offset.reset": "earliest",
                         **client_config(cfg, "alerts"), "group.id": uuid.uuid4().hex})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        msg = None
        while msg is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            assert msg is None or msg.error() is None, msg.error()
    finally:
        consumer.close()
    assert msg is not None
    assert msg.key() == _delivery().coincidence_id.encode()
