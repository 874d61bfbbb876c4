"""Sales per minute from a real DuckDB sink file: summed over partitions, exact cents, clear empty states."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from kstream_lab.monitoring.sales import (
    SinkMissing,
    SinkTarget,
    SinkUnavailable,
    chart_frame,
    format_cents,
    load_minute_totals,
    minute_label,
    minute_table,
    sink_target,
)
from kstream_lab.pipeline_spec import WorkersConfig, load_pipeline
from kstream_lab.settings import Settings
from kstream_lab.sinks.duckdb import DuckDBSink
from tests.support.paths import ROOT
from tests.support.sales import MINUTE, ROWS, T0, agg


def test_totals_are_summed_over_partitions_per_minute_and_tier(sink_file) -> None:
    totals = load_minute_totals(SinkTarget("duckdb", str(sink_file(ROWS))))
    assert totals.select("window_start", "tier", "total_cents", "count", "partitions", "final").rows() == [
        (T0, "bronze", 1, 1, 1, True),
        (T0, "gold", 22_346, 3, 2, True),
        (T0, "silver", 999, 1, 1, True),
        (T0 + MINUTE, "gold", 50_000, 3, 1, True),
        (T0 + MINUTE, "platinum", 123_456_789, 7, 1, False),
        (T0 + MINUTE, "silver", 3_125, 3, 2, True),
    ]
    assert totals["minute"][0].isoformat() == "2026-09-21T14:14:00+00:00"


def test_only_the_newest_minutes_are_loaded(sink_file) -> None:
    rows = [agg(T0 + i * MINUTE, "gold", 0, 100 + i, 1) for i in range(10)]
    totals = load_minute_totals(SinkTarget("duckdb", str(sink_file(rows))), last_minutes=3)
    assert totals["window_start"].to_list() == [T0 + 7 * MINUTE, T0 + 8 * MINUTE, T0 + 9 * MINUTE]
    assert totals["total_cents"].to_list() == [107, 108, 109]


def test_reading_does_not_lock_out_the_writer(sink_file) -> None:
    path = sink_file(ROWS)
    target = SinkTarget("duckdb", str(path))
    sink = DuckDBSink(path)
    for i in range(5):
        load_minute_totals(target)
        sink.upsert([agg(T0 + 2 * MINUTE, "gold", 0, 100 + i, 1 + i, final=False)])
    totals = load_minute_totals(target)
    assert totals.filter(totals["window_start"] == T0 + 2 * MINUTE)["total_cents"].to_list() == [104]


def test_missing_file_and_missing_table_are_sink_missing(tmp_path: Path) -> None:
    with pytest.raises(SinkMissing, match="no sink database at"):
        load_minute_totals(SinkTarget("duckdb", str(tmp_path / "nope.duckdb")))
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    with pytest.raises(SinkMissing, match="no sales_aggregates table yet"):
        load_minute_totals(SinkTarget("duckdb", str(empty)))


def test_empty_table_gives_an_empty_frame(sink_file) -> None:
    totals = load_minute_totals(SinkTarget("duckdb", str(sink_file([]))))
    assert totals.is_empty() and totals.columns == [
        "window_start",
        "minute",
        "tier",
        "total_cents",
        "count",
        "partitions",
        "final",
    ]
    assert minute_table(totals).is_empty()


def test_unreachable_postgres_is_sink_unavailable() -> None:
    from tests.support.paths import free_port

    target = SinkTarget("postgres", f"postgresql://kl:secret@127.0.0.1:{free_port()}/sales")
    assert target.describe().startswith("PostgreSQL 127.0.0.1:") and "secret" not in target.describe()
    with pytest.raises(SinkUnavailable, match="cannot read PostgreSQL sink"):
        load_minute_totals(target, timeout_s=1)


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (0, "$0.00"),
        (5, "$0.05"),
        (100, "$1.00"),
        (22_346, "$223.46"),
        (123_456_789, "$1,234,567.89"),
        (-1_050, "-$10.50"),
        (9_007_199_254_740_993, "$90,071,992,547,409.93"),
    ],
)
def test_format_cents_is_exact(cents: int, text: str) -> None:
    assert format_cents(cents) == text


def test_minute_table_is_newest_first_with_tiers_in_rank_order(sink_file) -> None:
    table = minute_table(load_minute_totals(SinkTarget("duckdb", str(sink_file(ROWS)))))
    assert table.columns == ["minute (UTC)", "bronze", "silver", "gold", "platinum", "all tiers", "orders", "status"]
    assert table.rows() == [
        ("2026-09-21 14:15", "—", "$31.25", "$500.00", "$1,234,567.89", "$1,235,099.14", "13", "open"),
        ("2026-09-21 14:14", "$0.01", "$9.99", "$223.46", "—", "$233.46", "5", "final"),
    ]
    assert minute_label(T0) == "2026-09-21 14:14"


def test_chart_frame_is_long_by_minute_and_tier(sink_file) -> None:
    chart = chart_frame(load_minute_totals(SinkTarget("duckdb", str(sink_file(ROWS)))))
    assert chart.columns == ["minute", "tier", "tier_rank", "sales_usd", "orders"]
    assert chart.select("tier", "tier_rank", "orders").rows() == [
        ("bronze", 0, 1),
        ("silver", 1, 1),
        ("gold", 2, 3),
        ("silver", 1, 3),
        ("gold", 2, 3),
        ("platinum", 3, 7),
    ]


def test_sink_target_follows_the_pipeline_file(tmp_path: Path) -> None:
    spec = load_pipeline(ROOT / "pipelines" / "orders.yaml")
    settings = Settings(data_dir=tmp_path)
    assert sink_target(settings, spec) == SinkTarget("duckdb", str(tmp_path / "sink" / "sales.duckdb"))
    custom = spec.model_copy(
        update={"workers": WorkersConfig.model_validate({"sink": {"target": "duckdb:///srv/sales.duckdb"}})}
    )
    assert sink_target(settings, custom) == SinkTarget("duckdb", "/srv/sales.duckdb")
    pg = spec.model_copy(
        update={"workers": WorkersConfig.model_validate({"sink": {"target": "postgresql://u:p@db:5432/kl"}})}
    )
    assert sink_target(settings, pg).kind == "postgres"
    assert sink_target(settings, pg).describe() == "PostgreSQL db:5432/kl"
