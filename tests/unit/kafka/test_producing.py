"""The one builder of produce() keyword arguments, used by the batch, acking and transactional producers."""

from __future__ import annotations

from kstream_lab.kafka.acking import AckingProducer
from kstream_lab.kafka.producing import BatchProducer, produce_kwargs
from kstream_lab.kafka.transactional import Output


def test_a_timestamp_and_a_partition_of_0_are_passed_through() -> None:
    assert produce_kwargs("t", b"v", b"k", 0, 0, [("h", b"1")]) == {
        "topic": "t",
        "value": b"v",
        "key": b"k",
        "partition": 0,
        "timestamp": 0,
        "headers": [("h", b"1")],
    }


def test_unset_fields_are_left_out() -> None:
    assert produce_kwargs("t", None) == {"topic": "t", "value": None, "key": None}
    assert produce_kwargs("t", b"v", headers=[]) == {"topic": "t", "value": b"v", "key": None}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def produce(self, **kwargs) -> None:
        self.calls.append(kwargs)

    def poll(self, timeout: float) -> int:
        return 0


def test_every_producer_passes_a_timestamp_of_0() -> None:
    batch = BatchProducer.__new__(BatchProducer)  # no client: the recorder stands in for librdkafka
    batch._producer = Recorder()
    batch.produce("a", key=b"k", value=b"v", partition=0, timestamp=0)
    acking = AckingProducer.__new__(AckingProducer)
    acking._producer = Recorder()
    acking.produce("b", key=None, value=b"v", timestamp=0)
    out = Output(Recorder(), classify=lambda what, err: RuntimeError(what))
    out.send("c", key=None, value=b"v", partition=2, timestamp=0)
    calls = [*batch._producer.calls, *acking._producer.calls, *out._producer.calls]
    assert [(c["topic"], c.get("partition"), c["timestamp"]) for c in calls] == [
        ("a", 0, 0),
        ("b", None, 0),
        ("c", 2, 0),
    ]
    assert callable(calls[0]["on_delivery"]) and callable(calls[1]["on_delivery"]) and "on_delivery" not in calls[2]


def test_kafka_cause_finds_the_fatal_error_behind_a_system_error():
    """confluent-kafka turns a call made with a fatal error pending into SystemError; its cause is
    the error BatchProducer.flush reports (as a denial when it is one)."""
    from confluent_kafka import KafkaError, KafkaException

    from kstream_lab.kafka.producing import kafka_cause

    fatal = KafkaException(KafkaError(KafkaError.CLUSTER_AUTHORIZATION_FAILED, "no producer id", fatal=True))
    try:
        try:
            raise fatal
        except KafkaException as exc:
            raise SystemError("<method 'str'> returned a result with an exception set") from exc
    except SystemError as exc:
        assert kafka_cause(exc) is fatal
    assert kafka_cause(SystemError("nothing behind it")) is None


def test_a_lost_fatal_error_is_named_from_the_topics_authorized_operations(monkeypatch) -> None:
    """When confluent-kafka loses the fatal denial's code, the broker's answer of what the principal may
    do to the topic still gives the exact denial; with WRITE granted (or no answer) it stays vague."""
    from pydantic import SecretStr

    from kstream_lab.errors import AuthorizationError, BrokerError
    from kstream_lab.kafka import producing
    from kstream_lab.settings import Settings

    settings = Settings(bootstrap_servers="b1:9093", sasl_username="analyst", sasl_password=SecretStr("pw"))
    batch = BatchProducer.__new__(BatchProducer)
    batch._settings, batch._topic = settings, "orders_raw"
    answers = {"orders_raw": {"DESCRIBE", "READ"}}
    monkeypatch.setattr(producing, "authorized_operations", lambda _s, topic: answers.get(topic))
    err = batch._lost_fatal()
    assert isinstance(err, AuthorizationError)
    assert err.message == (
        "User:analyst may not WRITE topic orders_raw on b1:9093 (its ACLs grant DESCRIBE, READ, not WRITE)"
    )
    answers["orders_raw"] = {"DESCRIBE", "WRITE"}
    assert type(batch._lost_fatal()) is BrokerError
    batch._topic = "unknown"
    assert "could not produce to unknown on b1:9093" in str(batch._lost_fatal())
