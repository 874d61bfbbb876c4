"""Protobuf and JSON Schema against the real broker and the local registry.

Topics written by confluent-kafka's own ProtobufSerializer and JSONSerializer (through
kstream_lab.schemas.formats) replay with ``value_format="auto"`` into exactly the frame of their
Avro twin; schema references (a Protobuf import, a JSON ``$ref`` to another subject) register and
decode; a poison record of each kind goes to the DLQ with its ``error.reason`` and original bytes.
"""

from __future__ import annotations

import json
from collections import Counter

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from kstream_lab.kafka.producing import BatchProducer
from kstream_lab.kafka.schema_registry import SchemaRegistry
from kstream_lab.pipeline_spec import TopicSpec
from kstream_lab.replay.reader import replay
from kstream_lab.schemas.avro import frame
from kstream_lab.schemas.formats import json_schema_serializer, protobuf_serializer
from kstream_lab.schemas.serde import SerdeContext, value_serializer
from kstream_lab.workers.codec import column_decoder
from kstream_lab.workers.dlq import DeadLetter, send_to_dlq
from tests.support.avro import orders
from tests.support.formats import (
    CUSTOMER_JSON,
    ORDER_JSON_SCHEMA,
    ORDER_WITH_CUSTOMER_JSON,
    basket_file,
    classes,
    money_file,
    order_file,
)
from tests.support.paths import ROOT

N = 600
ORDER_CLS = classes(order_file())["Order"]
BASKET = classes(money_file(), basket_file())


def write(settings, topic: str, values: list[bytes | None], keys: list[bytes]) -> None:
    with BatchProducer(settings) as producer:
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            producer.produce(topic, key=key, value=value, partition=i % 3, timestamp=1_700_000_000_000 + i)
        producer.flush()


def values_only(df: pl.DataFrame) -> pl.DataFrame:
    return df.drop("topic").sort("partition", "offset")


@pytest.fixture
def twins(kafka_settings, topic_factory):
    """The same orders as Avro, Protobuf and JSON Schema topics (same keys, partitions, timestamps)."""
    settings = kafka_settings.model_copy(update={"pipeline_file": ROOT / "pipelines/orders.yaml"})
    records = orders(N)
    keys = [r["order_id"].encode() for r in records]
    topics = {fmt: topic_factory(f"twin-{fmt}") for fmt in ("avro", "protobuf", "json")}
    avro = value_serializer(settings, TopicSpec(name=topics["avro"], partitions=3, value_format="avro", schema="Order"))
    proto = protobuf_serializer(settings, ORDER_CLS)
    js = json_schema_serializer(settings, ORDER_JSON_SCHEMA)
    write(settings, topics["avro"], [avro(r, SerdeContext(topics["avro"])) for r in records], keys)
    write(
        settings, topics["protobuf"], [proto(ORDER_CLS(**r), SerdeContext(topics["protobuf"])) for r in records], keys
    )
    write(settings, topics["json"], [js(r, SerdeContext(topics["json"])) for r in records], keys)
    return settings, topics, records


def test_protobuf_and_json_schema_topics_replay_into_the_frame_of_their_avro_twin(twins):
    settings, topics, records = twins
    registry = SchemaRegistry(settings)
    assert (
        registry.version(f"{topics['protobuf']}-value").schema_id
        != registry.version(f"{topics['json']}-value").schema_id
    )
    avro = values_only(replay(topics["avro"], settings=settings))
    assert avro.height == N and avro["total_cents"].sum() == sum(r["total_cents"] for r in records)
    for fmt in ("protobuf", "json"):
        got = values_only(replay(topics[fmt], settings=settings))  # value_format="auto": from the registry
        assert_frame_equal(got, avro)
    # confluent-kafka's own deserializers read what replay read
    from tests.integration.schemas.test_serde import consume_all

    msgs = consume_all(settings, topics["protobuf"])
    decoded = registry.protobuf_deserializer(ORDER_CLS)(msgs[0].value(), topics["protobuf"])
    assert decoded == ORDER_CLS(**next(r for r in records if r["order_id"].encode() == msgs[0].key()))
    msgs = consume_all(settings, topics["json"])
    assert registry.json_deserializer()(msgs[0].value(), topics["json"]) == next(
        r for r in records if r["order_id"].encode() == msgs[0].key()
    )


def test_a_value_that_breaks_the_json_schema_is_refused_at_produce_time(kafka_settings, topic_factory):
    topic = topic_factory("json-refused")
    js = json_schema_serializer(kafka_settings, ORDER_JSON_SCHEMA)
    bad = {**orders(1)[0], "total_cents": "12.50"}
    with pytest.raises(Exception, match=r"does not match its JSON schema: '12.50' is not of type 'integer'"):
        js(bad, SerdeContext(topic))


