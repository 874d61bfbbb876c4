"""Back-tests: re-run the aggregation over replayed input and diff it against the live final windows.

What is compared (docs/semantics.md §5):

* **End.** By default the range ends at the aggregator group's committed offsets on its input: under
  exactly-once those offsets and the aggregator's outputs commit in one transaction, so the live
  ``final=true`` records are exactly the windows closed by the records before them. The committed
  offsets are read before and after the live output's end is snapshotted, and again until both
  agree, so a running aggregator cannot slip a transaction in between. An explicit ``end`` is capped
  at the committed offsets; if it is earlier, windows that the live side closed but the range does
  not are reported as ``open`` and not judged.
* **Start.** State before ``start`` matters: the watermark carries over (records after ``start`` may
  be late only because of earlier ones) and windows may already hold earlier records. The rule: a
  sub-range starts from empty state, and only windows that start *after* every event time seen in
  the partition before ``start`` (read from the topic, time field only) are judged -- for those the
  earlier records can neither contribute nor make a record late nor close the window. The other
  windows are reported with status ``warmup``.
* **Judged statuses:** ``match``; ``differ`` (metrics differ); ``live_only`` (live final, back-test
  not final or absent); ``backtest_only`` (back-test final, no live record); ``duplicate_live`` (the
  live side emitted a window final more than once). The verdict is True when none of these but
  ``match`` occur. ``report.diff`` holds the judged mismatches, ``report.windows`` every window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from kstream_lab.aggregations.batch import BatchResult, run_batch
from kstream_lab.aggregations.inputs import compile_inputs
from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.durations import parse_duration_ms
from kstream_lab.errors import ConfigError
from kstream_lab.kafka.admin import committed_offsets
from kstream_lab.pipeline_spec import AggregatorConfig, load_pipeline
from kstream_lab.replay.diff import WhatIf, compare_windows, what_if
from kstream_lab.replay.event_range import event_offsets, event_time_ms
from kstream_lab.replay.parquet import RANGE_FILE, read_manifest, scan_export
from kstream_lab.replay.reader import Position, RangeError, ReplayRange, read_range, resolve_range
from kstream_lab.replay.sweep import Sweep, SweepArg, parse_sweep, sweep_table, variants
from kstream_lab.settings import Settings

MISMATCH = ("differ", "live_only", "backtest_only", "duplicate_live")


@dataclass(frozen=True)
class BacktestRequest:
    settings: Settings
    spec: AggregationSpec
    aggregator: AggregatorConfig
    start: Position
    end: Position | None
    source: str | Path
    what_if_spec: AggregationSpec | None = None
    cluster: Any = None  # a Dask scheduler address or distributed.Client: one task per partition
    sweep_specs: tuple[AggregationSpec, ...] = ()  # variants run over the same read (kstream_lab.replay.sweep)
    event_range: tuple[int, int] | None = None  # judge windows starting in [from, to) ms (replay.event_range)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        spec: AggregationSpec | str | Path | None,
        start: Position,
        end: Position | None,
        window: str | int | None = None,
        grace: str | int | None = None,
        group_by: list[str] | None = None,
        group_id: str | None = None,
        live_topic: str | None = None,
        source: str | Path | None = None,
        cluster: Any = None,
        sweep: SweepArg | None = None,
        what_if: AggregationSpec | None = None,
        event_from: str | int | datetime | None = None,
        event_to: str | int | datetime | None = None,
    ) -> BacktestRequest:
        if isinstance(spec, AggregationSpec):
            agg, cfg = spec, AggregatorConfig(input=spec.source)
        else:
            pipeline = load_pipeline(spec or settings.pipeline_file)
            cfg = pipeline.workers.aggregator
            agg = pipeline.aggregation(cfg.aggregation)
        overrides = {k: v for k, v in (("group_id", group_id), ("output", live_topic)) if v}
        cfg = cfg.model_copy(update=overrides)
        whatif = None
        if window is not None or grace is not None or group_by is not None:
            try:
                whatif = agg.with_window(
                    size_ms=None if window is None else parse_duration_ms(window),
                    grace_ms=None if grace is None else parse_duration_ms(grace),
                )
            except ValueError as exc:
                raise ConfigError(f"bad what-if window: {exc}") from None
            if group_by is not None:
                whatif = whatif.model_copy(update={"group_by": tuple(group_by)})
        if what_if is not None:
            if whatif is not None:
                raise ConfigError("give a what-if spec or --window/--grace/--group-by, not both")
            if what_if.source != agg.source:
                raise ConfigError(
                    f"the what-if aggregation reads {what_if.source!r}, the deployed one {agg.source!r}",
                    hint="a what-if runs over the deployed aggregation's input",
                )
            whatif = what_if
        sweeps = tuple(variants(agg, parse_sweep(sweep))) if sweep else ()
        events = None
        if event_from is not None or event_to is not None:
            if event_from is None:
                raise ConfigError(
                    "--event-to needs --event-from", hint="e.g. --event-from '2h ago' --event-to '1h ago'"
                )
            events = (event_time_ms(event_from, "--event-from"), event_time_ms(event_to or "now", "--event-to"))
            if events[1] <= events[0]:
                raise ConfigError(f"--event-to ({event_to}) must be after --event-from ({event_from})")
        return cls(settings, agg, cfg, start, end, source or cfg.input, whatif, cluster, sweeps, events)


@dataclass
class BacktestReport:
    """Every window with its status; ``diff`` the judged mismatches; ``verdict`` True when there are none."""

    windows: pl.DataFrame
    spec: AggregationSpec
    ranges: dict[int, tuple[int, int]]
    records: int
    late: int
    live_finals: int
    seconds: float
    what_if: WhatIf | None = None
    notes: list[str] = field(default_factory=list)
    sweep: Sweep | None = None

    @property
    def diff(self) -> pl.DataFrame:
        return self.windows.filter(pl.col("status").is_in(MISMATCH))

    @property
    def verdict(self) -> bool:
        return self.diff.height == 0

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.windows.group_by("status").len().sort("status").iter_rows())

    def summary(self) -> list[str]:
        parts = ", ".join(f"p{p}=[{s},{e})" for p, (s, e) in sorted(self.ranges.items()))
        counts = ", ".join(f"{k}={v}" for k, v in self.counts.items()) or "no windows"
        lines = [
            f"back-test of {self.spec.name or 'aggregation'} over {parts}: {self.records:,} records, "
            f"{self.late:,} late, {self.live_finals:,} live final windows ({self.seconds:.1f}s)",
            f"windows: {counts}",
            *self.notes,
            f"verdict: {'MATCH' if self.verdict else 'DIFFER'} ({self.diff.height} mismatching window(s))",
        ]
        if self.what_if is not None:
            lines += self.what_if.summary()
        if self.sweep is not None:
            lines += self.sweep.summary()
        return lines


def run_backtest(req: BacktestRequest, *, live: pl.DataFrame | None = None) -> BacktestReport:
    t0 = time.monotonic()
    notes: list[str] = []
    export = None  # (frame, ranges, topic) of a Parquet export
    if isinstance(req.source, Path) or (Path(str(req.source)) / RANGE_FILE).exists():
        if req.cluster is not None:
            raise ConfigError(
                "--dask reads the input from Kafka, one task per partition; a Parquet export is read in one process",
                hint="drop --dask, or point --source at the topic",
            )
        export = _from_parquet(Path(req.source))
    topic = export[2] if export else str(req.source)
    committed, live_frame = _live_side(req, topic, live, notes)
    if export is None:
        rng = _input_range(req, topic, committed, notes)
        if req.event_range is not None:
            times = read_range(req.settings, rng, columns=_time_columns(req))
            rng = _sub_range(rng, _event_offsets(req, times, rng.as_offsets(), notes))
        ranges = rng.as_offsets()
        computed = compute_results(req, rng)
    else:
        frame, ranges = _cap_export(export[0], export[1], committed, notes)
        if req.event_range is not None:
            ranges = _event_offsets(req, frame.select(_time_columns(req)).collect(), ranges, notes)
            frame = _within(frame, ranges)
        computed = compute_results(req, frame)
    result, whatif_result = computed.base, computed.what_if
    truncated = {p for p, (_s, e) in ranges.items() if committed is not None and e < committed.get(p, 0)}
    warmup = _warmup_bounds(req, topic, ranges, notes)
    live_finals = _live_finals(live_frame, req.spec, req.aggregator, ranges)
    windows = compare_windows(req.spec, result, live_finals, req.aggregator.group_columns, warmup, truncated)
    if req.event_range is not None:
        windows = windows.filter(pl.col("window_start").is_between(req.event_range[0], req.event_range[1] - 1))
    whatif = (
        what_if(req.spec, req.what_if_spec, whatif_result, live_finals, req.aggregator.group_columns, result)
        if req.what_if_spec is not None and whatif_result is not None
        else None
    )
    count = _count_metric(req.spec)
    if req.spec.window.type != "tumbling" or req.spec.filter is not None:  # a record can be in several windows, or none
        records = computed.rows()
    else:
        records = int(result.late.height + result.windows.select(pl.col(count)).sum().item()) if count else 0
    sweep = sweep_table(req.spec, result, list(req.sweep_specs), computed.sweep) if req.sweep_specs else None
    return BacktestReport(
        windows,
        req.spec,
        ranges,
        records,
        result.late.height,
        live_finals.height,
        time.monotonic() - t0,
        whatif,
        notes,
        sweep,
    )


@dataclass(frozen=True)
class Computed:
    """The batch results over one read of the input, and its row count (lazy: counting a lazy
    Parquet scan costs a pass)."""

    base: BatchResult
    what_if: BatchResult | None
    sweep: list[BatchResult]
    rows: Callable[[], int]


def compute_results(req: BacktestRequest, source: ReplayRange | pl.DataFrame | pl.LazyFrame) -> Computed:
    """The spec, the what-if spec and every sweep variant over the input, read once: in this
    process, or one task per partition on Dask."""
    cols = _needed_columns(req.spec, req.what_if_spec)
    extra = [req.what_if_spec] if req.what_if_spec is not None else []
    specs = [req.spec, *extra, *req.sweep_specs]
    if isinstance(source, ReplayRange) and req.cluster is not None:
        from kstream_lab.replay.dask_backtest import run_on_cluster

        results, n = run_on_cluster(req.cluster, req.settings, source, cols, specs)
        rows: Callable[[], int] = lambda: n  # noqa: E731
    else:
        frame = (
            read_range(req.settings, source, value_format="auto", columns=cols)
            if isinstance(source, ReplayRange)
            else source
        )
        lazy = frame.lazy().select(cols)
        results = [run_batch(spec, lazy) for spec in specs]
        rows = lambda: int(lazy.select(pl.len()).collect().item())  # noqa: E731
    return Computed(results[0], results[1] if extra else None, list(results[1 + len(extra) :]), rows)


def _time_columns(req: BacktestRequest) -> list[str]:
    return ["partition", "offset", req.spec.time_field]


def _event_offsets(
    req: BacktestRequest, times: pl.DataFrame, ranges: dict[int, tuple[int, int]], notes: list[str]
) -> dict[int, tuple[int, int]]:
    """The offsets deciding the windows that start in the event-time range (replay.event_range)."""
    assert req.event_range is not None
    t_from, t_to = req.event_range
    out = event_offsets(times, req.spec, t_from, t_to, ranges)
    parts = ", ".join(f"p{p}=[{s},{e})" for p, (s, e) in sorted(out.items()))
    iso = [datetime.fromtimestamp(t / 1000, UTC).isoformat(timespec="milliseconds") for t in (t_from, t_to)]
    notes.append(f"note: windows starting in [{iso[0]}, {iso[1]}) judged; the offsets deciding them: {parts}")
    return out


def _sub_range(rng: ReplayRange, ranges: dict[int, tuple[int, int]]) -> ReplayRange:
    parts = {p: replace(r, start=ranges[p][0], end=ranges[p][1]) for p, r in rng.partitions.items()}
    return ReplayRange(rng.topic, parts, rng.snapshot_ms)


def _within(frame: pl.LazyFrame, ranges: dict[int, tuple[int, int]]) -> pl.LazyFrame:
    starts = {p: s for p, (s, _e) in ranges.items()}
    ends = {p: e for p, (_s, e) in ranges.items()}
    part = pl.col("partition")
    lo = part.replace_strict(starts, default=0, return_dtype=pl.Int64)
    hi = part.replace_strict(ends, default=0, return_dtype=pl.Int64)
    return frame.filter((pl.col("offset") >= lo) & (pl.col("offset") < hi))


def _count_metric(spec: AggregationSpec) -> str | None:
    return next((n for n, m in spec.metrics.items() if m.op == "count"), None)


def _needed_columns(spec: AggregationSpec, extra: AggregationSpec | None = None) -> list[str]:
    """The record fields the aggregation (and a what-if) reads; derived fields are computed from them."""
    cols = ["partition", "offset", *compile_inputs(spec).source_fields]
    if extra is not None:
        cols += compile_inputs(extra).source_fields
    return list(dict.fromkeys(cols))


def _live_side(
    req: BacktestRequest, topic: str, live: pl.DataFrame | None, notes: list[str]
) -> tuple[dict[int, int] | None, pl.DataFrame]:
    """The aggregator's committed input offsets and its output, consistent with each other."""
    settings, cfg = req.settings, req.aggregator
    parts = sorted(resolve_range(settings, topic, "latest", "latest").partitions)
    if live is not None:
        committed = committed_offsets(settings, cfg.group_id, topic, parts) or None
        return committed, live
    for _attempt in range(10):
        before = committed_offsets(settings, cfg.group_id, topic, parts)
        out_rng = resolve_range(settings, cfg.output)
        after = committed_offsets(settings, cfg.group_id, topic, parts)
        if before == after:
            break
        time.sleep(0.2)
    else:
        notes.append("note: the aggregator kept committing while the live output was snapshotted")
    if not after and req.end is None:
        raise RangeError(
            f"aggregator group {cfg.group_id!r} has no committed offsets on {topic}",
            hint="run the aggregator first, pass --group, or give an explicit end",
        )
    return (after or None), read_range(settings, out_rng, value_format="auto")


