"""Avro serde against the real broker and the local registry: generated orders round-trip, bad bytes
become DeserializationErrors with their coordinates, and the bulk decoder agrees with the per-record one."""

from __future__ import annotations

import pytest

from kstream_lab.errors import DeserializationError, SerializationError
from kstream_lab.generator.orders import OrderGenerator, recent_start_ms
from kstream_lab.generator.produce import produce_orders
from kstream_lab.kafka.admin import watermarks
from kstream_lab.kafka.clients import make_consumer
from kstream_lab.kafka.schema_registry import SchemaRegistry
from kstream_lab.pipeline_spec import TopicSpec, load_pipeline
from kstream_lab.schemas.bulk import decode_avro_batch
from kstream_lab.schemas.catalog import load_schemas
from kstream_lab.schemas.serde import SerdeContext, value_decoder, value_serializer
from tests.support.avro import SAMPLE_ORDER
from tests.support.paths import ROOT

START_MS = recent_start_ms()  # recent event times, as a live pipeline has

WINDOW = load_pipeline(ROOT / "pipelines/orders.yaml").aggregation().window


def consume_all(settings, topic: str) -> list:
    """Every record of ``topic`` up to its current end, in partition/offset order."""
    from confluent_kafka import TopicPartition

    ends = {p.partition: p.high for p in watermarks(settings, topic)}
    consumer = make_consumer(settings, f"test-{topic}")
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    got, want = [], sum(ends.values())
    try:
        while len(got) < want:
            msg = consumer.poll(10)
            assert msg is not None, f"stalled after {len(got)} of {want}"
            assert msg.error() is None
            got.append(msg)
    finally:
        consumer.close()
    return sorted(got, key=lambda m: (m.partition(), m.offset()))


@pytest.fixture
def avro_orders_topic(kafka_settings, topic_factory):
    name = topic_factory("avro-orders", partitions=3)
    return TopicSpec(name=name, partitions=3, value_format="avro", schema="Order")


def test_generated_orders_round_trip_through_avro(kafka_settings, avro_orders_topic):
    settings = kafka_settings.model_copy(update={"pipeline_file": ROOT / "pipelines/orders.yaml"})
    spec = avro_orders_topic
    summary = produce_orders(
        settings,
        spec,
        value_serializer(settings, spec),
        WINDOW,
        count=1500,
        seed=11,
        start_ms=START_MS,
        poison_fraction=0.02,
        progress=False,
    )
    expected = {
        g.key: g
        for g in OrderGenerator(
            seed=11, start_ms=START_MS, partitions=3, window=WINDOW, poison_fraction=0.02, interval_ms=20.0
        ).take(1500)
    }
    registry = SchemaRegistry(settings)
    latest = registry.version(f"{spec.name}-value")
    assert (latest.version, latest.schema) == (1, load_schemas(ROOT / "pipelines/schemas")["Order"].text)

    messages = consume_all(settings, spec.name)
    assert len(messages) == 1500
    decode = value_decoder(settings, spec)
    decoded, errors = {}, []
    for m in messages:
        try:
            decoded[m.key().decode()] = decode(m.value(), SerdeContext(m.topic(), m.partition(), m.offset()))
        except DeserializationError as exc:
            errors.append(exc)
            assert (exc.topic, exc.partition, exc.offset) == (spec.name, m.partition(), m.offset())
    assert len(errors) == summary.kinds["poison"] == sum(g.kind == "poison" for g in expected.values())
    assert decoded == {k: g.value for k, g in expected.items() if g.value is not None}
    assert {e.message.split(":")[0].split(" ")[0] for e in errors} <= {"no", "unknown", "truncated"}

    batch = decode_avro_batch([m.value() for m in messages], registry)
    assert len(batch.failures) == len(errors)
    assert [messages[i].key().decode() for i in batch.indices] == [
        m.key().decode() for m in messages if m.key().decode() in decoded
    ]
    assert batch.frame.to_dicts() == [decoded[messages[i].key().decode()] for i in batch.indices]
    assert batch.frame["total_cents"].sum() == sum(v["total_cents"] for v in decoded.values())


def test_a_value_that_breaks_the_schema_is_refused_naming_the_field(kafka_settings, avro_orders_topic):
    settings = kafka_settings.model_copy(update={"pipeline_file": ROOT / "pipelines/orders.yaml"})
    serialize = value_serializer(settings, avro_orders_topic)
    order = SAMPLE_ORDER
    assert serialize(order, SerdeContext(avro_orders_topic.name))[:1] == b"\x00"
    with pytest.raises(SerializationError, match="field 'total_cents': 'abc' is not a valid \"long\"") as info:
        serialize({**order, "total_cents": "abc"}, SerdeContext(avro_orders_topic.name))
    assert info.value.topic == avro_orders_topic.name
    with pytest.raises(SerializationError, match="field 'item_count'"):
        serialize({k: v for k, v in order.items() if k != "item_count"}, SerdeContext(avro_orders_topic.name))
