"""KafkaEmitter against the harness's real Kafka broker."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from confluent_kafka import Consumer, Message

from mma.emitters import Delivery, MessageKind
from mma.emitters.kafka import KafkaEmitter, encode_value, message_headers, schema_id
from mma.errors import DeliveryError
from tests.services.kafka import ExternalKafka, KafkaBroker

EXAMPLE = Path(__file__).resolve().parents[1] / "mma" / "schema" / "coincidence.example.json"
SCHEMA = json.loads((EXAMPLE.parent / "coincidence.schema.json").read_text("utf-8"))
V2_ONLY = ("schema_version", "revision", "kind", "event_class", "significance",
           "position_scatter_arcsec", "detections", "n_detections", "n_vetoed_detections",
           "first_detection", "first_detection_after_t0", "last_detection",
           "n_prior_detections", "history_source", "peak_magnitude", "peak_band",
           "rise_rate_mag_per_day", "fade_rate_mag_per_day", "changes")


def _payload() -> dict[str, Any]:
    with EXAMPLE.open(encoding="utf-8") as handle:
        payload: dict[str, Any] = json.load(handle)
    return payload


def _delivery(payload: dict[str, Any], revision: int, kind: MessageKind,
              outbox_id: int = 1) -> Delivery:
    return Delivery(outbox_id=outbox_id, channel="kafka",
                    coincidence_id=payload["coincidence_id"], revision=revision, kind=kind,
                    payload=payload,
                    event={"properties": {"FAR": 1e-10}, "area90_deg2": 130.0, "test": False})


def _consume(config: dict[str, Any], topic: str, count: int,
             timeout: float = 30.0) -> list[Message]:
    consumer = Consumer({**config, "group.id": f"mma-test-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            messages.append(msg)
    finally:
        consumer.close()
    return messages


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _validate(record: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()
                                    ).validate(record)


def test_schema_id_is_the_schema_dollar_id() -> None:
    assert schema_id() == SCHEMA["$id"]
    assert schema_id().endswith("/v2.json")


def test_example_is_a_version_2_record() -> None:
    payload = _payload()
    _validate(payload)
    assert payload["schema_version"] == 2 and payload["kind"] == "new"
    assert payload["n_detections"] == len(payload["detections"]) == 3
    assert {d["band"] for d in payload["detections"]} == {"g", "r"}
    assert "alert_id" not in payload and "alert_time" not in payload
    for bad in ({**payload, "changes": ["rank"]}, {**payload, "kind": "sent"},
                {**payload, "detections": [{"time": "2026-11-20T23:12:45Z"}]}):
        with pytest.raises(jsonschema.ValidationError):
            _validate(bad)


def test_version_1_record_is_sent_as_it_is() -> None:
    """A record migrated from a version 1 database (one alert) still encodes."""
    payload = {k: v for k, v in _payload().items() if k not in V2_ONLY}
    payload.update(alert_id="3100000000000000609", alert_time="2026-11-20T23:12:45.123Z")
    assert json.loads(encode_value(payload)) == payload
    headers = dict(message_headers(_delivery(payload, 2, "update")))
    assert headers["mma-kind"] == b"update" and headers["mma-revision"] == b"2"


def test_coincidence_type_header() -> None:
    """``mma-coincidence-type`` says ``event-event`` for an event x event record (GW170817 x
    GRB 170817A), ``candidate`` for a candidate, with or without the key; the value is the
    record as it is."""
    from tests.test_joint_message import gw170817_grb

    pair = gw170817_grb()
    headers = dict(message_headers(_delivery(pair, 1, "new")))
    assert headers["mma-coincidence-type"] == b"event-event"
    assert json.loads(encode_value(pair, revision=1, kind="new")) == pair
    candidate = _payload()
    assert dict(message_headers(_delivery(candidate, 1, "new")))[
        "mma-coincidence-type"] == b"candidate"
    candidate["coincidence_type"] = "candidate"
    assert dict(message_headers(_delivery(candidate, 1, "new")))[
        "mma-coincidence-type"] == b"candidate"


def test_value_carries_revision_and_kind_of_the_delivery() -> None:
    """The JSON value, not only the headers, says the revision and kind: a stale record
    (the outbox's copy of revision 1) sent as revision 4, a retraction, says 4 and
    ``retraction`` and still validates; without them the record keeps its own."""
    payload = _payload()
    value = json.loads(encode_value(payload, revision=4, kind="retraction"))
    assert (value["revision"], value["kind"]) == (4, "retraction")
    _validate(value)
    assert json.loads(encode_value(payload))["revision"] == payload["revision"] == 1
    bare = {k: v for k, v in payload.items() if k not in ("revision", "kind")}
    with pytest.raises(jsonschema.ValidationError):
        _validate(bare)
    _validate(json.loads(encode_value(bare, revision=2, kind="update")))


def test_nan_payload_is_a_permanent_error() -> None:
    payload = _payload()
    payload["p_chance"] = float("nan")
    with pytest.raises(ValueError):
        encode_value(payload)
    emitter = KafkaEmitter({"bootstrap.servers": f"127.0.0.1:{_closed_port()}"})
    try:
        with pytest.raises(DeliveryError) as excinfo:
            emitter.send(_delivery(payload, 1, "new"))
        assert excinfo.value.permanent
    finally:
        emitter.close()


@pytest.mark.kafka
def test_new_update_retraction_round_trip(kafka_broker: KafkaBroker | ExternalKafka,
                                          kafka_topic: str) -> None:
    """Three revisions of one coincidence arrive in order with key, JSON value and headers;
    the value says the delivery's revision and kind even when the stored record does not
    (the retraction's record lacks them here) and validates against the schema."""
    payload = _payload()
    updated = {**payload, "revision": 2, "kind": "update", "status": "updated",
               "p_chance": 0.01, "rank": 2, "changes": ["p_chance", "rank"]}
    retracted = {k: v for k, v in payload.items() if k not in ("revision", "kind")}
    retracted.update(status="retracted", flags=["event_retracted"], rank=None,
                     changes=["status", "flags", "rank"])
    sent = [(payload, 1, "new"), (updated, 2, "update"), (retracted, 3, "retraction")]
    emitter = KafkaEmitter(kafka_broker.client_config(), topic=kafka_topic)
    assert emitter.name == "kafka"
    try:
        for outbox_id, (body, revision, kind) in enumerate(sent, start=1):
            emitter.send(_delivery(body, revision, kind, outbox_id))  # type: ignore[arg-type]
    finally:
        emitter.close()

    messages = _consume(kafka_broker.client_config(), kafka_topic, 3)
    assert len(messages) == 3
    for msg, (body, revision, kind) in zip(messages, sent, strict=True):
        assert msg.key() == payload["coincidence_id"].encode("utf-8")
        value = msg.value()
        assert value is not None
        record = json.loads(value)
        assert record == {**body, "revision": revision, "kind": kind}
        _validate(record)  # what a consumer checks
        assert b": " not in value and b", " not in value  # compact
        headers = dict(msg.headers() or [])
        assert headers == {
            "mma-kind": kind.encode(),
            "mma-revision": str(revision).encode(),
            "content-type": b"application/json",
            "mma-schema": schema_id().encode(),
            "mma-coincidence-type": b"candidate",
        }
    assert [m.offset() for m in messages] == [0, 1, 2]


def test_unreachable_broker_raises_retryable_delivery_error() -> None:
    """A broker that is not there: a retryable DeliveryError within the message timeout."""
    emitter = KafkaEmitter({"bootstrap.servers": f"127.0.0.1:{_closed_port()}",
                            "message.timeout.ms": 2000, "socket.connection.setup.timeout.ms": 1000},
                           topic="mma.match.candidates", timeout_s=5)
    payload = _payload()
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryError) as excinfo:
            emitter.send(_delivery(payload, 1, "new"))
    finally:
        emitter.timeout_s = 1
        emitter.close()
    elapsed = time.monotonic() - started
    assert not excinfo.value.permanent
    assert payload["coincidence_id"] in str(excinfo.value)
    assert elapsed < 10, elapsed
