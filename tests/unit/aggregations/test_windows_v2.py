"""Aggregation spec v2 (docs/semantics.md §7): hopping, sliding and session windows, the per-window
late rule, filters, derived fields and the new metrics. Hand-computed cases per window kind, and
Hypothesis parity of the streaming fold (in random batches, restarted from its changelog between
batches) with the batch plan."""

from __future__ import annotations

import os

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kstream_lab.aggregations.batch import run_batch
from kstream_lab.aggregations.fold import PartitionWindows, WindowResult
from kstream_lab.aggregations.inputs import ExpressionError, compile_inputs, evaluate_columns
from kstream_lab.aggregations.spec import AggregationSpec

pytestmark = pytest.mark.unit

SCHEMA = {
    "partition": pl.Int32,
    "offset": pl.Int64,
    "timestamp": pl.Int64,
    "loyalty_tier": pl.Utf8,
    "customer_id": pl.Utf8,
    "total_cents": pl.Int64,
}


def spec(window: dict, metrics: dict | None = None, **extra) -> AggregationSpec:
    return AggregationSpec.model_validate(
        {
            "name": "v2",
            "source": "orders_enriched",
            "window": window,
            "metrics": metrics or {"total_cents": {"sum": "total_cents"}, "count": {"count": "*"}},
            **extra,
        }
    )


def rec(ts: int, cents: int = 1, tier: str | None = "gold", customer: str | None = "c1") -> dict:
    return {"timestamp": ts, "total_cents": cents, "loyalty_tier": tier, "customer_id": customer}


def run_fold(sp: AggregationSpec, records: list[dict], partition: int = 0):
    """Record by record through process_columns with the inputs prepared as the aggregator does."""
    state = PartitionWindows(sp, partition)
    finals, late = [], []
    for i, r in enumerate(records):
        steps = _fold_run(sp, state, [r])
        late += [i] * len(steps.late)
        finals += [w for _, w in steps.closed]
    return state, finals, late


def _fold_run(sp: AggregationSpec, state: PartitionWindows, run: list[dict]):
    names = sorted({k for r in run for k in r})
    cols, keep = evaluate_columns(compile_inputs(sp), {k: [r.get(k) for r in run] for k in names}, len(run))
    groups = list(zip(*[cols[g] for g in sp.group_by], strict=True)) if sp.group_by else [()] * len(run)
    fields = sorted({m.field for m in sp.metrics.values() if m.field})
    return state.process_columns(cols[sp.time_field], groups, {f: cols[f] for f in fields}, keep)


def brief(w: WindowResult) -> tuple:
    return (w.window_start, w.window_end, w.group, w.metrics)


# ---- hand-computed cases --------------------------------------------------------------------


def test_hopping_windows_and_the_per_window_late_rule():
    """10 s windows every 5 s, grace 0: a record is folded into those of its windows still open."""
    sp = spec({"type": "hopping", "size": "10s", "advance": "5s", "grace": 0})
    state, finals, late = run_fold(
        sp,
        [
            rec(12_000, 1),  # windows [5,15) and [10,20)
            rec(21_000, 10),  # [15,25) and [20,30); watermark 21 s closes [5,15) and [10,20)
            rec(16_000, 100),  # [10,20) closed before it came, [15,25) open: partly late, folded into [15,25)
            rec(14_000, 1000),  # [5,15) and [10,20) both closed: late
        ],
    )
    assert late == [3]
    assert [brief(w) for w in finals] == [
        (5_000, 15_000, (), {"total_cents": 1, "count": 1}),
        (10_000, 20_000, (), {"total_cents": 1, "count": 1}),
    ]
    assert [brief(w) for w in state.open_results()] == [
        (15_000, 25_000, (), {"total_cents": 110, "count": 2}),
        (20_000, 30_000, (), {"total_cents": 10, "count": 1}),
    ]


def test_hopping_windows_start_at_multiples_of_advance_even_when_size_is_not_one():
    sp = spec({"type": "hopping", "size": "90s", "advance": "60s", "grace": "1h"})
    state, _, _ = run_fold(sp, [rec(130_000, 7)])
    assert [(w.window_start, w.window_end) for w in state.open_results()] == [(60_000, 150_000), (120_000, 210_000)]


def test_sliding_windows_are_kafka_streams_example():
    """SlidingWindows javadoc: time difference 5000 ms, records at 8000, 9200 and 12400."""
    sp = spec({"type": "sliding", "size": 5000, "grace": "1h"}, {"sum": {"sum": "total_cents"}})
    state, _, _ = run_fold(sp, [rec(8000, 1), rec(9200, 2), rec(12_400, 3)])
    # [start, end] inclusive as in Kafka Streams; window_end here is exclusive (end + 1)
    assert [(w.window_start, w.window_end - 1, w.metrics["sum"]) for w in state.open_results()] == [
        (3000, 8000, 1),
        (4200, 9200, 1 + 2),
        (7400, 12_400, 1 + 2 + 3),
        (8001, 13_001, 2 + 3),
        (9201, 14_201, 3),
    ]


