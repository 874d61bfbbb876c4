"""The exact checks every fault test ends with: the sink equals the truth to the cent, DLQ == poison,
late == late, and a read_committed reader sees every order exactly once."""

from __future__ import annotations

from collections import Counter, defaultdict

import polars as pl

from tests.support.pipeline import BackgroundProducer, Pipeline, assert_pipeline_results, expected_rows, sink_matches


def assert_exact_and_once(pipe: Pipeline, producer: BackgroundProducer, when: str) -> None:
    """Once the producer is done: the sink equals the truth to the cent, DLQ and late topics match,
    and a read_committed reader sees everything exactly once."""
    truth = producer.truth()
    window = pipe.spec.aggregation().window
    expected = expected_rows(truth, window.size_ms, window.grace_ms)
    pipe.wait_for(lambda: sink_matches(pipe, expected), timeout=240, what=f"the sink to match the truth {when}")
    assert_pipeline_results(pipe, truth, expected)
    assert_read_committed_exactly_once(pipe, truth)


def assert_read_committed_exactly_once(pipe: Pipeline, truth: pl.DataFrame) -> None:
    """A read_committed reader sees every enriched order once, and per window a strictly increasing
    series of updates with at most one final, last."""
    enriched = pipe.read("orders_enriched")
    assert Counter(Counter(r.key for r in enriched).values()) == {1: truth.filter(pl.col("kind") != "poison").height}
    series: dict[bytes, list[dict]] = defaultdict(list)
    for key, value in pipe.decoded("sales_aggregates"):
        series[key].append(value)
    for key, values in series.items():
        seen = [(v["count"], v["final"]) for v in values]  # a final may repeat the last update's count
        assert seen == sorted(set(seen)), f"duplicate or reordered updates for {key!r}: {seen}"
        assert all(not final for _count, final in seen[:-1])
