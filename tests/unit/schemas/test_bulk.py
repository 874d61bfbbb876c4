"""The bulk decoders: the Avro container trick must equal fastavro's per-record decode exactly."""

from __future__ import annotations

import io
import json

import fastavro
import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kstream_lab.schemas.avro import StaticSchemas, frame
from kstream_lab.schemas.bulk import container, decode_avro_batch, decode_json_batch, polars_schema
from tests.support.avro import ORDER, encode, orders, with_field

# The polars dtypes of an Order, both decoders' output (the Avro container trick and the JSON path).
ORDER_DTYPES = {
    "order_id": pl.String,
    "customer_id": pl.String,
    "total_cents": pl.Int64,
    "currency": pl.String,
    "item_count": pl.Int32,
    "timestamp": pl.Int64,
}
RICH = {
    "type": "record",
    "name": "Rich",
    "namespace": "test",
    "fields": [
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "d", "type": "double"},
        {"name": "f", "type": "float"},
        {"name": "b", "type": "boolean"},
        {"name": "s", "type": "string"},
        {"name": "raw", "type": "bytes"},
        {"name": "maybe", "type": ["null", "long"]},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {
            "name": "sub",
            "type": {
                "type": "record",
                "name": "Sub",
                "fields": [{"name": "x", "type": "int"}, {"name": "y", "type": ["null", "string"]}],
            },
        },
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
RICH_TEXT = json.dumps(RICH)
I32, I64 = st.integers(-(2**31), 2**31 - 1), st.integers(-(2**63), 2**63 - 1)
rich_records = st.fixed_dictionaries(
    {
        "i": I32,
        "l": I64,
        "d": st.floats(allow_nan=False, width=64),
        "f": st.floats(allow_nan=False, width=32),
        "b": st.booleans(),
        "s": st.text(max_size=20),
        "raw": st.binary(max_size=20),
        "maybe": st.none() | I64,
        "kind": st.sampled_from(["A", "B", "C"]),
        "tags": st.lists(st.text(max_size=5), max_size=4),
        "sub": st.fixed_dictionaries({"x": I32, "y": st.none() | st.text(max_size=8)}),
        "ts": I64,
    }
)


def per_record(values: list[bytes], schema_text: str) -> list[dict]:
    """The baseline: fastavro's schemaless reader, one record at a time (timestamps as plain ints)."""
    schema = json.loads(schema_text)
    for f in schema["fields"]:
        if isinstance(f["type"], dict) and f["type"].get("logicalType"):
            f["type"] = f["type"]["type"]
    parsed = fastavro.parse_schema(schema)
    return [fastavro.schemaless_reader(io.BytesIO(v[5:]), parsed, None) for v in values]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rich_records, min_size=1, max_size=60), st.integers(1, 7))
def test_container_trick_equals_per_record_fastavro(records, chunk):
    values = [encode(RICH_TEXT, r, schema_id=5) for r in records]
    batch = decode_avro_batch(values, StaticSchemas({5: RICH_TEXT}), chunk=chunk)
    assert batch.failures == []
    assert batch.indices.tolist() == list(range(len(records)))
    assert batch.frame.to_dicts() == per_record(values, RICH_TEXT)


def test_orders_decode_with_exact_dtypes_and_integer_timestamps():
    recs = orders(5000)
    batch = decode_avro_batch([encode(ORDER, r, 3) for r in recs], StaticSchemas({3: ORDER}), chunk=1024)
    assert batch.frame.schema == pl.Schema(ORDER_DTYPES)
    assert batch.frame.to_dicts() == recs
    assert batch.frame["total_cents"].sum() == sum(r["total_cents"] for r in recs)


