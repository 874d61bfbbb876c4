"""Throughput and lag tables from offset snapshots, and the back-test panel's ranges and verdicts."""

from __future__ import annotations

import polars as pl

from kstream_lab.kafka.admin import GroupLag, PartitionOffsets
from kstream_lab.monitoring.backtest import parse_range, range_for_minute, view_of
from kstream_lab.monitoring.health import (
    HealthReport,
    OffsetsSnapshot,
    PipelineTopics,
    lag_table,
    rates_between,
    throughput_table,
)
from kstream_lab.pipeline_spec import load_pipeline
from kstream_lab.replay.backtest import BacktestReport
from tests.support.paths import ROOT

TOPICS = PipelineTopics(raw="raw", enriched="enr", aggregates="agg", dlq="dlq", late="late")


def snap(at: float, highs: dict[str, list[int]], missing: tuple[str, ...] = ()) -> OffsetsSnapshot:
    return OffsetsSnapshot(
        at, {t: [PartitionOffsets(p, 0, h) for p, h in enumerate(hs)] for t, hs in highs.items()}, missing
    )


def test_topics_come_from_the_workers_section() -> None:
    topics = PipelineTopics.from_spec(load_pipeline(ROOT / "pipelines" / "orders.yaml"))
    assert topics == PipelineTopics("orders_raw", "orders_enriched", "sales_aggregates", "orders_dlq", "orders_late")
    assert topics.consumed == ("orders_raw", "orders_enriched", "sales_aggregates")


def test_rates_are_watermark_deltas_per_second() -> None:
    before = snap(10.0, {"raw": [100, 50], "enr": [10]})
    now = snap(12.0, {"raw": [300, 250], "enr": [10], "agg": [5]})
    assert rates_between(None, now) == {"raw": None, "enr": None, "agg": None}
    assert rates_between(before, now) == {"raw": 200.0, "enr": 0.0, "agg": None}


def test_throughput_table_marks_missing_topics() -> None:
    before = snap(0.0, {"raw": [0], "enr": [0], "agg": [0], "late": [0]})
    now = snap(4.0, {"raw": [1000], "enr": [996], "agg": [30], "late": [4]}, missing=("dlq",))
    rows = throughput_table(TOPICS, HealthReport(now, rates_between(before, now)))
    assert rows == [
        {"topic": "raw", "role": "in (orders)", "offsets": 1000, "per second": "250.0"},
        {"topic": "enr", "role": "enriched", "offsets": 996, "per second": "249.0"},
        {"topic": "agg", "role": "out (aggregates)", "offsets": 30, "per second": "7.5"},
        {"topic": "dlq", "role": "dead letters", "offsets": None, "per second": "topic missing"},
        {"topic": "late", "role": "late events", "offsets": 4, "per second": "1.0"},
    ]


def test_lag_table_has_one_row_per_group_and_topic_with_a_column_per_partition() -> None:
    lags = {
        "raw": [GroupLag("enricher", {0: 10, 1: 15}, {0: 0, 1: 5})],
        "agg": [GroupLag("sink", {0: 3}, {0: 1}), GroupLag("audit", {}, {0: 4})],
    }
    report = HealthReport(snap(0, {"raw": [10, 20], "agg": [4]}), {}, lags)
    assert lag_table(report) == [
        {"group": "enricher", "topic": "raw", "total": 5, "p0": 0, "p1": 5},
        {"group": "sink", "topic": "agg", "total": 1, "p0": 1},
        {"group": "audit", "topic": "agg", "total": 4, "p0": 4},
    ]


def test_a_picked_minute_back_tests_everything_committed_and_focuses_on_it() -> None:
    rng = range_for_minute(1_790_000_040_000)
    assert (rng.start, rng.end, rng.focus_ms) == ("earliest", None, 1_790_000_040_000)
    assert parse_range("  ", "") == parse_range("earliest", "  ")
    assert parse_range("15m ago", "").describe() == "[15m ago, latest)"


def report(statuses: list[str]) -> BacktestReport:
    spec = load_pipeline(ROOT / "pipelines" / "orders.yaml").aggregation()
    windows = pl.DataFrame({"window_start": [60_000 * i for i in range(len(statuses))], "status": statuses})
    return BacktestReport(windows, spec, {0: (0, 10)}, 10, 0, len(statuses), 0.1)


def test_view_of_a_matching_and_a_differing_report() -> None:
    ok = view_of(report(["match", "match", "warmup"]))
    assert ok.ok and ok.verdict.startswith("MATCH") and ok.diff.is_empty() and ok.windows.height == 3
    assert ok.details[-1] == "verdict: MATCH (0 mismatching window(s))"
    bad = view_of(report(["match", "differ", "live_only"]))
    assert not bad.ok and bad.verdict == "DIFFER: 2 window(s) differ from the live result"
    assert bad.diff["status"].to_list() == ["differ", "live_only"]


def test_focus_sums_one_minute_per_tier_over_partitions() -> None:
    ws = 1_790_000_040_000
    windows = pl.DataFrame(
        {
            "window_start": [ws, ws, ws, ws + 60_000, ws],
            "tier": ["gold", "gold", "bronze", "gold", "platinum"],
            "source_partition": [0, 1, 0, 0, 2],
            "live_total": [1_001, 2_002, 5, 9, None],
            "backtest_total": [1_001, 2_002, 5, 9, 77],
            "delta": [0, 0, 0, 0, 77],
            "live_count": [1, 2, 1, 1, None],
            "backtest_count": [1, 2, 1, 1, 1],
            "status": ["match", "match", "match", "match", "open"],
        }
    )
    rep = report(["match"])
    rep.windows = windows
    view = view_of(rep, ws)
    assert view.focus == [
        {
            "tier": "bronze",
            "live": "$0.05",
            "back-test": "$0.05",
            "live orders": 1,
            "back-test orders": 1,
            "windows": "match",
        },
        {
            "tier": "gold",
            "live": "$30.03",
            "back-test": "$30.03",
            "live orders": 3,
            "back-test orders": 3,
            "windows": "match",
        },
        {
            "tier": "platinum",
            "live": "$0.00",
            "back-test": "$0.77",
            "live orders": 0,
            "back-test orders": 1,
            "windows": "open",
        },
    ]
    assert view_of(rep, ws + 120_000).focus == [] and view_of(rep).focus == []
