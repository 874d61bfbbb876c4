"""The dashboard's back-test panel: turn a picked minute or typed range into a kstream_lab.backtest call.

The panel is where a user goes from "this minute looks wrong" to "does a replay of the same records
give the same totals?", so a minute from the sales chart must become a replay range that contains
that window's records *and* the records that closed it (window end + grace), or the back-test would
see the window still open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from kstream_lab.settings import Settings


@dataclass(frozen=True)
class BacktestRange:
    start: str
    end: str | None

    def describe(self) -> str:
        return f"[{self.start}, {self.end or 'latest'})"


def range_for_minute(window_start_ms: int, window_ms: int, grace_ms: int) -> BacktestRange:
    """From the window's start to one window past its close (end + grace), as ``@<epoch ms>`` positions."""
    return BacktestRange(f"@{int(window_start_ms)}", f"@{int(window_start_ms) + 2 * window_ms + grace_ms}")


def parse_range(start: str, end: str) -> BacktestRange:
    """Typed text -> range: empty start means earliest, empty end means latest (the snapshot)."""
    return BacktestRange(start.strip() or "earliest", end.strip() or None)


@dataclass
class BacktestView:
    """What the panel shows: the verdict line, whether it passed, and the per-window diff."""

    verdict: str
    ok: bool
    diff: pl.DataFrame
    details: list[str] = field(default_factory=list)


def run_backtest(settings: Settings, pipeline_file: Path, rng: BacktestRange) -> BacktestView:
    """Run kstream_lab.backtest over ``rng`` with the watched pipeline's aggregation spec."""
    import kstream_lab

    report = kstream_lab.backtest(start=rng.start, end=rng.end, spec=pipeline_file, settings=settings)
    return view_of(report)


def view_of(report: Any) -> BacktestView:
    """Adapt a back-test report (verdict + diff frame) to the panel."""
    diff = report.diff
    if not isinstance(diff, pl.DataFrame):
        diff = pl.from_pandas(diff) if hasattr(diff, "to_dict") else pl.DataFrame(diff)
    verdict = str(report.verdict)
    ok = bool(getattr(report, "ok", verdict.lower().startswith(("match", "pass", "ok", "exact"))))
    details = [str(line) for line in getattr(report, "summary_lines", lambda: [])()] \
        if callable(getattr(report, "summary_lines", None)) else []
    return BacktestView(verdict, ok, diff, details)
