"""The dashboard's back-test panel: from a picked minute or a typed range to a kstream_lab.backtest call.

The panel is where a user goes from "this minute looks wrong" to "does a replay of the same records
give the same totals?". A picked minute is *not* turned into a time range: the enriched topic is
written in the enricher's transactions, its records carry event time but its commit markers carry
wall-clock time, and a broker time lookup (offsets_for_times) may stop at the first marker newer
than the asked time -- far from the minute. So a picked minute back-tests the whole committed range
(exact, and the back-test caps it at the aggregator's committed offsets) and the panel then focuses
on that minute's windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from kstream_lab.monitoring.sales import format_cents, tier_order
from kstream_lab.settings import Settings


@dataclass(frozen=True)
class BacktestRange:
    start: str
    end: str | None
    focus_ms: int | None = None

    def describe(self) -> str:
        return f"[{self.start}, {self.end or 'latest'})"


def range_for_minute(window_start_ms: int) -> BacktestRange:
    """Everything committed so far, focused on the window starting at ``window_start_ms``."""
    return BacktestRange("earliest", None, int(window_start_ms))


def parse_range(start: str, end: str, focus_ms: int | None = None) -> BacktestRange:
    """Typed text -> range: empty start means earliest, empty end means latest (the snapshot)."""
    return BacktestRange(start.strip() or "earliest", end.strip() or None, focus_ms)


@dataclass
class BacktestView:
    """What the panel shows: the verdict line, whether it passed, and the per-window diff."""

    verdict: str
    ok: bool
    diff: pl.DataFrame
    details: list[str] = field(default_factory=list)
    windows: pl.DataFrame = field(default_factory=pl.DataFrame)
    focus: list[dict] = field(default_factory=list)


def run_backtest(settings: Settings, pipeline_file: Path, rng: BacktestRange) -> BacktestView:
    """Run kstream_lab.backtest over ``rng`` with the watched pipeline's aggregation spec."""
    import kstream_lab
    from kstream_lab.kafka.admin import ping

    ping(settings, timeout=3.0)  # a down broker is one clear message, not a timeout deep in the replay
    report = kstream_lab.backtest(start=rng.start, end=rng.end, spec=pipeline_file, settings=settings)
    return view_of(report, rng.focus_ms)


def view_of(report: Any, focus_ms: int | None = None) -> BacktestView:
    """Adapt a :class:`kstream_lab.replay.backtest.BacktestReport` to the panel."""
    ok = bool(report.verdict)
    mismatches = report.diff.height
    verdict = (
        "MATCH: every judged window equals the live result"
        if ok
        else f"DIFFER: {mismatches} window(s) differ from the live result"
    )
    focus = focus_table(report.windows, focus_ms) if focus_ms is not None else []
    return BacktestView(verdict, ok, report.diff, list(report.summary()), report.windows, focus)


def focus_table(windows: pl.DataFrame, window_start_ms: int) -> list[dict]:
    """One row per tier of one minute: live vs back-test total (exact cents), counts, window statuses."""
    minute = windows.filter(pl.col("window_start") == window_start_ms)
    need = {"tier", "live_total", "backtest_total", "live_count", "backtest_count", "status"}
    if minute.is_empty() or not need <= set(minute.columns):
        return []
    per_tier = minute.group_by("tier").agg(
        pl.col("live_total").sum(),
        pl.col("backtest_total").sum(),
        pl.col("live_count").sum(),
        pl.col("backtest_count").sum(),
        pl.col("status").sort().unique(maintain_order=True).str.join(", "),
    )
    rows = {r["tier"]: r for r in per_tier.iter_rows(named=True)}
    return [
        {
            "tier": t,
            "live": format_cents(r["live_total"]),
            "back-test": format_cents(r["backtest_total"]),
            "live orders": r["live_count"],
            "back-test orders": r["backtest_count"],
            "windows": r["status"],
        }
        for t in tier_order(list(rows))
        for r in (rows[t],)
    ]