def _input_range(req: BacktestRequest, topic: str, committed: dict[int, int] | None, notes: list[str]) -> ReplayRange:
    rng = resolve_range(req.settings, topic, req.start, req.end if req.end is not None else "latest")
    if committed is None:
        return rng
    parts = {}
    for p, r in rng.partitions.items():
        cap = committed.get(p, r.start)  # a partition the group never committed: nothing processed yet
        if req.end is not None and r.end > cap:
            notes.append(f"note: p{p} end capped at the aggregator's committed offset {cap}")
        parts[p] = replace(r, end=max(r.start, min(r.end, cap)))
    return ReplayRange(rng.topic, parts, rng.snapshot_ms)


def _warmup_bounds(
    req: BacktestRequest, topic: str, ranges: dict[int, tuple[int, int]], notes: list[str]
) -> dict[int, int]:
    """Max event time per partition before the range's start (only where the range starts late)."""
    bounds = resolve_range(req.settings, topic, "earliest", "latest", sorted(ranges))
    prefix = {p: (bounds.partitions[p].low, s) for p, (s, _e) in ranges.items() if s > bounds.partitions[p].low}
    if not prefix:
        return {}
    if any(bounds.partitions[p].low > 0 for p in prefix):
        notes.append(
            "note: the topic's first offsets were deleted by retention; warm-up bounds start at "
            "the first retained offset"
        )
    rng = ReplayRange(
        topic, {p: replace(bounds.partitions[p], start=s, end=e) for p, (s, e) in prefix.items()}, bounds.snapshot_ms
    )
    tf = req.spec.time_field
    before = read_range(req.settings, rng, columns=["partition", tf])
    out = dict(before.group_by("partition").agg(pl.col(tf).cast(pl.Int64).max()).iter_rows())
    notes.append(
        f"note: sub-range start; windows starting at or before the prior watermark are 'warmup' "
        f"({', '.join(f'p{p}<={t}' for p, t in sorted(out.items()))})"
    )
    return out


