"""The aggregator's processor with a spec v2 aggregation (hopping windows, a filter, a derived group
field, nullable metrics), and the output schema derived from the spec."""

from __future__ import annotations

import io
import json

import fastavro

from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.pipeline_spec import load_pipeline
from kstream_lab.schemas.aggregate import aggregate_schema, schema_fits
from kstream_lab.schemas.catalog import load_schemas
from kstream_lab.schemas.serde import json_decoder
from kstream_lab.workers.aggregator import AggregatorProcessor
from kstream_lab.workers.codec import records_to_columns
from tests.support.aggregator import order
from tests.support.fakes import RecordingOutput, json_msgs
from tests.support.paths import ROOT

SPEC = AggregationSpec.model_validate(
    {
        "name": "big_orders",
        "source": "in",
        "window": {"type": "hopping", "size": "10s", "advance": "5s", "grace": 0},
        "filter": "total_cents >= 100",
        "fields": {"big": "total_cents >= 1000"},
        "group_by": ["big"],
        "metrics": {"total_cents": {"sum": "total_cents"}, "count": {"count": "*"}, "mean": {"mean": "total_cents"}},
    }
)


def processor() -> AggregatorProcessor:
    ints, others = AggregatorProcessor.fields(SPEC)

    def decode(values, topic, partitions, offsets):
        return records_to_columns(json_decoder, values, topic, partitions, offsets, ints, others)

    proc = AggregatorProcessor(
        SPEC, decode=decode, encode_aggregate=lambda v: json.dumps(v).encode(), output="agg", late="late", dlq="dlq"
    )
    proc.assign([0], lambda parts: {p: [] for p in parts})
    return proc


def test_fields_read_are_the_source_fields_only():
    assert AggregatorProcessor.fields(SPEC) == (["timestamp", "total_cents"], [])


def test_hopping_windows_with_a_filter_and_a_derived_group():
    proc, out = processor(), RecordingOutput()
    proc.process(
        json_msgs(
            "in",
            0,
            [
                order(1, 6_000, cents=150),  # windows [0,10) and [5,15)
                order(2, 7_000, cents=50),  # filtered out
                order(3, 8_000, cents=2_000),  # big
                order(4, 21_000, cents=5),  # filtered out, yet its event time closes [0,10), [5,15) and [10,20)
                order(5, 12_000, cents=400),  # [5,15) and [10,20) both closed: late
            ],
        ),
        out,
    )
    finals = sorted(
        (v["window_start"], v["big"], v["total_cents"], v["count"], v["mean"]) for v in out.values("agg") if v["final"]
    )
    assert finals == [
        (0, False, 150, 1, 150),
        (0, True, 2000, 1, 2000),
        (5000, False, 150, 1, 150),
        (5000, True, 2000, 1, 2000),
    ]
    assert [json.loads(s.value)["order_id"] for s in out.to("late")] == ["o5"]
    assert not [v for v in out.values("agg") if not v["final"]]  # nothing is open: the filtered record held none


def test_derived_output_schema_encodes_the_records():
    schemas = load_schemas(ROOT / "pipelines/schemas")
    schema = aggregate_schema(SPEC, {}, schemas["EnrichedOrder"])
    body = json.loads(schema.text)
    assert schema.full_name == "dev.kstreamlab.aggregates.BigOrdersAggregate"
    assert [(f["name"], f["type"]) for f in body["fields"][2:]] == [
        ("big", ["null", "boolean"]),
        ("source_partition", "int"),
        ("total_cents", "long"),
        ("count", "long"),
        ("mean", ["null", "long"]),
        ("final", "boolean"),
    ]
    record = {"window_start": 0, "window_end": 10, "big": True, "source_partition": 0, "total_cents": 5, "count": 1}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(body), {**record, "mean": None, "final": True})
    buf.seek(0)
    assert fastavro.schemaless_reader(buf, fastavro.parse_schema(body))["big"] is True


def test_the_order_pipeline_keeps_its_declared_schema():
    """byte-for-byte compatibility: SalesAggregate fits the orders aggregation, so it is used as is."""
    pipeline = load_pipeline(ROOT / "pipelines/orders.yaml")
    cfg = pipeline.workers.aggregator
    schemas = load_schemas(ROOT / "pipelines/schemas")
    assert schema_fits(schemas["SalesAggregate"], pipeline.aggregation(cfg.aggregation), cfg.group_columns)
    assert not schema_fits(schemas["SalesAggregate"], SPEC, {})