def test_references_a_protobuf_import_and_a_json_ref_register_and_replay(kafka_settings, topic_factory):
    settings = kafka_settings
    registry = SchemaRegistry(settings)
    basket_topic, order_topic = topic_factory("proto-refs"), topic_factory("json-refs")
    ser = protobuf_serializer(settings, BASKET["Basket"])
    money = BASKET["Money"](cents=250, currency="EUR")
    baskets = [BASKET["Basket"](id="b1", total=money, tier=1, tags=["x"], counts=[3]), BASKET["Basket"](id="b2")]
    write(settings, basket_topic, [ser(b, SerdeContext(basket_topic)) for b in baskets], [b"1", b"2"])
    refs = registry.schema(registry.version(f"{basket_topic}-value").schema_id).references
    assert refs == (("money.proto", "money.proto", 1),)  # the import, registered under its file name
    got = replay(basket_topic, settings=settings).sort("partition", "offset")
    assert got.select("id", "total", "tier", "tags", "counts").to_dicts() == [
        {"id": "b1", "total": {"cents": 250, "currency": "EUR"}, "tier": "SILVER", "tags": ["x"], "counts": [3]},
        {"id": "b2", "total": None, "tier": "BRONZE", "tags": [], "counts": []},
    ]

    customer = registry.register("kstream-customer", CUSTOMER_JSON, "JSON")
    ref = (("http://kstreamlab.dev/customer.schema.json", "kstream-customer", customer.version),)
    js = json_schema_serializer(settings, ORDER_WITH_CUSTOMER_JSON, references=ref)
    rows = [{"id": 1, "customer": {"name": "Ada", "id": 7}}, {"id": 2, "customer": {"name": "Bo", "id": 8}}]
    write(settings, order_topic, [js(r, SerdeContext(order_topic)) for r in rows], [b"1", b"2"])
    with pytest.raises(Exception, match="'id' is a required property"):  # validated through the $ref
        js({"id": 3, "customer": {"name": "Cy"}}, SerdeContext(order_topic))
    got = replay(order_topic, settings=settings).sort("partition", "offset")
    assert got.select("id", "customer").to_dicts() == rows
    assert got.schema["customer"] == pl.Struct({"name": pl.String, "id": pl.Int64})


class _Out:
    """send_to_dlq's output, straight to a producer (the workers give it their transactional Output)."""

    def __init__(self, producer: BatchProducer) -> None:
        self.producer = producer

    def send(self, topic: str, *, key, value, partition, headers) -> None:
        self.producer.produce(topic, key=key, value=value, partition=partition, headers=headers)


POISON = {
    "protobuf": [
        (b'{"order_id": "x"}', "not_protobuf"),
        (frame(987_654, b"\x00\x0a\x01a"), "unknown_schema_id"),
        (b"\x00\x00\x00", "truncated"),
        (b"\x00\x00\x00\x00\x00\x02\x0e", "bad_message_index"),  # id patched below
        (b"\x00\x00\x00\x00\x00\x00\x07", "corrupt_body"),  # id patched below
        (None, "tombstone"),
    ],
    "json": [
        (b"\x01not framed", "not_json_schema"),
        (frame(987_654, b"{}"), "unknown_schema_id"),
        (b"\x00\x00\x00\x00\x00{not json", "not_json"),  # id patched below
        (b"\x00\x00\x00\x00\x00" + json.dumps({"order_id": "o"}).encode(), "schema_violation"),  # id patched below
        (b"", "empty_value"),
    ],
}


@pytest.mark.parametrize("fmt", ["protobuf", "json"])
def test_poison_records_of_each_format_go_to_the_dlq_with_their_reason_and_bytes(twins, topic_factory, fmt):
    settings, topics, records = twins
    registry = SchemaRegistry(settings)
    schema_id = registry.version(f"{topics[fmt]}-value").schema_id
    poison = [
        (v if v is None or len(v) < 5 or v[1:5] != b"\x00\x00\x00\x00" else frame(schema_id, v[5:]), reason)
        for v, reason in POISON[fmt]
    ]
    write(settings, topics[fmt], [v for v, _ in poison], [f"p{i}".encode() for i in range(len(poison))])
    # replay skips them and still equals the twin
    assert_frame_equal(
        values_only(replay(topics[fmt], settings=settings)), values_only(replay(topics["avro"], settings=settings))
    )

    # the workers' per-record decoder names each one's reason; send_to_dlq keeps the bytes
    from tests.integration.schemas.test_serde import consume_all

    spec = TopicSpec(name=topics[fmt], partitions=3, value_format="json_schema" if fmt == "json" else "protobuf")
    decode = column_decoder(settings, spec, ints=["total_cents", "timestamp"], others=["order_id"])
    msgs = consume_all(settings, topics[fmt])
    cols = decode([m.value() for m in msgs], topics[fmt], [m.partition() for m in msgs], [m.offset() for m in msgs])
    assert len(cols.rows) == N and sorted(cols.columns["order_id"]) == sorted(r["order_id"] for r in records)
    dlq = topic_factory(f"dlq-{fmt}")
    with BatchProducer(settings) as producer:
        for i, exc in cols.errors.items():
            send_to_dlq(_Out(producer), dlq, msgs[i], exc)
        producer.flush()
    letters = [DeadLetter.from_record(m.key(), m.value(), m.headers()) for m in consume_all(settings, dlq)]
    assert Counter((d.key, d.value, d.error_reason) for d in letters) == Counter(
        (f"p{i}".encode(), v, reason) for i, (v, reason) in enumerate(poison)
    )
