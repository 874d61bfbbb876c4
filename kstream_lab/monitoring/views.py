"""One refresh of each dashboard panel as a plain value: fetch everything first, then draw in one go.

The page draws the previous refresh's view at once and replaces it when the new one is ready, so
nothing on screen goes stale (Streamlit fades elements a fragment has not redrawn within half a
second) while the broker and workers are being asked. Keeping the fetching here also keeps the page
free of logic: every empty state is decided here, as a message, never as an exception.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from kstream_lab.errors import BrokerError, KStreamLabError
from kstream_lab.monitoring import DashboardContext
from kstream_lab.monitoring.health import (
    HealthReport,
    collect_health,
    count_records,
    latest_dead_letters,
)
from kstream_lab.monitoring.sales import SinkMissing, SinkUnavailable, load_minute_totals
from kstream_lab.monitoring.scrape import counters_table, scrape


@dataclass(frozen=True)
class SalesView:
    """Per-minute totals, or the reason there are none (``level`` info/warning)."""

    totals: pl.DataFrame | None
    message: str | None = None
    level: str = "info"


def sales_view(ctx: DashboardContext, last_minutes: int) -> SalesView:
    try:
        totals = load_minute_totals(ctx.sink, last_minutes=last_minutes, window_ms=ctx.window_ms)
    except SinkMissing as exc:
        return SalesView(None, f"No sales yet: {exc}.")
    except SinkUnavailable as exc:
        return SalesView(None, f"The sink cannot be read right now: {exc}", "warning")
    if totals.is_empty():
        return SalesView(
            None,
            "No sales aggregates yet: the sink is running but has not written a window. "
            "Produce orders (`kstream-lab produce-orders`) and they appear here within seconds.",
        )
    return SalesView(totals)


@dataclass
class HealthView:
    """Broker-side health (or why it is unknown), record counts, latest dead letters and worker metrics."""

    workers: list[dict]
    report: HealthReport | None = None
    problem: str | None = None
    problem_level: str = "error"
    dlq_count: int | None = None
    late_count: int | None = None
    dead_letters: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def health_view(ctx: DashboardContext, state: MutableMapping[str, Any], *, dead_letters: int = 10) -> HealthView:
    """Refresh health; ``state`` (the session) carries the last offsets, counts and DLQ rows between calls."""
    view = HealthView(counters_table(scrape(ctx.endpoints, timeout_s=2.0)))
    try:
        view.report = collect_health(ctx.settings, ctx.topics, state.get("offsets"))
    except BrokerError as exc:
        view.problem = f"Broker unreachable: {exc}"
        return view
    except Exception as exc:  # a transient Kafka error mid-refresh: say so, the next refresh tries again
        view.problem, view.problem_level = f"Health check failed this refresh: {type(exc).__name__}: {exc}", "warning"
        return view
    state["offsets"] = snap = view.report.snapshot
    view.dlq_count = _count(ctx, ctx.topics.dlq, snap.offsets, state, view.warnings)
    view.late_count = _count(ctx, ctx.topics.late, snap.offsets, state, view.warnings)
    if view.dlq_count:
        view.dead_letters = _dead_letters(ctx, snap.offsets[ctx.topics.dlq], state, dead_letters, view.warnings)
    return view


def _count(
    ctx: DashboardContext, topic: str, offsets: dict, state: MutableMapping[str, Any], warnings: list[str]
) -> int | None:
    if topic not in offsets:
        return None
    key = f"count:{topic}"
    try:
        state[key] = count_records(ctx.settings, topic, offsets[topic], state.get(key))
    except KStreamLabError as exc:
        warnings.append(f"Cannot count the records of {topic}: {exc}")
        return None
    return state[key].records


def _dead_letters(
    ctx: DashboardContext, offsets: list, state: MutableMapping[str, Any], n: int, warnings: list[str]
) -> list[dict]:
    """Latest DLQ reasons, re-read only when the DLQ grew since the last refresh."""
    key = tuple((p.partition, p.high) for p in offsets)
    if state.get("dlq_key") != key:
        try:
            state["dlq_rows"] = latest_dead_letters(ctx.settings, ctx.topics.dlq, offsets, n=n)
            state["dlq_key"] = key
        except KStreamLabError as exc:
            warnings.append(f"Cannot read the dead letters: {exc}")
    return state.get("dlq_rows", [])
