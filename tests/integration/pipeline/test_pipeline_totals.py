"""The whole pipeline against the generator's truth: totals to the cent, DLQ == poison, late == late.

N is the issue's 200,000 orders (1% late, 0.5% poison); the kill and rebalance tests in test_faults.py
run the same size. KSTREAM_PIPELINE_ORDERS sets another size (e.g. 20000 for a quick local check).
"""

from __future__ import annotations

import os
from collections import Counter

import polars as pl

from kstream_lab.generator.produce import produce_orders
from kstream_lab.schemas.serde import value_serializer
from kstream_lab.workers.dlq import DeadLetter
from tests.integration.pipeline.harness import Pipeline, expected_rows, sink_by_key, totals_per_window_tier

ORDERS = int(os.environ.get("KSTREAM_PIPELINE_ORDERS", "200000"))


def produce_truth(pipe: Pipeline, count: int = ORDERS, seed: int = 7) -> pl.DataFrame:
    spec = pipe.spec
    raw = spec.topic(pipe.topic("orders_raw"))
    truth_file = pipe.tmp / "truth.parquet"
    produce_orders(pipe.settings, raw, value_serializer(pipe.settings, raw), spec.aggregation().window,
                   count=count, seed=seed, late_fraction=0.01, poison_fraction=0.005, truth=truth_file,
                   progress=False)
    return pl.read_parquet(truth_file)


def sink_matches(pipe: Pipeline, expected: dict) -> bool:
    return sink_by_key(pipe.sink_rows()) == expected


def assert_pipeline_results(pipe: Pipeline, truth: pl.DataFrame, expected: dict) -> None:
    """Every check of the issue's first test, exact."""
    got = sink_by_key(pipe.sink_rows())
    assert got == expected
    finals = totals_per_window_tier(got, final_only=True)
    closed = {(ws, t) for (ws, t, _p), v in expected.items() if v["final"]}
    want = totals_per_window_tier({k: v for k, v in expected.items() if v["final"]}, final_only=True)
    assert finals == want and set(finals) == closed
    assert len(closed) > 0

    dlq = pipe.read("orders_dlq")
    poison = truth.filter(pl.col("kind") == "poison")
    assert len(dlq) == poison.height
    assert sorted(r.key.decode() for r in dlq) == sorted(poison["order_id"].to_list())
    letters = [DeadLetter.from_record(r.key, r.value, r.headers) for r in dlq]
    assert {d.source_topic for d in letters} == {pipe.topic("orders_raw")}
    assert {d.error_class for d in letters} <= {"DeserializationError", "ValidationError"}
    assert all(d.attempts == 1 and d.source_offset >= 0 and d.failed_at > 0 for d in letters)

    late = pipe.read("orders_late")
    late_truth = truth.filter(pl.col("kind") == "late")
    assert len(late) == late_truth.height
    assert sorted(r.key.decode() for r in late) == sorted(late_truth["order_id"].to_list())

    final_keys = Counter(key for key, value in pipe.decoded("sales_aggregates") if value["final"])
    assert final_keys and max(final_keys.values()) == 1, "a window was emitted final more than once"
    assert len(final_keys) == sum(v["final"] for v in expected.values())


def test_pipeline_totals_match_truth(live_pipeline: Pipeline) -> None:
    pipe = live_pipeline
    truth = produce_truth(pipe)
    window = pipe.spec.aggregation().window
    expected = expected_rows(truth, window.size_ms, window.grace_ms)
    for name in ("customer-service", "enricher", "aggregator", "sink"):
        pipe.start(name)
    pipe.wait_for(lambda: sink_matches(pipe, expected), timeout=180, what="the sink to match the truth")
    assert_pipeline_results(pipe, truth, expected)
    assert truth.height == ORDERS