def test_sliding_windows_late_rule_per_window():
    sp = spec({"type": "sliding", "size": 5000, "grace": 0}, {"sum": {"sum": "total_cents"}})
    state, finals, late = run_fold(
        sp,
        [
            rec(8000, 1),
            rec(20_000, 10),  # closes [3000, 8000]; generates [15000, 20000] and [20001, 25001]
            rec(14_000, 100),  # even [14000, 19000] closed (19001 <= 20000): late
            rec(15_500, 1000),  # its own [10500, 15500] closed, [15000, 20000] open: folded there, and
            # it generates [15501, 20501], which holds the record at 20000
        ],
    )
    assert late == [2]
    assert [(w.window_start, w.metrics["sum"]) for w in finals] == [(3000, 1)]
    assert [(w.window_start, w.window_end, w.metrics["sum"]) for w in state.open_results()] == [
        (15_000, 20_001, 1010),
        (15_501, 20_502, 10),
    ]


def test_session_windows_merge_close_and_late():
    sp = spec({"type": "session", "gap": "10s", "grace": "30s"})
    state = PartitionWindows(sp, 0)
    log = []
    for r in [rec(100_000, 1), rec(118_000, 2)]:
        _fold_run(sp, state, [r])
    log += state.changelog_entries()
    assert sorted((w.window_start, w.window_end) for w in state.open_results()) == [
        (100_000, 110_000),
        (118_000, 128_000),
    ]
    _fold_run(sp, state, [rec(109_000, 4)])  # within the gap of both: one session
    entries = state.changelog_entries()
    assert (b"[0, 118000, []]", None) in entries  # the merged-away session's tombstone
    log += entries
    restored = PartitionWindows.restore(sp, 0, log)
    assert [brief(w) for w in restored.open_results()] == [(100_000, 128_000, (), {"total_cents": 7, "count": 3})]
    steps = _fold_run(sp, restored, [rec(158_000, 8)])  # watermark 158 s = 118 + 10 + 30: closes it
    assert [brief(w) for _, w in steps.closed] == [(100_000, 128_000, (), {"total_cents": 7, "count": 3})]
    assert _fold_run(sp, restored, [rec(128_000, 16)]).late == [0]  # 128 + 30 <= 158: late


def test_new_metrics_filter_and_derived_fields():
    sp = spec(
        {"size": "60s", "grace": 0},
        {
            "mean": {"mean": "total_cents"},
            "customers": {"count_distinct": "customer_id"},
            "first": {"first": "total_cents"},
            "last": {"last": "total_cents"},
            "bigs": {"sum": "big"},
            "count": {"count": "*"},
        },
        filter="loyalty_tier <> 'bronze'",
        fields={"big": "total_cents >= 10000"},
        group_by=["big"],
    )
    records = [
        rec(1000, 5, customer="a"),
        rec(2000, 6, customer="b"),
        rec(3000, 20_000, customer="a"),
        rec(4000, 99_999, tier="bronze", customer="z"),  # filtered out
        rec(5000, 8, customer="a"),
        rec(6000, 30_001, tier=None, customer="q"),  # null tier: the filter's null is false
        rec(70_000, 1, tier="bronze"),  # filtered out, yet it advances the watermark and closes [0, 60s)
    ]
    _, finals, late = run_fold(sp, records)
    assert late == []
    assert sorted((w.group, w.metrics) for w in finals) == [
        ((False,), {"mean": 6, "customers": 2, "first": 5, "last": 8, "bigs": 0, "count": 3}),  # 19/3 = 6.33
        ((True,), {"mean": 20_000, "customers": 1, "first": 20_000, "last": 20_000, "bigs": 1, "count": 1}),
    ]
    res = run_batch(sp, frame({0: records}))
    assert sorted((r["big"], r["mean"], r["customers"], r["first"], r["last"]) for r in res.finals.to_dicts()) == [
        (False, 6, 2, 5, 8),
        (True, 20_000, 1, 20_000, 20_000),
    ]


def test_mean_rounds_halves_up_in_integers():
    sp = spec({"size": "60s", "grace": 0}, {"mean": {"mean": "total_cents"}})
    for cents, expected in [([1, 2], 2), ([1, 1, 2], 1), ([-3, 0], -1), ([-5, 0], -2), ([7], 7)]:
        state, _, _ = run_fold(sp, [rec(1000 + i, c) for i, c in enumerate(cents)])
        assert state.open_results()[0].metrics["mean"] == expected, cents
        assert run_batch(sp, frame({0: [rec(1000 + i, c) for i, c in enumerate(cents)]})).windows["mean"].to_list() == [
            expected
        ]


