"""The whole pipeline against the generator's truth: totals to the cent, DLQ == poison, late == late.

N is the issue's 200,000 orders (1% late, 0.5% poison); the kill and rebalance tests in test_faults.py
run the same size. KSTREAM_PIPELINE_ORDERS sets another size (e.g. 20000 for a quick local check).
"""

from __future__ import annotations

from tests.support.pipeline import ORDERS, Pipeline, assert_pipeline_results, expected_rows, produce_truth, sink_matches


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