def _cap_export(
    frame: pl.LazyFrame, ranges: dict[int, tuple[int, int]], committed: dict[int, int] | None, notes: list[str]
) -> tuple[pl.LazyFrame, dict[int, tuple[int, int]]]:
    """An export may reach past what the aggregator has processed: judge only up to its offsets."""
    if committed is None:
        return frame, ranges
    caps = {p: max(s, min(e, committed.get(p, s))) for p, (s, e) in ranges.items()}
    if caps == {p: e for p, (_s, e) in ranges.items()}:
        return frame, ranges
    notes.append("note: the export reaches past the aggregator's committed offsets; capped at them")
    cap = pl.col("partition").replace_strict(caps, default=0, return_dtype=pl.Int64)
    return frame.filter(pl.col("offset") < cap), {p: (s, caps[p]) for p, (s, _e) in ranges.items()}


def _from_parquet(path: Path) -> tuple[pl.LazyFrame, dict[int, tuple[int, int]], str]:
    manifest = read_manifest(path)
    if not manifest:
        raise ConfigError(
            f"{path} is not a replay export (no _range.json)",
            hint="write one with `kstream-lab replay TOPIC --out DIR`",
        )
    ranges = {int(p): (r["start"], r["end"]) for p, r in manifest["partitions"].items()}
    return scan_export(path), ranges, manifest["topic"]


