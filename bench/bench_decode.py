"""Decoding 1M orders: per-record fastavro vs the Avro container trick vs json.loads vs read_ndjson.

Values are the generator's orders (kstream_lab.generator), framed as Confluent Avro (magic byte,
schema id, body) and as compact JSON. Each method turns the list of values into rows:
- ``avro_fastavro_per_record``: fastavro.schemaless_reader per value -> list of dicts (the baseline);
- ``avro_container_trick``: kstream_lab.schemas.bulk.decode_avro_batch -> Polars frame;
- ``json_loads_per_record``: json.loads per value -> list of dicts;
- ``json_read_ndjson``: kstream_lab.schemas.bulk.decode_json_batch (explicit schema) -> Polars frame.
Median of KSTREAM_BENCH_REPEAT runs (default 3); size with KSTREAM_BENCH_RECORDS (default 1,000,000).
Writes bench/results/decode.json.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import time
from pathlib import Path

import fastavro

from kstream_lab.aggregations.spec import WindowSpec
from kstream_lab.generator import OrderGenerator
from kstream_lab.schemas.avro import StaticSchemas, frame, plain_times
from kstream_lab.schemas.bulk import decode_avro_batch, decode_json_batch, polars_schema
from kstream_lab.schemas.catalog import load_schemas

ROOT = Path(__file__).resolve().parents[1]
RECORDS = int(os.environ.get("KSTREAM_BENCH_RECORDS", "1000000"))
REPEAT = int(os.environ.get("KSTREAM_BENCH_REPEAT", "3"))


def make_values(schema_text: str) -> tuple[list[bytes], list[bytes]]:
    gen = OrderGenerator(seed=1, start_ms=1_700_000_000_000, partitions=6, window=WindowSpec(size="60s"))
    parsed = fastavro.parse_schema(json.loads(schema_text))
    avro, js = [], []
    for g in gen.take(RECORDS):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, g.value)
        avro.append(frame(1, buf.getvalue()))
        js.append(json.dumps(g.value, separators=(",", ":")).encode())
    return avro, js


def median_seconds(fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    schema_text = load_schemas(ROOT / "pipelines/schemas")["Order"].text
    avro, js = make_values(schema_text)
    reader = fastavro.parse_schema(plain_times(json.loads(schema_text)))
    registry = StaticSchemas({1: schema_text})
    pl_schema = polars_schema(schema_text)

    def fastavro_per_record():
        return [fastavro.schemaless_reader(io.BytesIO(v[5:]), reader, None) for v in avro]

    methods = {
        "avro_fastavro_per_record": fastavro_per_record,
        "avro_container_trick": lambda: decode_avro_batch(avro, registry).frame,
        "json_loads_per_record": lambda: [json.loads(v) for v in js],
        "json_read_ndjson": lambda: decode_json_batch(js, pl_schema).frame,
    }
    results, rows = {}, {}
    for name, fn in methods.items():
        seconds, out = median_seconds(fn)
        rows[name] = len(out)
        results[name] = {"seconds_median": round(seconds, 4), "records_per_s": round(RECORDS / seconds)}
        print(f"{name:<28} {seconds:7.3f} s  {RECORDS / seconds:>12,.0f} rec/s", flush=True)
    assert set(rows.values()) == {RECORDS}, rows
    base_avro = results["avro_fastavro_per_record"]["seconds_median"]
    base_json = results["json_loads_per_record"]["seconds_median"]
    report = {
        "records": RECORDS,
        "repeat": REPEAT,
        "avro_value_bytes_mean": round(sum(map(len, avro)) / RECORDS, 1),
        "json_value_bytes_mean": round(sum(map(len, js)) / RECORDS, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "methods": results,
        "speedup_container_vs_fastavro": round(base_avro / results["avro_container_trick"]["seconds_median"], 2),
        "speedup_read_ndjson_vs_json_loads": round(base_json / results["json_read_ndjson"]["seconds_median"], 2),
    }
    out = ROOT / "bench/results/decode.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
