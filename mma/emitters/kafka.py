"""Kafka emitter: candidates on the ``mma.match.candidates`` topic (docs/candidate.md).

One message per :class:`~mma.emitters.Delivery`:

* key: ``coincidence_id`` (UTF-8), stable for the life of the event (one object of
  one survey against one event), so a compacted topic keeps the latest state of
  every candidate;
* value: the candidate record (schema version 2) as compact JSON
  (``allow_nan=False``), as the outbox stored it, with ``revision`` and ``kind`` set
  to those of the delivery: a consumer needs nothing but the value;
* headers: ``mma-kind`` (``new`` / ``update`` / ``retraction``),
  ``mma-revision`` (decimal integer), the same as in the value, and
  ``mma-coincidence-type`` (``candidate``, or ``event-event`` for an event x event
  coincidence: no optical object), for consumers that filter without parsing;
  ``content-type: application/json`` and ``mma-schema``
  (the ``$id`` of ``mma/schema/coincidence.schema.json``).

Delivery is **at least once**: the producer is idempotent (``acks=all``,
``enable.idempotence=true``), which removes duplicates from producer retries
inside one session, but the outbox re-sends a delivery whose report did not
arrive in time, and a restart re-sends unmarked rows. Consumers must
therefore keep, per key, the message with the highest ``revision`` and ignore
older or equal revisions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from mma.emitters import Delivery
from mma.emitters.joint_message import is_event_event
from mma.errors import DeliveryError
from mma.kafka_conf import client_config, with_logger

if TYPE_CHECKING:
    from mma.config import Config

logger = logging.getLogger(__name__)

DEFAULT_TOPIC = "mma.match.candidates"
"""Default output topic (README, "Delivery")."""

HEADER_KIND = "mma-kind"
HEADER_COINCIDENCE_TYPE = "mma-coincidence-type"
HEADER_REVISION = "mma-revision"
HEADER_CONTENT_TYPE = "content-type"
HEADER_SCHEMA = "mma-schema"

_FALLBACK_SCHEMA_ID = "https://mma.invalid/schema/coincidence/v2.json"

#: Error codes for which a retry of the same message cannot succeed.
PERMANENT_ERROR_CODES: frozenset[int] = frozenset(
    code for code in (
        getattr(KafkaError, name, None) for name in (
            "MSG_SIZE_TOO_LARGE",
            "RECORD_LIST_TOO_LARGE",
            "INVALID_RECORD",
            "UNSUPPORTED_FOR_MESSAGE_FORMAT",
            "TOPIC_AUTHORIZATION_FAILED",
            "CLUSTER_AUTHORIZATION_FAILED",
            "TOPIC_EXCEPTION",
            "INVALID_REQUIRED_ACKS",
            "_INVALID_ARG",
            "_MSG_SIZE_TOO_LARGE",
        )
    ) if isinstance(code, int)
)


@lru_cache(maxsize=1)
def schema_id() -> str:
    """The ``$id`` of the coincidence JSON Schema (the ``mma-schema`` header).

    Returns
    -------
    str
        ``$id`` of ``mma/schema/coincidence.schema.json``.
    """
    try:
        text = resources.files("mma").joinpath("schema/coincidence.schema.json").read_text(
            encoding="utf-8")
        value = json.loads(text).get("$id")
    except (OSError, ValueError):
        value = None
    return value if isinstance(value, str) and value else _FALLBACK_SCHEMA_ID


def encode_value(payload: Mapping[str, Any], *, revision: int | None = None,
                 kind: str | None = None) -> bytes:
    """Serialise a candidate record as compact UTF-8 JSON.

    Parameters
    ----------
    payload : mapping
        The candidate record (version 2; a version 1 record is sent as it is).
    revision, kind : optional
        The delivery's revision and kind (``new``, ``update``, ``retraction``): they
        replace the record's own, so that the value always says them.

    Returns
    -------
    bytes
        Compact JSON (no NaN or infinity).

    Raises
    ------
    ValueError
        The record holds NaN/inf; TypeError if a value is not JSON-serialisable.
    """
    record = dict(payload)
    if revision is not None:
        record["revision"] = int(revision)
    if kind is not None:
        record["kind"] = kind
    return json.dumps(record, separators=(",", ":"), allow_nan=False,
                      ensure_ascii=False).encode("utf-8")


def message_headers(delivery: Delivery) -> list[tuple[str, str | bytes | None]]:
    """The Kafka headers of one delivery.

    Parameters
    ----------
    delivery : Delivery
        The message to send.

    Returns
    -------
    list of (str, bytes)
        ``mma-kind``, ``mma-coincidence-type`` (``candidate``, ``event-event``; a
        record without ``coincidence_type`` is a candidate), ``mma-revision``,
        ``content-type`` and ``mma-schema``.
    """
    kind = "event-event" if is_event_event(delivery.payload) else "candidate"
    return [
        (HEADER_KIND, delivery.kind.encode("ascii")),
        (HEADER_COINCIDENCE_TYPE, kind.encode("ascii")),
        (HEADER_REVISION, str(int(delivery.revision)).encode("ascii")),
        (HEADER_CONTENT_TYPE, b"application/json"),
        (HEADER_SCHEMA, schema_id().encode("utf-8")),
    ]


def _is_permanent(error: KafkaError) -> bool:
    """Whether retrying the same message cannot help."""
    return error.code() in PERMANENT_ERROR_CODES


class KafkaEmitter:
    """Publish candidates to a Kafka topic with an idempotent producer.

    At-least-once: a message may be published more than once (a re-sent
    delivery after a timeout, a restart); consumers keep the highest
    ``mma-revision`` per key (``coincidence_id``).

    Parameters
    ----------
    config : mapping
        librdkafka configuration (``bootstrap.servers``, security settings...).
        ``enable.idempotence`` and ``acks`` are forced to ``True`` / ``all``;
        ``message.timeout.ms`` defaults to ``timeout_s``. Never logged (it may
        hold a SASL password).
    topic : str
        Output topic (default ``mma.match.candidates``).
    timeout_s : float
        How long :meth:`send` waits for the delivery report [s].

    Attributes
    ----------
    name : str
        ``"kafka"``.
    """

    name = "kafka"

    def __init__(self, config: Mapping[str, Any], *, topic: str = DEFAULT_TOPIC,
                 timeout_s: float = 30.0) -> None:
        if not topic:
            raise ValueError("the Kafka topic must not be empty")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.topic = topic
        self.timeout_s = float(timeout_s)
        conf: dict[str, Any] = dict(config)
        conf["enable.idempotence"] = True
        conf["acks"] = "all"
        conf.setdefault("message.timeout.ms", int(self.timeout_s * 1000))
        conf.setdefault("linger.ms", 0)
        self._config = conf
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._pending: set[str] = set()  # coincidence ids produced, report not yet seen

    @classmethod
    def from_config(cls, config: Config, *, timeout_s: float = 30.0) -> KafkaEmitter:
        """The emitter of the ``[channels.kafka]`` channel.

        Parameters
        ----------
        config : Config
            Topic and ``bootstrap_servers`` from ``[channels.kafka]``, librdkafka
            properties from ``[channels.kafka.client]`` and the SASL password from the
            ``kafka_output_sasl_password`` secret (:func:`mma.kafka_conf.client_config`).
        timeout_s : float
            How long :meth:`send` waits for the delivery report [s].

        Returns
        -------
        KafkaEmitter
            Idempotent producer settings (``enable.idempotence``, ``acks=all``) on top.

        Raises
        ------
        ConfigError
            ``bootstrap_servers`` is empty, or ``[channels.kafka.client]`` holds a
            secret or a property mma sets itself.
        """
        return cls(client_config(config, "output"),
                   topic=str(config.section("channels.kafka")["topic"]), timeout_s=timeout_s)

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(with_logger(self._config))
        return self._producer

    def _drop_producer(self, coincidence_id: str) -> None:
        """Discard a producer after a fatal error (a new one is made on the next send)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            logger.warning("coincidence %s: Kafka producer hit a fatal error; recreating it",
                           coincidence_id)
            with contextlib.suppress(KafkaException):  # best effort
                producer.flush(0)

    def send(self, delivery: Delivery) -> None:
        """Produce one candidate and wait for its delivery report.

        Parameters
        ----------
        delivery : Delivery
            The message; key = ``delivery.coincidence_id``.

        Raises
        ------
        DeliveryError
            Not acknowledged by the broker: retryable (broker down, timeout,
            queue full) or ``permanent=True`` (unserialisable payload, message
            too large, not authorised for the topic).
        """
        cid = delivery.coincidence_id
        try:
            value = encode_value(delivery.payload, revision=delivery.revision,
                                 kind=delivery.kind)
        except (TypeError, ValueError) as exc:
            logger.error("coincidence %s: payload is not valid JSON: %s", cid, exc)
            raise DeliveryError(f"coincidence {cid}: payload is not valid JSON: {exc}",
                                permanent=True) from exc
        result: dict[str, Any] = {}
        done = threading.Event()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            result["error"] = err
            result["offset"] = msg.offset() if err is None else None
            result["partition"] = msg.partition() if err is None else None
            self._pending.discard(cid)
            done.set()

        with self._lock:
            producer = self._get_producer()
            try:
                producer.produce(self.topic, key=cid.encode("utf-8"), value=value,
                                 headers=message_headers(delivery), on_delivery=on_delivery)
                self._pending.add(cid)
            except BufferError as exc:
                producer.poll(0)
                logger.warning("coincidence %s: Kafka producer queue full", cid)
                raise DeliveryError(f"coincidence {cid}: Kafka producer queue full",
                                    retry_after=1.0) from exc
            except KafkaException as exc:
                error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                permanent = error is not None and _is_permanent(error)
                logger.error("coincidence %s: Kafka produce failed: %s", cid, exc)
                if error is not None and error.fatal():
                    self._drop_producer(cid)
                raise DeliveryError(f"coincidence {cid}: Kafka produce failed: {exc}",
                                    permanent=permanent) from exc
            deadline = time.monotonic() + self.timeout_s + 2.0
            while not done.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                producer.poll(min(0.2, remaining))
        if not done.is_set():
            logger.warning("coincidence %s: no Kafka delivery report within %.0f s",
                           cid, self.timeout_s)
            raise DeliveryError(f"coincidence {cid}: no Kafka delivery report within "
                                f"{self.timeout_s:.0f} s")
        error = result["error"]
        if error is not None:
            permanent = _is_permanent(error)
            logger.warning("coincidence %s: Kafka delivery failed (%s, %s): %s", cid,
                           error.name(), "permanent" if permanent else "retryable", error.str())
            if error.fatal():
                with self._lock:
                    self._drop_producer(cid)
            raise DeliveryError(f"coincidence {cid}: Kafka delivery failed: {error.name()}: "
                                f"{error.str()}", permanent=permanent)
        logger.info("coincidence %s: published to Kafka %s[%s]@%s (revision %d, %s)", cid,
                    self.topic, result["partition"], result["offset"], delivery.revision,
                    delivery.kind)

    def close(self) -> None:
        """Flush outstanding messages (up to ``timeout_s``) and drop the producer."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is None:
            return
        left = producer.flush(self.timeout_s)
        if left:
            logger.warning("coincidence %s: Kafka message(s) undelivered at close (topic %s)",
                           ", ".join(sorted(self._pending)) or "?", self.topic)
        self._pending.clear()