def _live_finals(
    live: pl.DataFrame, spec: AggregationSpec, cfg: AggregatorConfig, ranges: dict[int, tuple[int, int]]
) -> pl.DataFrame:
    """Live final records in the back-test's column names (tier -> loyalty_tier, total -> total_cents)."""
    back = {v: k for k, v in cfg.group_columns.items() if k in spec.group_by}
    df = live.rename({k: v for k, v in back.items() if k in live.columns})
    if "total_cents" in spec.metrics and "total_cents" not in df.columns and "total" in df.columns:
        df = df.rename({"total": "total_cents"})
    need = ["source_partition", "window_start", *spec.group_by, *spec.metrics, "final"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ConfigError(
            f"live output {cfg.output} lacks column(s) {missing}", hint="is it the aggregator's output topic?"
        )
    return (
        df.filter(pl.col("final") & pl.col("source_partition").is_in(list(ranges)))
        .select(need[:-1])
        .with_columns(
            pl.col("source_partition").cast(pl.Int32),
            pl.col("window_start").cast(pl.Int64),
            *[pl.col(m).cast(pl.Int64) for m in spec.metrics],
        )
    )


__all__ = [
    "MISMATCH",
    "BacktestReport",
    "BacktestRequest",
    "BatchResult",
    "Computed",
    "compute_results",
    "run_backtest",
]
