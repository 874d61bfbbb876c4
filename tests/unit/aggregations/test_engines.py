"""The streaming fold and the batch plan agree, on hand-made cases and on random input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kstream_lab.aggregations.batch import run_batch
from kstream_lab.aggregations.fold import PartitionWindows, fold_partition
from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.errors import StateError
from tests.support.aggregator import orders_frame

SPEC = AggregationSpec.model_validate(
    {
        "name": "sales",
        "source": "orders_enriched",
        "time_field": "timestamp",
        "window": {"size": "60s", "grace": "10s"},
        "group_by": ["loyalty_tier"],
        "metrics": {"total_cents": {"sum": "total_cents"}, "count": {"count": "*"}, "biggest": {"max": "total_cents"}},
    }
)


def rec(ts, cents, tier="gold"):
    return {"timestamp": ts, "total_cents": cents, "loyalty_tier": tier}


def test_fold_late_and_close_rules_exactly():
    state = PartitionWindows(SPEC, 0)
    assert state.process(rec(61_000, 100)).closed == ()  # window [60s, 120s)
    step = state.process(rec(125_000, 250))  # watermark 125s < 130s: still open
    assert step.closed == () and step.update.metrics == {"total_cents": 250, "count": 1, "biggest": 250}
    assert state.process(rec(119_999, 5)).late is False  # 130s > 125s: not late, joins [60,120)
    step = state.process(rec(130_000, 1, "silver"))  # watermark reaches 130s: [60,120) closes
    assert [(w.window_start, w.group, w.metrics, w.final) for w in step.closed] == [
        (60_000, ("gold",), {"total_cents": 105, "count": 2, "biggest": 100}, True)
    ]
    assert state.process(rec(60_000, 999)).late is True  # its window closed: late, no change
    assert state.process(rec(120_000, 7)).late is False  # [120,180) still open
    assert {(w.window_start, w.group): w.metrics["total_cents"] for w in state.open_results()} == {
        (120_000, ("gold",)): 257,
        (120_000, ("silver",)): 1,
    }


def test_changelog_restore_reproduces_state():
    state = PartitionWindows(SPEC, 3)
    log = []
    for r in [rec(61_000, 100), rec(65_000, 1, "silver"), rec(131_000, 7), rec(10, 1)]:
        state.process(r)
        log.extend(state.changelog_entries())
    restored = PartitionWindows.restore(SPEC, 3, log)
    assert restored.watermark == state.watermark == 131_000
    assert restored.windows == state.windows == {(120_000, ("gold",)): {"total_cents": 7, "count": 1, "biggest": 7}}
    with pytest.raises(StateError, match="another aggregation spec"):
        PartitionWindows.restore(SPEC.with_window(grace_ms=0), 3, log)


def _frame(parts):
    rows = [{"partition": p, "offset": o, **r} for p, recs in parts.items() for o, r in enumerate(recs)]
    return orders_frame(rows)


def _fold_all(spec, parts, batch=None):
    finals, opens, late = [], [], set()
    for p, recs in parts.items():
        f, o, lt = fold_partition(spec, p, recs, batch=batch)
        finals += f
        opens += o
        late |= {(p, i) for i in lt}
    rows = [w.as_row(spec) for w in finals + opens]
    return rows, late


def _batch_all(spec, parts):
    res = run_batch(spec, _frame(parts))
    return res.windows.to_dicts(), set(zip(res.late["partition"], res.late["offset"], strict=True))


def _key(row):
    return (row["source_partition"], row["window_start"], str(row.get("loyalty_tier")))


records = st.lists(
    st.builds(rec, st.integers(0, 400_000), st.integers(0, 10**9), st.sampled_from(["gold", "silver", None])),
    max_size=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.dictionaries(st.integers(0, 5), records, max_size=4),
    size=st.sampled_from([1_000, 60_000, 90_000]),
    grace=st.sampled_from([0, 10_000, 45_000]),
    group=st.sampled_from([[], ["loyalty_tier"]]),
    batch=st.sampled_from([None, 1, 3, 7]),
)
def test_streaming_and_batch_engines_agree(parts, size, grace, group, batch):
    """Also across batch boundaries: the aggregator folds one consumed batch at a time."""
    spec = SPEC.model_copy(update={"group_by": tuple(group)}).with_window(size_ms=size, grace_ms=grace)
    if not any(parts.values()):
        return
    fold_rows, fold_late = _fold_all(spec, parts, batch)
    batch_rows, batch_late = _batch_all(spec, parts)
    assert fold_late == batch_late
    assert sorted(fold_rows, key=_key) == sorted(batch_rows, key=_key)
