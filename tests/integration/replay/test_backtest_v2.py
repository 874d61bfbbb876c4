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
from kstream_lab.generator import loyalty_tier_for
from kstream_lab.generator.produce import produce_orders
from kstream_lab.kafka.admin import committed_offsets
from kstream_lab.schemas.serde import SerdeContext, value_serializer
from tests.support.pipeline import Pipeline, write_pipeline
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


@pytest.fixture
def pipe(kafka_settings, tmp_path):
    p = Pipeline(kafka_settings, write_pipeline(tmp_path, value_format="avro"), tmp_path)
    p.create_topics()
    yield p
    p.stop_all()
    p.delete_topics()


def use_aggregation(pipe: Pipeline, body: dict) -> None:
    data = yaml.safe_load(pipe.file.read_text())
    (agg,) = data["aggregations"].values()
    for key in ("window", "filter", "fields", "group_by", "metrics"):
        agg.pop(key, None)
    agg.update(body)
    pipe.file.write_text(yaml.safe_dump(data, sort_keys=False))


def produce(pipe: Pipeline, count: int, seed: int, start_ms: int) -> None:
    topic = pipe.spec.topic(pipe.topic("orders_enriched"))
    inner = value_serializer(pipe.settings, topic)

    def serialize(obj: dict, ctx: SerdeContext) -> bytes:
        return inner({**obj, "loyalty_tier": loyalty_tier_for(obj["customer_id"])}, ctx)

    window = WindowSpec.model_validate({"size": "60s", "grace": "10s"})  # the generator's notion of late
    produce_orders(
        pipe.settings,
        topic,
        serialize,
        window,
        count=count,
        seed=seed,
        start_ms=start_ms,
        late_fraction=0.02,
        poison_fraction=0.005,
        progress=False,
    )


@pytest.mark.parametrize("kind", list(AGGREGATIONS))
def test_backtest_reproduces_a_v2_aggregation_across_a_kill(pipe, kind):
    use_aggregation(pipe, AGGREGATIONS[kind])
    t0 = (int(time.time()) - 3_600) * 1000
    produce(pipe, 6_000, seed=31, start_ms=t0)
    pipe.start("aggregator")
    group, topic = pipe.spec.workers.aggregator.group_id, pipe.topic("orders_enriched")
    pipe.wait_for(
        lambda: committed_offsets(pipe.settings, group, topic, list(range(6))), 60, "a first commit", interval=0.05
    )
    pipe.kill("aggregator")
    produce(pipe, 6_000, seed=32, start_ms=t0 + 6_000 * 20)
    pipe.start("aggregator")
    pipe.wait_for(pipe.aggregator_caught_up, 120, "the aggregator to commit every offset")

    report = kstream_lab.backtest(spec=pipe.file, settings=pipe.settings)
    assert report.verdict is True, report.diff
    assert set(report.counts) <= {"match", "open"} and report.counts["match"] == report.live_finals > 50
    assert report.late > 0
    live = kstream_lab.replay(pipe.topic("sales_aggregates"), settings=pipe.settings)
    assert set(AGGREGATIONS[kind]["metrics"]) <= set(live.columns)  # the derived schema's fields

    res = run_cli("backtest", env={"KSTREAM_PIPELINE_FILE": str(pipe.file)}, timeout=120)
    assert res.returncode == 0, (res.stdout + res.stderr)[:3000]
    assert "verdict: MATCH" in res.stdout