def test_bad_expressions_are_refused_with_their_key():
    with pytest.raises(ExpressionError, match="not a SQL expression") as info:
        compile_inputs(spec({"size": "1m"}, filter="total_cents >="))
    assert info.value.key == ("filter",)
    with pytest.raises(ExpressionError, match="aggregates over rows") as info:
        compile_inputs(spec({"size": "1m"}, fields={"all": "sum(total_cents)"}))
    assert info.value.key == ("fields", "all")


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"type": "hopping", "size": "1m"}, "needs `advance`"),
        ({"type": "hopping", "size": "1m", "advance": "2m"}, "must not exceed"),
        ({"type": "session", "size": "1m", "gap": "1m"}, "has no `size`"),
        ({"type": "session"}, "needs `gap`"),
        ({"type": "tumbling", "size": "1m", "advance": "1m"}, "`advance` is for hopping"),
        ({"type": "sliding", "size": "1m", "gap": "1m"}, "`gap` is for session"),
        ({"type": "sliding"}, "needs `size`"),
    ],
)
def test_bad_window_shapes(window, message):
    with pytest.raises(ValueError, match=message):
        spec(window)


def test_tumbling_state_key_is_unchanged():
    """Changelogs written before spec v2 restore under the same tumbling spec."""
    assert (
        spec({"size": "60s", "grace": "10s"}).state_key()
        == "v2|timestamp|60000|10000||count=count:None,total_cents=sum:total_cents"
    )


# ---- parity ---------------------------------------------------------------------------------


def frame(parts: dict[int, list[dict]]) -> pl.DataFrame:
    rows = [{"partition": p, "offset": o, **r} for p, recs in parts.items() for o, r in enumerate(recs)]
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def fold_with_restarts(sp: AggregationSpec, partition: int, records: list[dict], cuts: list[int]):
    """The live aggregator's way: a run per consumed batch, state persisted to the changelog after
    each, and (every other batch) a restart that restores it from the changelog."""
    state, log = PartitionWindows(sp, partition), []
    finals, late, at = [], set(), 0
    bounds = sorted({c % (len(records) + 1) for c in cuts} | {len(records)})
    for n, end in enumerate(bounds):
        if end <= at:
            continue
        steps = _fold_run(sp, state, records[at:end])
        late |= {(partition, at + i) for i in steps.late}
        finals += [w for _, w in steps.closed]
        log += state.changelog_entries()
        if n % 2:
            state = PartitionWindows.restore(sp, partition, log)
        at = end
    return [w.as_row(sp) for w in finals + state.open_results()], late


WINDOWS = {
    "tumbling": st.sampled_from([{"size": 1000}, {"size": "60s"}, {"size": "90s"}]),
    "hopping": st.sampled_from(
        [{"size": "60s", "advance": "20s"}, {"size": "90s", "advance": "60s"}, {"size": 1000, "advance": 1000}]
    ),
    "sliding": st.sampled_from([{"size": 1000}, {"size": "20s"}, {"size": "75s"}]),
    "session": st.sampled_from([{"gap": 1000}, {"gap": "5s"}, {"gap": "30s"}]),
}
METRICS = {
    "total_cents": {"sum": "total_cents"},
    "count": {"count": "*"},
    "low": {"min": "total_cents"},
    "high": {"max": "total_cents"},
    "mean": {"mean": "total_cents"},
    "customers": {"count_distinct": "customer_id"},
    "first": {"first": "total_cents"},
    "last": {"last": "dollars"},
    "bigs": {"sum": "big"},
}
records = st.lists(
    st.builds(
        rec,
        # event times on a 500 ms grid hit window bounds, gaps and grace exactly; the rest anywhere
        st.one_of(
            st.integers(0, 400).map(lambda x: x * 500),
            st.integers(0, 60).map(lambda x: x * 1000),
            st.integers(0, 200_000),
        ),
        st.integers(0, 20_000),
        st.sampled_from(["gold", "silver", "bronze", None]),
        st.sampled_from(["a", "b", "c", None]),
    ),
    max_size=40,
)


