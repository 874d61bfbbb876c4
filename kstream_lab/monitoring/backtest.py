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
    """One window before the picked one to one window past its close, as ``@<epoch ms>`` positions.

    The back-test only judges windows that start after every event time seen before the range
    (kstream_lab.replay.backtest), so the range starts a window early; it ends past window end + grace
    so the records that closed the window are in it.
    """
    ws = int(window_start_ms)
    return BacktestRange(f"@{ws - window_ms}", f"@{ws + 2 * window_ms + grace_ms}")


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
    windows: pl.DataFrame = field(default_factory=pl.DataFrame)


def run_backtest(settings: Settings, pipeline_file: Path, rng: BacktestRange) -> BacktestView:
    """Run kstream_lab.backtest over ``rng`` with the watched pipeline's aggregation spec."""
    import kstream_lab
    from kstream_lab.kafka.admin import ping

    ping(settings, timeout=3.0)  # a down broker is one clear message, not a timeout deep in the replay
    report = kstream_lab.backtest(start=rng.start, end=rng.end, spec=pipeline_file, settings=settings)
    return view_of(report)


def view_of(report: Any) -> BacktestView:
    """Adapt a :class:`kstream_lab.replay.backtest.BacktestReport` to the panel."""
    ok = bool(report.verdict)
    mismatches = report.diff.height
    verdict = "MATCH: every judged window equals the live result" if ok else \
        f"DIFFER: {mismatches} window(s) differ from the live result"
    return BacktestView(verdict, ok, report.diff, list(report.summary()), report.windows)
