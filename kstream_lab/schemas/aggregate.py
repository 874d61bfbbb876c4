"""The Avro schema of an aggregation's output records, derived from its spec.

The order pipeline's output topic declares ``schema: SalesAggregate`` (pipelines/schemas), and as
long as the aggregation writes exactly that record's fields the file is used, byte for byte. An
aggregation of another shape (other metrics, groups or derived fields) gets its record schema from
the spec instead: window_start/window_end, the group columns (their types from the input topic's
schema, or, for derived fields, from the compiled expression over those types), source_partition,
one field per metric and ``final``. Metrics that can have no value (min, max, mean, first, last)
are nullable longs; sum, count and count_distinct are longs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from kstream_lab.aggregations.inputs import compile_inputs
from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.schemas.catalog import SchemaFile

ALWAYS_VALUED = frozenset({"sum", "count", "count_distinct"})
_AVRO_TO_POLARS: dict[str, Any] = {
    "string": pl.Utf8,
    "long": pl.Int64,
    "int": pl.Int32,
    "boolean": pl.Boolean,
    "double": pl.Float64,
    "float": pl.Float32,
}
_POLARS_TO_AVRO = {pl.Utf8: "string", pl.Boolean: "boolean", pl.Float64: "double", pl.Float32: "double"}


def output_fields(spec: AggregationSpec, group_columns: dict[str, str]) -> list[str]:
    """The field names of the records the aggregator writes (its ``aggregate_record``)."""
    names = ["source_partition", "window_start", "window_end", *spec.group_by, *spec.metrics, "final"]
    return [group_columns.get(n, n) for n in names]


def schema_fits(schema: SchemaFile, spec: AggregationSpec, group_columns: dict[str, str]) -> bool:
    """True when the declared record has exactly the fields the aggregation writes."""
    declared = {f["name"] for f in json.loads(schema.text).get("fields", [])}
    return declared == set(output_fields(spec, group_columns))


def input_types(schema: SchemaFile | None) -> dict[str, Any]:
    """Polars dtypes of an input record schema's primitive fields (unions with null: the other branch)."""
    out: dict[str, Any] = {}
    for f in json.loads(schema.text).get("fields", []) if schema else []:
        typ = f["type"]
        if isinstance(typ, list):
            typ = next((t for t in typ if t != "null"), "string")
        if isinstance(typ, dict):
            typ = typ.get("type")
        out[f["name"]] = _AVRO_TO_POLARS.get(typ, pl.Utf8) if isinstance(typ, str) else pl.Utf8
    return out


def aggregate_schema(
    spec: AggregationSpec, group_columns: dict[str, str], source: SchemaFile | None, *, name: str | None = None
) -> SchemaFile:
    """The derived record schema (see the module doc) as a SchemaFile ready to register."""
    types = input_types(source)
    compiled = compile_inputs(spec)
    frame = pl.DataFrame(schema={f: types.get(f, pl.Utf8) for f in compiled.source_fields}).lazy()
    resolved = compiled.prepare(frame).collect_schema()
    record = name or "".join(p.capitalize() for p in (spec.name or "aggregate").split("_")) + "Aggregate"
    fields: list[dict[str, Any]] = [
        {"name": "window_start", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "window_end", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ]
    for g in spec.group_by:
        dtype: Any = resolved.get(g, pl.Utf8)
        avro = _POLARS_TO_AVRO.get(dtype, "long" if dtype.is_integer() else "string")
        fields.append({"name": group_columns.get(g, g), "type": ["null", avro], "default": None})
    fields.append({"name": "source_partition", "type": "int"})
    for metric, m in spec.metrics.items():
        fields.append(
            {"name": metric, "type": "long"}
            if m.op in ALWAYS_VALUED
            else {"name": metric, "type": ["null", "long"], "default": None}
        )
    fields.append({"name": "final", "type": "boolean"})
    body = {
        "type": "record",
        "name": record,
        "namespace": "dev.kstreamlab.aggregates",
        "doc": f"Derived from aggregation {spec.name!r} ({spec.window.type} window): "
        "one window, group and input partition.",
        "fields": fields,
    }
    text = json.dumps(body, separators=(",", ":"))
    return SchemaFile(Path(f"derived:{spec.name or record}"), f"dev.kstreamlab.aggregates.{record}", text)
