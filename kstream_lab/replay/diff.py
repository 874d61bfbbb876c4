"""The per-window diff between back-test and live output, and what-if runs against the live output.

Both sides are keyed by (source_partition, window_start, group columns); the statuses are explained in
``kstream_lab.replay.backtest``. Output columns use the live record's names (``tier``, ``total``), so
the table reads like the sales_aggregates topic: window_start, tier, source_partition, live_total,
backtest_total, delta, live_count, backtest_count, status.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from kstream_lab.aggregations.batch import BatchResult, run_batch
from kstream_lab.aggregations.spec import AggregationSpec


def alias(metric: str) -> str:
    return "total" if metric == "total_cents" else metric


def compare_windows(
    spec: AggregationSpec,
    result: BatchResult,
    live: pl.DataFrame,
    group_columns: dict[str, str],
    warmup: dict[int, int],
    truncated: set[int],
) -> pl.DataFrame:
    """Every window of either side with its status (see the back-test module for the rules)."""
    keys = ["source_partition", "window_start", *spec.group_by]
    metrics = list(spec.metrics)
    bt = result.windows.select(*keys, *metrics, "final").rename({m: f"bt__{m}" for m in metrics})
    lv = live.group_by(keys).agg(*[pl.col(m).first().alias(f"lv__{m}") for m in metrics], pl.len().alias("lv__n"))
    joined = bt.join(lv, on=keys, how="full", coalesce=True, nulls_equal=True)
    wm = pl.col("source_partition").replace_strict(warmup, default=None, return_dtype=pl.Int64)
    in_live, bt_final = pl.col("lv__n").is_not_null(), pl.col("final").fill_null(False)
    equal = pl.all_horizontal([pl.col(f"bt__{m}").eq_missing(pl.col(f"lv__{m}")) for m in metrics])
    cut = pl.col("source_partition").is_in(sorted(truncated))
    status = (
        pl.when(wm.is_not_null() & (pl.col("window_start") <= wm))
        .then(pl.lit("warmup"))
        .when(in_live & (pl.col("lv__n") > 1))
        .then(pl.lit("duplicate_live"))
        .when(in_live & bt_final & equal)
        .then(pl.lit("match"))
        .when(in_live & bt_final)
        .then(pl.lit("differ"))
        .when(in_live & cut)
        .then(pl.lit("open"))
        .when(in_live)
        .then(pl.lit("live_only"))
        .when(bt_final)
        .then(pl.lit("backtest_only"))
        .otherwise(pl.lit("open"))
    )
    first = metrics[0]
    out_metrics = []
    for m in metrics:
        out_metrics += [pl.col(f"lv__{m}").alias(f"live_{alias(m)}"), pl.col(f"bt__{m}").alias(f"backtest_{alias(m)}")]
        if m == first:
            out_metrics.append((pl.col(f"bt__{m}").fill_null(0) - pl.col(f"lv__{m}").fill_null(0)).alias("delta"))
    groups = [pl.col(g).alias(group_columns.get(g, g)) for g in spec.group_by]
    return (
        joined.with_columns(status.alias("status"))
        .sort(["source_partition", "window_start", *spec.group_by], nulls_last=True)
        .select(pl.col("window_start"), *groups, pl.col("source_partition"), *out_metrics, pl.col("status"))
    )


@dataclass
class WhatIf:
    """A modified spec over the same input: how totals per group move against the live output.

    ``by_group`` compares final totals per group column the live output also has (a what-if that
    groups by something else, or by nothing, is compared at that shared level); ``windows`` is the
    per-window diff when window size and grouping are unchanged."""

    spec: AggregationSpec
    base: AggregationSpec
    by_group: pl.DataFrame
    windows: pl.DataFrame | None
    late_base: int
    late_what_if: int

    def summary(self) -> list[str]:
        w, b = self.spec.window, self.base.window
        ws, bs = (x.gap_ms if x.type == "session" else x.size_ms for x in (w, b))
        lines = [
            f"what-if window {(ws or 0) / 1000:g}s grace {w.grace_ms / 1000:g}s "
            f"(live: {(bs or 0) / 1000:g}s / {b.grace_ms / 1000:g}s): late records {self.late_base:,} -> "
            f"{self.late_what_if:,}"
        ]
        for row in self.by_group.iter_rows(named=True):
            groups = [c for c in self.by_group.columns if not c.startswith(("live_", "what_if_"))]
            name = ", ".join(str(row[c]) for c in groups) or "all"
            lines.append(
                f"  {name}: "
                + ", ".join(
                    f"{alias(m)} {row[f'live_{alias(m)}']:,} -> {row[f'what_if_{alias(m)}']:,} "
                    f"({row[f'what_if_{alias(m)}'] - row[f'live_{alias(m)}']:+,})"
                    for m in self.spec.metrics
                    if self.spec.metrics[m].op in ("sum", "count")
                )
            )
        if self.windows is not None:
            moved = self.windows.filter(pl.col("status") != "match").height
            lines.append(f"  {moved} of {self.windows.height} windows differ from live")
        return lines


def what_if(
    base: AggregationSpec,
    spec: AggregationSpec,
    frame: pl.LazyFrame | BatchResult,
    live: pl.DataFrame,
    group_columns: dict[str, str],
    base_result: BatchResult,
) -> WhatIf:
    """Run ``spec`` over the same input (or take its result, computed elsewhere: on Dask); compare
    final totals per group (and per window when comparable)."""
    result = frame if isinstance(frame, BatchResult) else run_batch(spec, frame)
    summable = [m for m, ms in spec.metrics.items() if ms.op in ("sum", "count") and m in live.columns]
    groups = [g for g in spec.group_by if g in live.columns]  # regrouping: compare at the shared level
    finals = result.finals
    if groups != list(spec.group_by):
        finals = finals.group_by(["source_partition", "window_start", *groups]).agg(pl.col(summable).sum())

    def totals(df: pl.DataFrame, prefix: str) -> pl.DataFrame:
        aggs = [pl.col(m).sum().alias(f"{prefix}_{alias(m)}") for m in summable]
        return df.group_by(groups).agg(aggs) if groups else df.select(aggs)

    live_t, new_t = totals(live, "live"), totals(finals, "what_if")
    if groups:
        by_group = live_t.join(new_t, on=groups, how="full", coalesce=True, nulls_equal=True).sort(groups)
    else:
        by_group = pl.concat([live_t, new_t], how="horizontal")
    by_group = by_group.with_columns(pl.exclude(groups).fill_null(0)).rename(
        {g: group_columns.get(g, g) for g in groups}
    )
    same_windows = spec.window.model_copy(update={"grace_ms": 0}) == base.window.model_copy(update={"grace_ms": 0})
    same_keys = same_windows and spec.group_by == base.group_by
    windows = compare_windows(spec, result, live, group_columns, {}, set()) if same_keys else None
    return WhatIf(spec, base, by_group, windows, base_result.late.height, result.late.height)
