"""Sweeps: a grid of window sizes and graces back-tested over one read of the same range.

A data engineer choosing a grace trades completeness (fewer late records) against latency (a window
closes ``grace`` after its end). A sweep answers "what would each grace have cost on this history":
per variant the late records, the final windows, the summable totals over them, and the final
windows that move against the deployed spec over the same range (appear, disappear or change a
metric). The deployed spec's back-test is the reference: when its verdict is MATCH it *is* the live
output. Movement is counted where the windows are comparable (same kind and size: the same window
starts); a variant of another size reports its totals only.

The range is read once (one task per partition on Dask); every variant's plan runs over that frame.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from kstream_lab.aggregations.batch import BatchResult
from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.durations import parse_duration_ms
from kstream_lab.errors import ConfigError

AXES = {"grace": "grace_ms", "window": "size_ms"}
SweepArg = Sequence[str] | Mapping[str, Sequence[str | int]]
MAX_VARIANTS = 64


def parse_sweep(items: SweepArg) -> dict[str, list[int]]:
    """``["grace=0s,10s,30s", "window=1m,2m"]`` (the CLI's form) or ``{"grace": ["0s", 10_000]}`` ->
    {"grace_ms": [0, 10000, 30000], "size_ms": [...]} (values: durations, or ints in ms)."""
    if isinstance(items, str):
        items = [items]
    elif isinstance(items, Mapping):
        items = [f"{axis}={','.join(str(v) for v in values)}" for axis, values in items.items()]
    grid: dict[str, list[int]] = {}
    for item in items:
        axis, sep, values = item.partition("=")
        axis = axis.strip()
        if not sep or axis not in AXES:
            raise ConfigError(
                f"--sweep {item!r}: expected AXIS=V1,V2,... with AXIS one of {', '.join(AXES)}",
                hint="e.g. --sweep grace=0s,10s,30s,2m (repeat --sweep for a grid: --sweep window=1m,2m)",
            )
        try:
            parsed = [parse_duration_ms(v.strip()) for v in values.split(",") if v.strip()]
        except ValueError as exc:
            raise ConfigError(f"--sweep {axis}: {exc}", hint="durations like 0s, 500ms, 10s, 2m, 1h") from None
        if not parsed:
            raise ConfigError(f"--sweep {axis}: no values", hint=f"e.g. --sweep {axis}=0s,10s")
        if axis == "window" and min(parsed) <= 0:
            raise ConfigError(f"--sweep window: sizes must be positive, got {values}")
        grid[AXES[axis]] = list(dict.fromkeys(grid.get(AXES[axis], []) + parsed))
    return grid


def variants(base: AggregationSpec, grid: dict[str, list[int]]) -> list[AggregationSpec]:
    """The cartesian product of the grid, each a copy of ``base`` with that window size and grace."""
    axes = sorted(grid)
    combos = list(itertools.product(*(grid[a] for a in axes)))
    if len(combos) > MAX_VARIANTS:
        raise ConfigError(
            f"--sweep: {len(combos)} variants, at most {MAX_VARIANTS}", hint="sweep fewer values per axis"
        )
    try:
        return [base.with_window(**dict(zip(axes, combo, strict=True))) for combo in combos]
    except ValueError as exc:
        raise ConfigError(f"--sweep: {exc}") from None


@dataclass(frozen=True)
class Sweep:
    """One row per variant: window_ms, grace_ms, late, final_windows, moved (null when incomparable),
    then per summable metric the total over final windows and its delta against the base."""

    base: AggregationSpec
    table: pl.DataFrame

    def summary(self) -> list[str]:
        lines = [f"sweep over {self.table.height} variant(s) (moved: final windows that differ from the deployed spec)"]
        sums = [c for c in self.table.columns if c.startswith("final_") and c != "final_windows"]
        for row in self.table.iter_rows(named=True):
            moved = "n/a (other size)" if row["moved"] is None else f"{row['moved']:,}"
            totals = ", ".join(f"{c[6:]} {row[c]:,} ({row['delta_' + c[6:]]:+,})" for c in sums)
            lines.append(
                f"  window {row['window_ms'] / 1000:g}s grace {row['grace_ms'] / 1000:g}s: late {row['late']:,}, "
                f"final windows {row['final_windows']:,}, moved {moved}; {totals}"
            )
        return lines


def _window_ms(spec: AggregationSpec) -> int:
    w = spec.window
    return int((w.gap_ms if w.type == "session" else w.size_ms) or 0)


def _summable(spec: AggregationSpec) -> list[str]:
    return [m for m, ms in spec.metrics.items() if ms.op in ("sum", "count")]


def _moved(base: AggregationSpec, base_finals: pl.DataFrame, spec: AggregationSpec, finals: pl.DataFrame) -> int | None:
    """Final windows present on one side only or with another metric value; None when incomparable."""
    if spec.window.model_copy(update={"grace_ms": 0}) != base.window.model_copy(update={"grace_ms": 0}):
        return None
    keys = ["source_partition", "window_start", *spec.group_by]
    metrics = list(spec.metrics)
    joined = base_finals.select(*keys, *metrics).join(
        finals.select(*keys, *metrics), on=keys, how="full", coalesce=True, nulls_equal=True, suffix="__v"
    )
    same = pl.all_horizontal([pl.col(m).eq_missing(pl.col(f"{m}__v")) for m in metrics])
    return int(joined.filter(~same).height)


def sweep_table(
    base: AggregationSpec, base_result: BatchResult, specs: list[AggregationSpec], results: list[BatchResult]
) -> Sweep:
    """The sweep's table from each variant's batch result over the same input as ``base_result``."""
    summable = _summable(base)
    base_finals = base_result.finals

    def totals(finals: pl.DataFrame) -> dict[str, int]:
        return {m: int(finals[m].sum() or 0) for m in summable}

    reference = totals(base_finals)
    rows = []
    for spec, result in zip(specs, results, strict=True):
        finals = result.finals
        t = totals(finals)
        rows.append(
            {
                "window_ms": _window_ms(spec),
                "grace_ms": spec.window.grace_ms,
                "late": result.late.height,
                "final_windows": finals.height,
                "moved": _moved(base, base_finals, spec, finals),
                **{f"final_{m}": t[m] for m in summable},
                **{f"delta_{m}": t[m] - reference[m] for m in summable},
            }
        )
    schema = {
        "window_ms": pl.Int64,
        "grace_ms": pl.Int64,
        "late": pl.Int64,
        "final_windows": pl.Int64,
        "moved": pl.Int64,
        **{f"final_{m}": pl.Int64 for m in summable},
        **{f"delta_{m}": pl.Int64 for m in summable},
    }
    return Sweep(base, pl.DataFrame(rows, schema=schema))


__all__ = ["Sweep", "SweepArg", "parse_sweep", "sweep_table", "variants"]