def test_bad_records_are_reported_and_the_rest_decoded_in_order():
    recs = orders(3000)
    values: list[bytes | None] = [encode(ORDER, r, 3) for r in recs]
    bad = {
        7: b'{"json": 1}',
        8: b"\x00\x00\x01",
        9: frame(404, b"\x02ab"),
        10: values[10][:-6],
        11: values[11] + b"\x00\x00",
        2999: None,
    }
    for i, v in bad.items():
        values[i] = v
    batch = decode_avro_batch(values, StaticSchemas({3: ORDER}), chunk=2048)
    reasons = {f.index: f.reason for f in batch.failures}
    assert sorted(reasons) == sorted(bad)
    assert reasons[7].startswith("no magic byte") and reasons[8].startswith("truncated header")
    assert reasons[9].startswith("unknown schema id 404")
    assert reasons[10].startswith("truncated or corrupt Avro body for schema id 3")
    assert reasons[11] == "2 trailing bytes after the Avro body for schema id 3"
    assert {f.index: f.code for f in batch.failures} == {
        7: "not_avro",
        8: "truncated",
        9: "unknown_schema_id",
        10: "truncated",
        11: "trailing_bytes",
        2999: "tombstone",
    }
    assert reasons[2999] == "null value (tombstone) where an Avro record was expected"
    good = [i for i in range(3000) if i not in bad]
    assert batch.indices.tolist() == good
    assert batch.frame.to_dicts() == [recs[i] for i in good]


def test_mixed_schema_versions_keep_input_order_and_resolve_to_a_reader_schema():
    v2 = with_field(ORDER, name="channel", type="string", default="web")
    recs = orders(10)
    values = [encode(ORDER, r, 1) if i % 2 else encode(v2, {**r, "channel": "app"}, 2) for i, r in enumerate(recs)]
    schemas = StaticSchemas({1: ORDER, 2: v2})
    plain = decode_avro_batch(values, schemas)
    assert plain.indices.tolist() == list(range(10))
    assert plain.frame["channel"].to_list() == ["app", None] * 5
    resolved = decode_avro_batch(values, schemas, reader_schema=v2)
    assert resolved.frame.to_dicts() == [{**r, "channel": "app" if i % 2 == 0 else "web"} for i, r in enumerate(recs)]


def test_maps_fall_back_to_fastavro():
    schema = json.dumps(
        {
            "type": "record",
            "name": "M",
            "fields": [{"name": "id", "type": "long"}, {"name": "attrs", "type": {"type": "map", "values": "long"}}],
        }
    )
    values = [encode(schema, {"id": i, "attrs": {"k": i * 2}}, 9) for i in range(3)]
    batch = decode_avro_batch(values, StaticSchemas({9: schema}))
    assert batch.failures == [] and batch.frame["id"].to_list() == [0, 1, 2]
    assert batch.frame["attrs"].to_list() == [{"k": 0}, {"k": 2}, {"k": 4}]


def test_container_is_a_standard_avro_file():
    recs = orders(20)
    bodies = b"".join(encode(ORDER, r)[5:] for r in recs)
    data = container(
        ORDER,
        [
            (12, bodies[: sum(len(encode(ORDER, r)) - 5 for r in recs[:12])]),
            (8, bodies[sum(len(encode(ORDER, r)) - 5 for r in recs[:12]) :]),
        ],
    )
    got = list(fastavro.reader(io.BytesIO(data)))
    assert [{**g, "timestamp": int(g["timestamp"].timestamp() * 1000)} for g in got] == recs


def test_json_batch_with_explicit_schema_and_bad_values():
    recs = orders(2000)
    values: list[bytes | None] = [json.dumps(r).encode() for r in recs]
    bad = {
        3: b"{not json",
        4: b"",
        5: None,
        6: b"\x00\x00\x00\x00\x01\x02",
        7: b'{"total_cents": "abc"}',
        9: b"{not json}",
        1999: b"[1, 2]",
    }
    for i, v in bad.items():
        values[i] = v
    values[8] = json.dumps(recs[8], indent=2).encode()  # raw newlines inside one value are fine
    schema = polars_schema(ORDER)
    assert schema == ORDER_DTYPES
    batch = decode_json_batch(values, schema, chunk=512)
    reasons = {f.index: f.reason for f in batch.failures}
    assert sorted(reasons) == sorted(bad)
    assert reasons[5] == "null value (tombstone)" and reasons[4] == "empty value"
    assert reasons[3] == "not a JSON object: starts with b'{not json'"
    assert reasons[9].startswith("not valid JSON") and reasons[7].startswith("JSON does not match")
    good = [i for i in range(2000) if i not in bad]
    assert batch.indices.tolist() == good
    assert batch.frame.to_dicts() == [recs[i] for i in good]
    assert batch.frame.schema == pl.Schema(schema)
    assert np.array_equal(batch.indices, np.asarray(good))


