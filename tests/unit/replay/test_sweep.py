"""Sweeps: the grid's parsing and refusals, and each variant's late records, final windows, totals and
moved windows on a hand-worked partition."""

from __future__ import annotations

import polars as pl
import pytest

from kstream_lab.aggregations.batch import run_batch
from kstream_lab.errors import ConfigError
from kstream_lab.pipeline_spec import load_pipeline
from kstream_lab.replay.sweep import parse_sweep, sweep_table, variants
from tests.support.paths import ROOT

pytestmark = pytest.mark.unit

BASE = load_pipeline(ROOT / "pipelines/orders.yaml").aggregation()  # tumbling 60 s, grace 10 s, per tier
S = 1000
# one partition, offset order: (event time, total_cents)
RECORDS = [(0, 100), (65 * S, 200), (50 * S, 300), (130 * S, 400), (55 * S, 500)]


def frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "partition": [0] * len(RECORDS),
            "offset": list(range(len(RECORDS))),
            "timestamp": [t for t, _ in RECORDS],
            "loyalty_tier": ["gold"] * len(RECORDS),
            "total_cents": [c for _, c in RECORDS],
        },
        schema={
            "partition": pl.Int32,
            "offset": pl.Int64,
            "timestamp": pl.Int64,
            "loyalty_tier": pl.Utf8,
            "total_cents": pl.Int64,
        },
    )


def test_the_grid_parses_from_the_cli_form_and_from_a_mapping() -> None:
    assert parse_sweep(["grace=0s,10s,2m"]) == {"grace_ms": [0, 10_000, 120_000]}
    assert parse_sweep(["grace=0s, 10s", "window=1m", "grace=10s,30s"]) == {
        "grace_ms": [0, 10_000, 30_000],
        "size_ms": [60_000],
    }
    assert parse_sweep({"grace": ["0s", 5000]}) == {"grace_ms": [0, 5000]}
    assert parse_sweep("grace=1s") == {"grace_ms": [1000]}
    assert len(variants(BASE, parse_sweep(["grace=0s,10s", "window=1m,2m,5m"]))) == 6


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["grace"], "expected AXIS=V1,V2"),
        (["size=1m"], "AXIS one of grace, window"),
        (["grace=soon"], "--sweep grace: "),
        (["grace="], "--sweep grace: no values"),
        (["window=0s"], "sizes must be positive"),
        (
            ["grace=" + ",".join(f"{n}s" for n in range(9)), "window=" + ",".join(f"{n}m" for n in range(1, 9))],
            "72 variants",
        ),
    ],
)
def test_a_bad_grid_names_the_option_and_the_value(items, message) -> None:
    with pytest.raises(ConfigError, match=message):
        variants(BASE, parse_sweep(items))


def test_each_grace_costs_what_the_hand_worked_partition_says() -> None:
    specs = variants(BASE, parse_sweep(["grace=0s,10s,30s,2m", "window=1m,2m"]))
    base_result = run_batch(BASE, frame().lazy())
    sweep = sweep_table(BASE, base_result, specs, [run_batch(s, frame().lazy()) for s in specs])
    got = {(r["window_ms"], r["grace_ms"]): r for r in sweep.table.iter_rows(named=True)}
    row = lambda late, finals, moved, total, count: {  # noqa: E731
        "late": late,
        "final_windows": finals,
        "moved": moved,
        "final_total_cents": total,
        "final_count": count,
        "delta_total_cents": total - 600,
        "delta_count": count - 3,
    }
    # base (grace 10 s): offset 4 is late; [0,60) = 100+300 and [60,120) = 200 are final at watermark 130 s
    want = {
        (60 * S, 0): row(2, 2, 1, 300, 2),  # offset 2 late as well; [0,60) holds 100 alone
        (60 * S, 10 * S): row(1, 2, 0, 600, 3),
        (60 * S, 30 * S): row(1, 1, 1, 400, 2),  # [60,120) not yet final
        (60 * S, 120 * S): row(0, 0, 2, 0, 0),  # nothing late, nothing final
    }
    for key, expected in want.items():
        assert {k: got[key][k] for k in expected} == expected, key
    # another size: totals, no movement (other window starts)
    assert got[(120 * S, 10 * S)]["moved"] is None and got[(120 * S, 10 * S)]["late"] == 1
    assert sweep.table.height == 8
    lines = sweep.summary()
    assert lines[1].startswith("  window 60s grace 0s: late 2, final windows 2, moved 1; total_cents 300 (-300)")
