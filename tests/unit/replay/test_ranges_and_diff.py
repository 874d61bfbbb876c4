"""Range parsing, SQL topic detection and the per-window diff statuses, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pytest

from kstream_lab.aggregations.batch import run_batch
from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.cli.replay import _position
from kstream_lab.replay.diff import compare_windows, what_if
from kstream_lab.replay.frames import referenced_topics, run_sql
from kstream_lab.replay.reader import RangeError, parse_position
from tests.support.aggregator import orders_frame
from tests.support.backtest import WINDOW_REPORT_COLUMNS

NOW = 1_800_000_000_000
SPEC = AggregationSpec.model_validate(
    {
        "name": "sales",
        "source": "orders_enriched",
        "window": {"size": "60s", "grace": "10s"},
        "group_by": ["loyalty_tier"],
        "metrics": {"total_cents": {"sum": "total_cents"}, "count": {"count": "*"}},
    }
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ("none", None)),
        ("earliest", ("earliest", None)),
        ("latest", ("latest", None)),
        (" LATEST ", ("latest", None)),
        (42, ("offset", 42)),
        ("42", ("offset", 42)),
        ({0: 5, 2: 7}, ("offsets", {0: 5, 2: 7})),
        ("@1700000000123", ("time", 1_700_000_000_123)),
        ("15m ago", ("time", NOW - 900_000)),
        ("1h30m ago", ("time", NOW - 5_400_000)),
        ("now", ("time", NOW)),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), ("time", 1_767_323_045_000)),
        (datetime(2026, 1, 2, 3, 4, 5), ("time", 1_767_323_045_000)),  # naive means UTC
        (datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))), ("time", 1_767_323_045_000)),
        ("2026-01-02T03:04:05Z", ("time", 1_767_323_045_000)),
    ],
)
def test_positions(value, expected):
    assert parse_position(value, now_ms=NOW) == expected


@pytest.mark.parametrize("value", [-1, True, "yesterday", "15x ago", {0: -3}, 1.5, "@12ab"])
def test_bad_positions_are_user_errors(value):
    with pytest.raises(RangeError):
        parse_position(value, now_ms=NOW)


def test_cli_positions():
    assert _position("0:10,3:20") == {0: 10, 3: 20}
    assert _position("2026-01-02T03:04:05") == "2026-01-02T03:04:05"
    assert _position("15m ago") == "15m ago"


def test_sql_finds_topics_by_name_and_runs():
    topics = ["orders_enriched", "orders", "order-aggregator-changelog", "sales_aggregates"]
    q = 'select * from orders_enriched o join "order-aggregator-changelog" c on true'
    assert referenced_topics(q, topics) == ["orders_enriched", "order-aggregator-changelog"]
    assert referenced_topics("select orders_enriched.x from orders_enriched", ["orders"]) == []
    df = pl.DataFrame({"loyalty_tier": ["gold", "gold", "silver"], "total_cents": [1, 2, 4]})
    out = run_sql("select loyalty_tier, sum(total_cents) t from orders group by 1 order by 1", {"orders": df})
    assert out.rows() == [("gold", 3), ("silver", 4)]


def _live(rows):
    return pl.DataFrame(
        rows,
        schema={
            "source_partition": pl.Int32,
            "window_start": pl.Int64,
            "loyalty_tier": pl.Utf8,
            "total_cents": pl.Int64,
            "count": pl.Int64,
        },
        orient="row",
    )


def test_every_status():
    frame = orders_frame(
        [
            (0, 0, 1_000, "gold", 100),
            (0, 1, 61_000, "gold", 5),
            (0, 2, 75_000, "gold", 7),
            (0, 3, 130_000, "silver", 9),
            (0, 4, 2_000, "gold", 50),
            (1, 0, 1_000, "gold", 1),
            (1, 1, 200_000, "gold", 2),
        ]
    )
    result = run_batch(SPEC, frame)
    live = _live(
        [
            (0, 0, "gold", 100, 1),  # match
            (0, 60_000, "gold", 13, 2),  # differ (back-test 12)
            (0, 120_000, "bronze", 1, 1),  # live_only
            (1, 0, "gold", 1, 1),
            (1, 0, "gold", 1, 1),
        ]
    )  # duplicate_live
    windows = compare_windows(SPEC, result, live, {"loyalty_tier": "tier"}, {}, set())
    assert windows.columns == WINDOW_REPORT_COLUMNS
    assert windows.select("source_partition", "window_start", "tier", "delta", "status").rows() == [
        (0, 0, "gold", 0, "match"),
        (0, 60_000, "gold", -1, "differ"),
        (0, 120_000, "bronze", -1, "live_only"),
        (0, 120_000, "silver", 9, "open"),
        (1, 0, "gold", 0, "duplicate_live"),
        (1, 180_000, "gold", 2, "open"),
    ]
    assert result.late["offset"].to_list() == [4]
    # warm-up excludes early windows; a truncated partition turns live_only into open
    windows = compare_windows(SPEC, result, live, {}, {0: 60_000}, {0})
    assert windows.filter(pl.col("source_partition") == 0)["status"].to_list() == ["warmup", "warmup", "open", "open"]


def test_what_if_moves_totals_per_tier():
    frame = orders_frame(
        [(0, 0, 1_000, "gold", 100), (0, 1, 75_000, "gold", 5), (0, 2, 2_000, "gold", 50), (0, 3, 300_000, "gold", 1)]
    )
    base = run_batch(SPEC, frame)
    live = base.finals.select("source_partition", "window_start", "loyalty_tier", "total_cents", "count")
    wi = what_if(SPEC, SPEC.with_window(grace_ms=0), frame.lazy(), live, {"loyalty_tier": "tier"}, base)
    assert (wi.late_base, wi.late_what_if) == (1, 1)
    wi = what_if(SPEC, SPEC.with_window(size_ms=120_000), frame.lazy(), live, {"loyalty_tier": "tier"}, base)
    assert wi.late_what_if == 0 and wi.windows is None
    assert wi.by_group.rows() == [("gold", 105, 2, 155, 3)]
    assert any("gold: total 105 -> 155 (+50)" in line for line in wi.summary())


def test_what_if_regrouped_is_compared_at_the_shared_level():
    frame = orders_frame([(0, 0, 1_000, "gold", 100), (0, 1, 2_000, "silver", 5), (0, 2, 300_000, "gold", 1)])
    base = run_batch(SPEC, frame)
    live = base.finals.select("source_partition", "window_start", "loyalty_tier", "total_cents", "count")
    wi = what_if(SPEC, SPEC.model_copy(update={"group_by": ()}), frame.lazy(), live, {"loyalty_tier": "tier"}, base)
    assert wi.by_group.rows() == [(105, 2, 105, 2)] and wi.windows is None
    assert wi.summary()[1] == "  all: total 105 -> 105 (+0), count 2 -> 2 (+0)"
