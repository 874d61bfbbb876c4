"""Decoding 1M Confluent-framed Protobuf and JSON Schema orders: bulk vs the per-record way.

Values are the generator's orders (kstream_lab.generator) as a Protobuf ``Order`` (the Avro Order's
fields, message index 0) and as JSON Schema values (compact JSON), each behind the 5-byte Confluent
header, packed as replay hands them to the decoders (``kstream_lab.packed``). Each method turns them
into one Polars frame:
- ``protobuf_per_record``: ConfluentRecordDecoder per value (parse, dict) -> DataFrame (the baseline);
- ``protobuf_parse_only_per_record``: ``Order.FromString`` per value, no dict, no frame (a floor for
  any per-record way);
- ``protobuf_bulk``: kstream_lab.schemas.bulk_formats.decode_protobuf_batch (one wrapper-message
  parse per 64 K values, columns field by field);
- ``json_schema_per_record``: ConfluentRecordDecoder per value (json.loads + full jsonschema
  validation) -> DataFrame (the baseline);
- ``json_schema_loads_per_record``: json.loads per value, no validation -> DataFrame;
- ``json_schema_bulk``: decode_json_schema_batch (headers blanked, one read_ndjson, column checks).
Median of KSTREAM_BENCH_REPEAT runs (default 3); size with KSTREAM_BENCH_RECORDS (default 1,000,000).
Writes bench/results/formats.json.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import time
from pathlib import Path

import polars as pl
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from kstream_lab.aggregations.spec import WindowSpec
from kstream_lab.generator import OrderGenerator
from kstream_lab.kafka.schema_registry import RegisteredSchema
from kstream_lab.packed import PackedValues
from kstream_lab.schemas.avro import frame
from kstream_lab.schemas.bulk_formats import decode_json_schema_batch, decode_protobuf_batch
from kstream_lab.schemas.formats import ConfluentRecordDecoder, StaticRegistry

ROOT = Path(__file__).resolve().parents[1]
RECORDS = int(os.environ.get("KSTREAM_BENCH_RECORDS", "1000000"))
REPEAT = int(os.environ.get("KSTREAM_BENCH_REPEAT", "3"))
F = descriptor_pb2.FieldDescriptorProto
FIELDS = [
    ("order_id", F.TYPE_STRING, "string"),
    ("customer_id", F.TYPE_STRING, "string"),
    ("total_cents", F.TYPE_INT64, "integer"),
    ("currency", F.TYPE_STRING, "string"),
    ("item_count", F.TYPE_INT32, "integer"),
    ("timestamp", F.TYPE_INT64, "integer"),
]


def order_file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name="order.proto", package="dev.kstreamlab.orders", syntax="proto3")
    msg = fdp.message_type.add(name="Order")
    for number, (name, kind, _) in enumerate(FIELDS, start=1):
        msg.field.add(name=name, number=number, type=kind, label=F.LABEL_OPTIONAL)
    return fdp


JSON_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {
            name: {"type": js, **({"connect.type": "int32"} if kind == F.TYPE_INT32 else {})}
            for name, kind, js in FIELDS
        },
        "required": [name for name, _, _ in FIELDS],
    }
)


def median_seconds(fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    fdp = order_file()
    pool = descriptor_pool.DescriptorPool()
    order_cls = message_factory.GetMessageClass(pool.Add(fdp).message_types_by_name["Order"])
    registry = StaticRegistry(
        {
            1: RegisteredSchema("PROTOBUF", base64.b64encode(fdp.SerializeToString()).decode()),
            2: RegisteredSchema("JSON", JSON_SCHEMA),
        }
    )
    gen = OrderGenerator(seed=1, start_ms=1_700_000_000_000, partitions=6, window=WindowSpec(size="60s"))
    proto, js = [], []
    for g in gen.take(RECORDS):
        proto.append(frame(1, b"\x00" + order_cls(**g.value).SerializeToString()))
        js.append(frame(2, json.dumps(g.value, separators=(",", ":")).encode()))
    proto_packed, js_packed = PackedValues.of(proto), PackedValues.of(js)

    def per_record(values: list[bytes], fmt: str) -> pl.DataFrame:
        decode = ConfluentRecordDecoder(registry, fmt)
        return pl.DataFrame([decode(v) for v in values])

    def loads_per_record() -> pl.DataFrame:
        return pl.DataFrame([json.loads(v[5:]) for v in js])

    def parse_only() -> list:
        parse = order_cls.FromString
        return [parse(v[6:]) for v in proto]

    methods = {
        "protobuf_per_record": lambda: per_record(proto, "protobuf"),
        "protobuf_parse_only_per_record": parse_only,
        "protobuf_bulk": lambda: decode_protobuf_batch(proto_packed, registry).frame,
        "json_schema_per_record": lambda: per_record(js, "json_schema"),
        "json_schema_loads_per_record": loads_per_record,
        "json_schema_bulk": lambda: decode_json_schema_batch(js_packed, registry).frame,
    }
    results, rows, frames = {}, {}, {}
    for name, fn in methods.items():
        seconds, out = median_seconds(fn)
        rows[name] = len(out)  # type: ignore[arg-type]
        if isinstance(out, pl.DataFrame):
            frames[name] = out
        results[name] = {"seconds_median": round(seconds, 4), "records_per_s": round(RECORDS / seconds)}
        print(f"{name:<32} {seconds:7.3f} s  {RECORDS / seconds:>12,.0f} rec/s", flush=True)
    assert set(rows.values()) == {RECORDS}, rows
    assert frames["protobuf_bulk"].equals(frames["json_schema_bulk"]), "the two bulk frames differ"
    assert frames["protobuf_bulk"].equals(frames["protobuf_per_record"].cast(frames["protobuf_bulk"].schema))
    report = {
        "records": RECORDS,
        "repeat": REPEAT,
        "protobuf_value_bytes_mean": round(sum(map(len, proto)) / RECORDS, 1),
        "json_value_bytes_mean": round(sum(map(len, js)) / RECORDS, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "methods": results,
        "speedup_protobuf_bulk_vs_per_record": round(
            results["protobuf_per_record"]["seconds_median"] / results["protobuf_bulk"]["seconds_median"], 2
        ),
        "speedup_json_schema_bulk_vs_per_record": round(
            results["json_schema_per_record"]["seconds_median"] / results["json_schema_bulk"]["seconds_median"], 2
        ),
        "speedup_json_schema_bulk_vs_loads_per_record": round(
            results["json_schema_loads_per_record"]["seconds_median"] / results["json_schema_bulk"]["seconds_median"],
            2,
        ),
    }
    out = ROOT / "bench/results/formats.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