@pytest.mark.parametrize("kind", list(WINDOWS))
@settings(
    max_examples=int(os.environ.get("KSTREAM_PARITY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    data=st.data(),
    parts=st.dictionaries(st.integers(0, 3), records, min_size=1, max_size=3),
    grace=st.sampled_from([0, 10_000, 45_000]),
    flt=st.sampled_from([None, "total_cents >= 5000", "loyalty_tier <> 'bronze'"]),
    group=st.sampled_from([[], ["loyalty_tier"], ["big"], ["loyalty_tier", "big"]]),
    cuts=st.lists(st.integers(0, 40), max_size=5),
)
def test_streaming_fold_equals_batch_plan(kind, data, parts, grace, flt, group, cuts):
    """Random out-of-order input with late records, random filters and groupings, random batches."""
    window = {"type": kind, "grace": grace, **data.draw(WINDOWS[kind])}
    sp = spec(
        window,
        METRICS,
        filter=flt,
        fields={"big": "total_cents >= 10000", "dollars": "total_cents / 100"},
        group_by=group,
    )
    fold_rows, fold_late = [], set()
    for p, recs in parts.items():
        rows, late = fold_with_restarts(sp, p, recs, cuts)
        fold_rows += rows
        fold_late |= late
    res = run_batch(sp, frame(parts))
    batch_late = set(zip(res.late["partition"], res.late["offset"], strict=True))
    assert fold_late == batch_late
    assert sorted(fold_rows, key=_key) == sorted(res.windows.to_dicts(), key=_key)


def _key(row: dict) -> tuple:
    return (row["source_partition"], row["window_start"], str(row.get("loyalty_tier")), str(row.get("big")))


# ---- a bad spec fails at load, naming file, line and key --------------------------------------

V2_AGGREGATION = """\
aggregations:
  sales_per_minute:
    source: orders_enriched
    time_field: timestamp
    window:
      type: hopping
      size: 5m
      advance: 1m
      grace: 10s
    filter: "total_cents >= 10000"
    fields:
      big: "total_cents >= 50000"
    group_by: [loyalty_tier, big]
    metrics:
      total_cents: {sum: total_cents}
      count: {count: "*"}
"""


def _pipeline_with(tmp_path, aggregation: str):
    from tests.support.paths import ROOT

    text = (ROOT / "pipelines/orders.yaml").read_text()
    head, rest = text.split("aggregations:\n", 1)
    tail = rest[rest.index("\n# The live pipeline") :]
    path = tmp_path / "p.yaml"
    path.write_text(head + aggregation + tail)
    return path, (head + aggregation).splitlines()


def test_a_v2_aggregation_loads(tmp_path):
    from kstream_lab.pipeline_spec import load_pipeline

    path, _ = _pipeline_with(tmp_path, V2_AGGREGATION)
    agg = load_pipeline(path).aggregation()
    assert (agg.window.type, agg.window.size_ms, agg.window.advance_ms) == ("hopping", 300_000, 60_000)
    assert agg.filter == "total_cents >= 10000" and agg.fields == {"big": "total_cents >= 50000"}


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ("      advance: 1m\n", "", "aggregations.sales_per_minute.window", "a hopping window needs `advance`"),
        (
            '    filter: "total_cents >= 10000"',
            '    filter: "total_cents >="',
            "aggregations.sales_per_minute.filter",
            "not a SQL expression",
        ),
        (
            '      big: "total_cents >= 50000"',
            '      big: "nosuch(total_cents)"',
            "aggregations.sales_per_minute.fields.big",
            "unsupported function",
        ),
        (
            '      count: {count: "*"}',
            "      count: {median: total_cents}",
            "aggregations.sales_per_minute.metrics.count.median",
            "unknown key",
        ),
    ],
)
def test_a_bad_v2_aggregation_fails_the_load_naming_file_line_and_key(tmp_path, old, new, key, problem):
    from kstream_lab.errors import ConfigError
    from kstream_lab.pipeline_spec import load_pipeline

    assert old in V2_AGGREGATION
    path, lines = _pipeline_with(tmp_path, V2_AGGREGATION.replace(old, new))
    last = "count" if key.endswith("median") else key.split(".")[-1]  # {median: ...} is on the line of count:
    line = next(i for i, ln in enumerate(lines, 1) if ln.strip().startswith(f"{last}:"))
    with pytest.raises(ConfigError, match=problem) as exc:
        load_pipeline(path)
    assert str(exc.value).startswith(f"{path}:{line}: {key}: ")


def test_tumbling_changelog_bytes_are_those_before_spec_v2():
    sp = spec({"size": "60s", "grace": "10s"}, group_by=["loyalty_tier"])
    state = PartitionWindows(sp, 2)
    state.process(rec(61_000, 100))
    state.process(rec(130_000, 5, "silver"))  # closes [60 s, 120 s)
    assert state.changelog_entries() == [
        (b'[2, 120000, ["silver"]]', b'{"total_cents": 5, "count": 1}'),
        (b'[2, 60000, ["gold"]]', None),
        (
            b"2:__watermark__",
            b'{"watermark": 130000, "spec": "v2|timestamp|60000|10000|loyalty_tier|count=count:None,'
            b'total_cents=sum:total_cents"}',
        ),
    ]
