"""The batch engine: the aggregation spec compiled to a vectorised Polars plan (docs/semantics.md §5).

Per source partition, in offset order: the watermark before a record is the cumulative max of
event time over the *preceding* records (every record, filtered or not); the filter and derived
fields are evaluated over the frame (kstream_lab.aggregations.inputs, the same compiled expressions
the live aggregator evaluates per batch); a record is late when every window that could hold it had
closed before it came (§7.1); the rest is folded into each of its windows that was still open when
it came, and grouped by (partition, window, group_by). A window is final when the partition's last
watermark has reached ``window_end + grace`` -- exactly when the streaming engine (fold.py) would
have emitted it with ``final=True``. Works on DataFrames and LazyFrames alike, so back-tests over
Parquet larger than memory stream through Polars.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from kstream_lab.aggregations.inputs import KEEP, compile_inputs
from kstream_lab.aggregations.spec import AggregationSpec, MetricSpec

PARTITION, OFFSET = "partition", "offset"
WM = "watermark_before"


@dataclass(frozen=True)
class BatchResult:
    """``windows`` has one row per (partition, window, group) with ``final``; ``late`` the late records."""

    windows: pl.DataFrame
    late: pl.DataFrame

    @property
    def finals(self) -> pl.DataFrame:
        return self.windows.filter(pl.col("final"))


def _metric_expr(name: str, metric: MetricSpec, offset_col: str = OFFSET) -> pl.Expr:
    if metric.op == "count":
        return pl.len().cast(pl.Int64).alias(name)
    assert metric.field is not None  # every op but count names a field
    col = pl.col(metric.field)
    if metric.op == "mean":
        s, n = col.sum().cast(pl.Int64), col.count().cast(pl.Int64)
        return pl.when(n == 0).then(None).otherwise((2 * s + n) // (2 * n)).cast(pl.Int64).alias(name)
    if metric.op == "count_distinct":
        return col.drop_nulls().n_unique().cast(pl.Int64).alias(name)
    if metric.op in ("first", "last"):
        ordered = col.sort_by(offset_col).drop_nulls()
        return (ordered.first() if metric.op == "first" else ordered.last()).cast(pl.Int64).alias(name)
    agg = {"sum": col.sum(), "min": col.min(), "max": col.max()}[metric.op]
    return agg.cast(pl.Int64).alias(name)


def annotate(
    spec: AggregationSpec, frame: pl.DataFrame | pl.LazyFrame, partition_col: str = PARTITION, offset_col: str = OFFSET
) -> pl.LazyFrame:
    """The watermark before each record, the prepared inputs (derived fields, ``KEEP``) and the late
    flag; for tumbling windows also window_start/window_end."""
    w = spec.window
    size, grace = w.size_ms, w.grace_ms
    ts = pl.col(spec.time_field).cast(pl.Int64)
    # The watermark is ordered by offset inside each partition's window (``over(order_by=)``) rather
    # than by sorting the whole frame first: the sort gathered every column and cost more than the
    # rest of the plan together (bench/bench_backtest.py).
    lazy = frame.lazy().with_columns(ts.cum_max().shift(1).over(partition_col, order_by=offset_col).alias(WM))
    compiled = compile_inputs(spec)
    keep = pl.lit(True)
    if not compiled.trivial:
        lazy, keep = compiled.prepare(lazy), pl.col(KEEP)
    wm = pl.col(WM)
    if w.type == "tumbling":
        lazy = lazy.with_columns((ts - ts.mod(size)).alias("window_start")).with_columns(
            (pl.col("window_start") + size).alias("window_end")
        )
        closed = pl.col("window_start") + size + grace <= wm
    elif w.type == "hopping":
        closed = ts - ts.mod(w.hop_ms) + size + grace <= wm
    elif w.type == "sliding":
        closed = ts + size + 1 + grace <= wm
    else:
        closed = ts + grace <= wm
    late = wm.is_not_null() & closed
    return lazy.with_columns((late & keep if not compiled.trivial else late).alias("late"))


def run_batch(
    spec: AggregationSpec,
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    partition_col: str = PARTITION,
    offset_col: str = OFFSET,
) -> BatchResult:
    """Aggregate a replayed range exactly as the live aggregator would have."""
    w = spec.window
    marked = annotate(spec, frame, partition_col, offset_col)
    watermarks = marked.group_by(partition_col).agg(
        pl.col(spec.time_field).cast(pl.Int64).max().alias("final_watermark")
    )
    compiled = compile_inputs(spec)
    ontime = marked.filter(~pl.col("late"))
    if not compiled.trivial:
        ontime = ontime.filter(pl.col(KEEP))
    metrics = [_metric_expr(n, m, offset_col) for n, m in spec.metrics.items()]
    keys = [partition_col, "window_start", *spec.group_by]
    if w.type == "session":
        grouped = _sessions(spec, ontime, partition_col, offset_col, metrics)
        end = pl.col("__last") + (w.gap_ms or 0)
    else:
        length = w.size_ms + 1 if w.type == "sliding" else w.size_ms
        rows = ontime
        if w.type == "hopping":
            rows = _hopping(spec, ontime, partition_col)
        elif w.type == "sliding":
            rows = _sliding(spec, ontime, partition_col)
        grouped = rows.group_by(keys).agg(*metrics)
        end = pl.col("window_start") + length
    windows = (
        grouped.join(watermarks, on=partition_col, how="left")
        .with_columns(end.alias("window_end"))
        .with_columns((pl.col("window_end") + w.grace_ms <= pl.col("final_watermark")).alias("final"))
        .rename({partition_col: "source_partition"})
        .select("source_partition", "window_start", "window_end", *spec.group_by, *spec.metrics, "final")
        .with_columns(pl.col("source_partition").cast(pl.Int32))
        .sort(["source_partition", "window_start", *spec.group_by], nulls_last=True)
    )
    late = marked.filter(pl.col("late")).drop("late", KEEP, strict=False).sort([partition_col, offset_col])
    windows_df, late_df = pl.collect_all([windows, late])
    return BatchResult(windows_df, late_df)


def _open_at_arrival(start: pl.Expr, length: int, grace: int) -> pl.Expr:
    """The window starting at ``start`` had not closed when the record came (per window, §7.1)."""
    return pl.col(WM).is_null() | (start + length + grace > pl.col(WM))


def _hopping(spec: AggregationSpec, ontime: pl.LazyFrame, partition_col: str) -> pl.LazyFrame:
    """One row per (record, hopping window holding it that was open when it came)."""
    w = spec.window
    size, hop = w.size_ms, w.hop_ms
    ts = pl.col(spec.time_field).cast(pl.Int64)
    per_record = -(-size // hop)  # windows holding a record: at most ceil(size / advance)
    return (
        ontime.with_columns(pl.int_ranges(0, per_record, dtype=pl.Int64).alias("__k"))
        .explode("__k")
        .with_columns((ts - ts.mod(hop) - pl.col("__k") * hop).alias("window_start"))
        .filter((pl.col("window_start") + size > ts) & _open_at_arrival(pl.col("window_start"), size, w.grace_ms))
    )


def _sliding(spec: AggregationSpec, ontime: pl.LazyFrame, partition_col: str) -> pl.LazyFrame:
    """Kafka Streams' sliding windows: every on-time record generates [t - size, t] and [t + 1, t + 1 +
    size] where still open when it came; a generated window holds each record in its range for which
    it was open when that record came, and exists when it holds one."""
    w = spec.window
    size, length, grace = w.size_ms, w.size_ms + 1, w.grace_ms
    ts = pl.col(spec.time_field).cast(pl.Int64)
    keys = [partition_col, *spec.group_by]
    generated = pl.concat(
        [
            ontime.select(*keys, WM, (ts - size).alias("window_start")),
            ontime.select(*keys, WM, (ts + 1).alias("window_start")),
        ]
    )
    starts = (
        generated.filter(_open_at_arrival(pl.col("window_start"), length, grace)).select(*keys, "window_start").unique()
    )
    return ontime.join(starts, on=keys, how="inner", nulls_equal=True).filter(
        (pl.col("window_start") <= ts)
        & (ts <= pl.col("window_start") + size)
        & _open_at_arrival(pl.col("window_start"), length, grace)
    )


def _sessions(
    spec: AggregationSpec, ontime: pl.LazyFrame, partition_col: str, offset_col: str, metrics: list[pl.Expr]
) -> pl.LazyFrame:
    """Session windows: a group's on-time records in event-time order, split where two consecutive
    ones are more than ``gap`` apart (§7.3)."""
    gap = spec.window.gap_ms
    ts = pl.col(spec.time_field).cast(pl.Int64)
    keys = [partition_col, *spec.group_by]
    prev = ts.shift(1).over(keys)
    starts_new = (prev.is_null() | (ts - prev > gap)).cast(pl.Int64)
    return (
        ontime.sort([*keys, spec.time_field, offset_col], nulls_last=True)
        .with_columns(starts_new.cum_sum().over(keys).alias("__session"))
        .group_by([*keys, "__session"])
        .agg(ts.min().alias("window_start"), ts.max().alias("__last"), *metrics)
    )
