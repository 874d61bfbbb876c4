"""Spec v2 live: the real aggregator process runs a hopping (or session) aggregation with a filter
and a derived field, writes Avro with the output schema derived from the spec, is SIGKILLed part-way
and restored from its changelog; the back-test then reproduces its final windows exactly, from
Python and from the CLI (exit 0)."""

from __future__ import annotations

import time

import pytest
import yaml

import kstream_lab
from kstream_lab.aggregations.spec import WindowSpec
from tests.support.backtest import aggregate_across_a_kill
from tests.support.pipeline import Pipeline
from tests.support.processes import run_cli

AGGREGATIONS = {
    "hopping": {
        "window": {"type": "hopping", "size": "60s", "advance": "20s", "grace": "10s"},
        "filter": "total_cents >= 3000",
        "fields": {"big": "total_cents >= 10000"},
        "group_by": ["loyalty_tier", "big"],
        "metrics": {
            "total_cents": {"sum": "total_cents"},
            "count": {"count": "*"},
            "mean": {"mean": "total_cents"},
            "customers": {"count_distinct": "customer_id"},
            "first": {"first": "total_cents"},
        },
    },
    "session": {
        "window": {"type": "session", "gap": "30s", "grace": "10s"},  # per customer: orders every 20 ms
        "filter": "loyalty_tier <> 'bronze'",  # in all would make one endless session per tier
        "group_by": ["customer_id"],
        "metrics": {"total_cents": {"sum": "total_cents"}, "count": {"count": "*"}, "last": {"last": "total_cents"}},
    },
}


GENERATOR_WINDOW = WindowSpec.model_validate({"size": "60s", "grace": "10s"})  # the generator's notion of late


def use_aggregation(pipe: Pipeline, body: dict) -> None:
    data = yaml.safe_load(pipe.file.read_text())
    (agg,) = data["aggregations"].values()
    for key in ("window", "filter", "fields", "group_by", "metrics"):
        agg.pop(key, None)
    agg.update(body)
    pipe.file.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize("kind", list(AGGREGATIONS))
def test_backtest_reproduces_a_v2_aggregation_across_a_kill(pipe, kind):
    use_aggregation(pipe, AGGREGATIONS[kind])
    t0 = (int(time.time()) - 3_600) * 1000
    aggregate_across_a_kill(pipe, 6_000, (31, 32), t0, window=GENERATOR_WINDOW)

    report = kstream_lab.backtest(spec=pipe.file, settings=pipe.settings)
    assert report.verdict is True, report.diff
    assert set(report.counts) <= {"match", "open"} and report.counts["match"] == report.live_finals > 50
    assert report.late > 0
    live = kstream_lab.replay(pipe.topic("sales_aggregates"), settings=pipe.settings)
    assert set(AGGREGATIONS[kind]["metrics"]) <= set(live.columns)  # the derived schema's fields

    res = run_cli("backtest", env={"KSTREAM_PIPELINE_FILE": str(pipe.file)}, timeout=120)
    assert res.returncode == 0, (res.stdout + res.stderr)[:3000]
    assert "verdict: MATCH" in res.stdout
