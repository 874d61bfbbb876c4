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
