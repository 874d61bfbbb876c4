"""A small aggregation spec, orders for it, the JSON column decoder and processor of the aggregator unit tests,
and replayed frames of orders for the batch engine's."""

from __future__ import annotations

import json

import polars as pl

from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.schemas.serde import json_decoder
from kstream_lab.workers.aggregator import AggregatorProcessor
from kstream_lab.workers.codec import records_to_columns

SPEC = AggregationSpec.model_validate(
    {
        "name": "sales",
        "source": "in",
        "time_field": "timestamp",
        "window": {"size": "10s", "grace": "2s"},
        "group_by": ["loyalty_tier"],
        "metrics": {"total_cents": {"sum": "total_cents"}, "count": {"count": "*"}},
    }
)

# A replayed frame of enriched orders as the batch engine reads it; row tuples are in this order.
ORDERS_FRAME_SCHEMA = {
    "partition": pl.Int32,
    "offset": pl.Int64,
    "timestamp": pl.Int64,
    "loyalty_tier": pl.Utf8,
    "total_cents": pl.Int64,
}


def orders_frame(rows: list[tuple] | list[dict]) -> pl.DataFrame:
    """Rows (tuples in ORDERS_FRAME_SCHEMA's order, or dicts by column) as a frame with its exact dtypes."""
    return pl.DataFrame(rows, schema=ORDERS_FRAME_SCHEMA, orient="row")


def order(i: int, ts: int, tier: str = "gold", cents: int = 100) -> dict:
    return {"order_id": f"o{i}", "timestamp": ts, "loyalty_tier": tier, "total_cents": cents}


def json_columns(values, topic, partitions, offsets):
    ints, others = AggregatorProcessor.fields(SPEC)
    return records_to_columns(json_decoder, values, topic, partitions, offsets, ints, others)


def processor(
    decode=json_columns, partitions: tuple[int, ...] = (0,), changelog: dict | None = None
) -> AggregatorProcessor:
    """The aggregator's processor over SPEC (JSON aggregates to "agg", late to "late", DLQ "dlq").

    It is assigned ``partitions``, each restored from ``changelog[p]`` (its changelog records), else empty.
    """
    proc = AggregatorProcessor(
        SPEC,
        decode=decode,
        encode_aggregate=lambda v: json.dumps(v).encode(),
        output="agg",
        late="late",
        dlq="dlq",
        group_columns={"loyalty_tier": "tier"},
    )
    proc.assign(list(partitions), lambda parts: {p: (changelog or {}).get(p, []) for p in parts})
    return proc
