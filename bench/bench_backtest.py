"""Back-test of 10M events from Parquet: the batch engine vs the same group-by without late handling,
and a sweep of 8 graces over the same files beside the single back-test.

The events are synthetic but shaped like orders_enriched (6 partitions, offsets, event times with
3 s of disorder and 1% late records, 4 tiers, cents), written as a replay export would be. Both
plans run as lazy scans over the files, alternating, median of KSTREAM_BENCH_REPEAT runs. The ratio
is the price of docs/semantics.md §5's fidelity (watermark ordered by offset per partition, late
filter, finality) over a plain windowed group-by. Size with KSTREAM_BENCH_EVENTS (default 10M).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from kstream_lab.aggregations.batch import run_batch
from kstream_lab.pipeline_spec import load_pipeline
from kstream_lab.replay.sweep import parse_sweep, sweep_table, variants

ROOT = Path(__file__).resolve().parents[1]
EVENTS = int(os.environ.get("KSTREAM_BENCH_EVENTS", "10000000"))
REPEAT = int(os.environ.get("KSTREAM_BENCH_REPEAT", "5"))
PARTITIONS = 6
SWEEP_GRACES = ["0s", "5s", "10s", "30s", "1m", "2m", "5m", "10m"]


def write_events(out: Path) -> None:
    rng = np.random.default_rng(7)
    per = EVENTS // PARTITIONS
    for p in range(PARTITIONS):
        offsets = np.arange(per, dtype=np.int64)
        ts = 1_700_000_000_000 + offsets * 20 - rng.integers(0, 3_000, per)
        late = rng.random(per) < 0.01
        ts[late] -= 70_000 + rng.integers(0, 120_000, late.sum())
        frame = pl.DataFrame(
            {
                "partition": np.full(per, p, dtype=np.int32),
                "offset": offsets,
                "timestamp": ts,
                "loyalty_tier": pl.Series(rng.choice(["bronze", "silver", "gold", "platinum"], per)),
                "total_cents": rng.integers(50, 100_000, per),
            }
        )
        folder = out / f"partition-{p}"
        folder.mkdir(parents=True)
        for i, chunk in enumerate(frame.iter_slices(500_000)):
            chunk.write_parquet(folder / f"part-{i * 500_000:020d}.parquet")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    spec = load_pipeline(ROOT / "pipelines/orders.yaml").aggregation()
    size = spec.window.size_ms
    with tempfile.TemporaryDirectory(prefix="kstream-bench-bt-") as tmp:
        write_events(Path(tmp))
        files = sorted(Path(tmp).glob("partition-*/*.parquet"))

        def scan() -> pl.LazyFrame:
            return pl.scan_parquet(files)

        def backtest() -> None:
            run_batch(spec, scan())

        def plain() -> None:
            ts = pl.col("timestamp")
            (
                scan()
                .with_columns((ts - ts.mod(size)).alias("window_start"))
                .group_by("partition", "window_start", "loyalty_tier")
                .agg(pl.col("total_cents").sum(), pl.len().alias("count"))
                .collect()
            )

        variants_ = variants(spec, parse_sweep([f"grace={','.join(SWEEP_GRACES)}"]))

        def sweep() -> None:  # what `backtest --sweep` runs over an export: one lazy plan per variant
            base = run_batch(spec, scan())
            sweep_table(spec, base, variants_, [run_batch(v, scan()) for v in variants_])

        bt, gb, sw = [], [], []
        for _ in range(REPEAT):  # interleaved, so load from elsewhere hits both alike
            bt.append(timed(backtest))
            gb.append(timed(plain))
            sw.append(timed(sweep))
        late = run_batch(spec, scan()).late.height
    result = {
        "events": EVENTS,
        "repeat": REPEAT,
        "late_records": late,
        "load_average_1m": os.getloadavg()[0],
        "backtest_s": statistics.median(bt),
        "plain_group_by_s": statistics.median(gb),
        "runs_backtest_s": bt,
        "runs_plain_s": gb,
        "sweep_graces": SWEEP_GRACES,
        "sweep_s": statistics.median(sw),
        "runs_sweep_s": sw,
    }
    result["sweep_vs_backtest"] = result["sweep_s"] / result["backtest_s"]
    result["ratio"] = result["backtest_s"] / result["plain_group_by_s"]
    result["events_per_s"] = EVENTS / result["backtest_s"]
    print(
        f"back-test of {EVENTS:,} events from Parquet: {result['backtest_s']:.2f}s "
        f"({result['events_per_s']:,.0f} ev/s, {late:,} late); plain group-by {result['plain_group_by_s']:.2f}s; "
        f"ratio {result['ratio']:.2f}x; sweep of {len(SWEEP_GRACES)} graces {result['sweep_s']:.2f}s "
        f"({result['sweep_vs_backtest']:.1f}x the back-test)"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "replay_backtest.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
