"""Batch (column-wise) decoding for the aggregator: bulk Avro, dead letters with coordinates, and a
registry outage that retries the batch instead of dead-lettering good records."""

from __future__ import annotations

import io
import json

import fastavro
import pytest

from kstream_lab.errors import DeserializationError, InvalidRecordError
from kstream_lab.kafka.schema_registry import RegistryError
from kstream_lab.kafka.transactional import RetryBatch
from kstream_lab.schemas.avro import AvroRecordDecoder, StaticSchemas, frame
from kstream_lab.schemas.serde import SerdeContext
from kstream_lab.workers.aggregator import AggregatorProcessor
from kstream_lab.workers.codec import _avro_columns, retrying_outages
from tests.support.aggregator import SPEC, json_columns, order, processor
from tests.support.fakes import Msg, RecordingOutput

SCHEMA = {
    "type": "record",
    "name": "EnrichedOrder",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "total_cents", "type": ["null", "long"]},
        {"name": "loyalty_tier", "type": ["null", "string"]},
    ],
}
PARSED = fastavro.parse_schema(json.loads(json.dumps(SCHEMA)))
SCHEMAS = StaticSchemas({7: json.dumps(SCHEMA)})
INTS, OTHERS = AggregatorProcessor.fields(SPEC)


def avro(rec: dict) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, PARSED, rec)
    return frame(7, body.getvalue())


def test_bulk_avro_columns_and_bad_records_with_coordinates() -> None:
    values = [
        avro(order(1, 1_000, cents=150)),
        b"\x00\x00\x00\x00\x07\xff",
        avro(order(2, 2_000, "silver", 5)),
        avro({**order(3, 3_000), "total_cents": None}),
        b"not avro",
        avro(order(4, 4_000, None, 9)),
    ]
    cols = _avro_columns(SCHEMAS, values, "in", [2] * 6, list(range(40, 46)), INTS, OTHERS)
    assert cols.rows == [0, 2, 5]
    assert cols.columns == {
        "timestamp": [1_000, 2_000, 4_000],
        "total_cents": [150, 5, 9],
        "loyalty_tier": ["gold", "silver", None],
    }
    assert {i: (type(e), e.partition, e.offset) for i, e in cols.errors.items()} == {
        1: (DeserializationError, 2, 41),
        3: (InvalidRecordError, 2, 43),
        4: (DeserializationError, 2, 44),
    }
    assert "total_cents" in cols.errors[3].message


class DownRegistry:
    def writer_schema(self, schema_id: int) -> str:
        raise RegistryError("cannot reach the schema registry", status=0)


def test_unreachable_registry_retries_the_batch_instead_of_dead_lettering() -> None:
    with pytest.raises(RetryBatch, match="registry unavailable"):
        _avro_columns(DownRegistry(), [avro(order(1, 1_000))], "in", [0], [0], INTS, OTHERS)


def test_the_per_record_decoder_retries_an_outage_and_leaves_record_errors_to_the_dlq() -> None:
    decode = retrying_outages(AvroRecordDecoder(DownRegistry()))
    with pytest.raises(RetryBatch, match="^schema registry unavailable for writer schema 7: cannot reach"):
        decode(avro(order(1, 1_000)), SerdeContext("in", 0, 5))
    with pytest.raises(DeserializationError, match=r"^no magic byte.* at in\[0\]@6$"):
        decode(b"not avro", SerdeContext("in", 0, 6))
    assert retrying_outages(AvroRecordDecoder(SCHEMAS))(avro(order(1, 1_000)), SerdeContext("in", 0, 7)) == {
        "order_id": "o1",
        "timestamp": 1_000,
        "total_cents": 100,
        "loyalty_tier": "gold",
    }


def test_avro_and_json_batches_aggregate_identically() -> None:
    times = [700 * i + (i % 4) * 900 - (15_000 if i % 9 == 8 else 0) for i in range(80)]  # every 9th is late
    records = [order(i, ts, ("gold", "silver", None)[i % 3], 10 + i) for i, ts in enumerate(times)]

    def run(decode, encode_value):
        proc = processor(decode, partitions=(0, 1))
        out = RecordingOutput()
        for start in range(0, 80, 16):  # two partitions interleaved within each batch
            proc.process(
                [Msg("in", i % 2, i // 2, None, encode_value(records[i])) for i in range(start, start + 16)], out
            )
        return [(s.partition, s.key, json.loads(s.value)) for s in out.to("agg")], len(out.to("late"))

    via_avro = run(lambda v, t, p, o: _avro_columns(SCHEMAS, v, t, p, o, INTS, OTHERS), avro)
    via_json = run(json_columns, lambda r: json.dumps(r).encode())
    assert via_avro == via_json
    assert len([r for r in via_avro[0] if r[2]["final"]]) >= 10 and via_avro[1] > 0
