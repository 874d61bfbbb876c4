"""The back-test's per-window report as the tests expect it, from ``compare_windows`` and from the API alike."""

from __future__ import annotations

# The exact columns, in order, of a per-window comparison (``BacktestReport.windows``).
WINDOW_REPORT_COLUMNS = [
    "window_start",
    "tier",
    "source_partition",
    "live_total",
    "backtest_total",
    "delta",
    "live_count",
    "backtest_count",
    "status",
]


def produce_enriched(pipe, count: int, seed: int, start_ms: int, window=None) -> None:
    """Enriched-shape orders (2 % late, 0.5 % poison) into the pipeline's orders_enriched, in its declared
    format; ``window`` is the generator's notion of late (default: the pipeline's aggregation's)."""
    from kstream_lab.generator import loyalty_tier_for
    from kstream_lab.generator.produce import produce_orders
    from kstream_lab.schemas.serde import SerdeContext, value_serializer

    topic = pipe.spec.topic(pipe.topic("orders_enriched"))
    inner = value_serializer(pipe.settings, topic)

    def serialize(obj: dict, ctx: SerdeContext) -> bytes:
        return inner({**obj, "loyalty_tier": loyalty_tier_for(obj["customer_id"])}, ctx)

    produce_orders(
        pipe.settings,
        topic,
        serialize,
        window or pipe.spec.aggregation().window,
        count=count,
        seed=seed,
        start_ms=start_ms,
        late_fraction=0.02,
        poison_fraction=0.005,
        progress=False,
    )


def aggregate_across_a_kill(pipe, count: int, seeds: tuple[int, int], start_ms: int, window=None) -> None:
    """``count`` orders, the aggregator started, SIGKILLed after its first commit, ``count`` more orders
    (event times continuing), the aggregator restarted and waited for until it committed every offset."""
    from kstream_lab.kafka.admin import committed_offsets

    produce_enriched(pipe, count, seeds[0], start_ms, window)
    pipe.start("aggregator")
    group, topic = pipe.spec.workers.aggregator.group_id, pipe.topic("orders_enriched")
    pipe.wait_for(
        lambda: committed_offsets(pipe.settings, group, topic, list(range(6))), 60, "a first commit", interval=0.05
    )
    pipe.kill("aggregator")
    produce_enriched(pipe, count, seeds[1], start_ms + count * 20, window)
    pipe.start("aggregator")
    pipe.wait_for(pipe.aggregator_caught_up, 120, "the aggregator to commit every offset")
