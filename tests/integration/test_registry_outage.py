"""A schema registry outage is not a record error: the aggregator's batch decoder retries the batch
(RetryBatch -> abort, rewind, back off) while the registry cannot be reached, and decodes the very
same bytes exactly once it answers again -- against a real registry process, stopped and started."""

from __future__ import annotations

import pytest

from kstream_lab.kafka.transactional import RetryBatch
from kstream_lab.pipeline_spec import TopicSpec
from kstream_lab.registry import LocalRegistry
from kstream_lab.schemas.serde import value_serializer
from kstream_lab.workers.codec import column_decoder
from tests.conftest import free_port


def test_the_batch_decoder_retries_during_an_outage_and_decodes_after(kafka_settings, tmp_path):
    spec = TopicSpec(name="outage-orders", partitions=1, value_format="avro", schema="EnrichedOrder")
    serialize = value_serializer(kafka_settings, spec)  # registered through the session's registry
    orders = [{"order_id": f"o{i}", "customer_id": "c1", "total_cents": 1000 + i, "currency": "EUR",
               "item_count": 1, "timestamp": 1_700_000_000_000 + i, "loyalty_tier": "gold"} for i in range(3)]
    values = [serialize(o, spec.name) for o in orders]

    port = free_port()  # a second registry over the same _schemas topic, not running yet
    settings = kafka_settings.model_copy(update={"registry_port": port, "schema_registry_url": None,
                                                 "data_dir": tmp_path})
    decode = column_decoder(settings, spec, ints=["timestamp", "total_cents"], others=["loyalty_tier"])
    with pytest.raises(RetryBatch, match="registry unavailable"):
        decode(values, spec.name, [0, 0, 0], [10, 11, 12])

    registry = LocalRegistry(settings)
    registry.up(timeout=60)
    try:
        cols = decode(values, spec.name, [0, 0, 0], [10, 11, 12])
    finally:
        registry.down()
    assert cols.errors == {} and cols.rows == [0, 1, 2]
    assert cols.columns == {"timestamp": [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002],
                            "total_cents": [1000, 1001, 1002], "loyalty_tier": ["gold", "gold", "gold"]}