def test_a_schema_id_that_cannot_resolve_to_the_reader_fails_only_its_records():
    other = json.dumps({"type": "record", "name": "Order", "fields": [{"name": "order_id", "type": "string"}]})
    values = [encode(ORDER, orders(1)[0], 1), encode(other, {"order_id": "x"}, 2)]
    batch = decode_avro_batch(values, StaticSchemas({1: ORDER, 2: other}), reader_schema=ORDER)
    assert batch.indices.tolist() == [0] and batch.frame.to_dicts() == orders(1)
    assert [f.index for f in batch.failures] == [1]
    assert batch.failures[0].reason.startswith("schema id 2 does not resolve to the reader schema: field 'customer_id'")


def test_the_packed_fast_path_reads_records_in_place_and_rejects_misaligned_values():
    """The fast path reads the packed buffer as records between a frame field and a separator field;
    a value with trailing bytes or a cut body shifts every boundary after it, which the separator
    check sees, so the batch goes to the per-record path instead of decoding garbage."""
    from kstream_lab.packed import PackedValues
    from kstream_lab.schemas.bulk import _one_schema_fast_path

    recs = orders(2000)
    values = [encode(ORDER, r, 3) for r in recs]
    registry = StaticSchemas({3: ORDER})
    fast = _one_schema_fast_path(PackedValues.of(values), registry)
    assert fast is not None and fast.frame.to_dicts() == recs and fast.schema_ids == [3]
    for broken in (values[11] + b"\x00\x00", values[11][:-6]):
        assert _one_schema_fast_path(PackedValues.of([*values[:11], broken, *values[12:]]), registry) is None
    assert _one_schema_fast_path(PackedValues.of([*values[:5], None, *values[6:]]), registry) is None


def test_packed_values_give_back_every_value_and_null():
    from kstream_lab.packed import PackedValues

    values = [b"a", b"", None, b"line\nbreak", b"zz"]
    packed = PackedValues.of(values)
    assert packed.data == b"a\n\n\nline\nbreak\nzz\n" and packed.nulls == [2]
    assert packed.starts == [0, 2, 3, 4, 15] and packed.values() == values
    assert packed.take([4, 2, 0]) == [b"zz", None, b"a"]


def test_packed_spread_samples_whole_values_across_the_buffer():
    from kstream_lab.packed import PackedValues

    values = [b"%04d" % i for i in range(1000)]  # 5 bytes each with the separator
    packed = PackedValues.of(values)
    picked = packed.spread(10)
    assert picked == [b"%04d" % i for i in range(0, 1000, 100)]  # whole values, evenly spread, in order
    assert "starts" not in packed.__dict__  # found by byte position, no per-value work
    few = PackedValues.of([b"a", None, b"", b"b"])
    assert few.spread(10) == [b"a", b"b"]  # fewer values than asked: the non-empty ones
    odd = PackedValues.of([b"xy", b"a", b"long-value", b"z"] * 50)
    assert set(odd.spread(16)) <= {b"xy", b"a", b"long-value", b"z"}  # never a fragment of a value


def test_a_batch_without_one_well_framed_value_is_all_failures():
    """Such a batch (one poison record alone) raised ValueError from np.split before: the aggregator
    crashed on it, and again on every retry."""
    batch = decode_avro_batch([b"\x00\x00", None, b"{}"], StaticSchemas({}))
    assert [(f.index, f.code) for f in batch.failures] == [(0, "truncated"), (1, "tombstone"), (2, "not_avro")]
    assert batch.frame.height == 0 and batch.indices.tolist() == []
