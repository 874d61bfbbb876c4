"""A small aggregation spec, orders for it, and the JSON column decoder and processor of the aggregator unit tests."""

from __future__ import annotations

import json

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
