"""The back-test against the real live aggregator (a `kstream-lab worker aggregator` process).

Avro end to end (values via the local registry). Enriched-shape orders (late and poison included) go
straight into an isolated copy of the pipeline's orders_enriched; the aggregator is killed with
SIGKILL part-way and restarted (state restored from its changelog); then the back-test must
reproduce its final windows exactly, from Python and from the CLI.
"""

from __future__ import annotations

import time

import pytest

import kstream_lab
from kstream_lab.generator import loyalty_tier_for
from kstream_lab.generator.produce import produce_orders
from kstream_lab.kafka.admin import committed_offsets
from kstream_lab.kafka.producing import BatchProducer
from kstream_lab.schemas.serde import SerdeContext, value_serializer
from tests.support.pipeline import Pipeline, write_pipeline
from tests.support.processes import run_cli


@pytest.fixture
def pipe(kafka_settings, tmp_path):
    p = Pipeline(kafka_settings, write_pipeline(tmp_path, value_format="avro"), tmp_path)
    p.create_topics()
    yield p
    p.stop_all()
    p.delete_topics()


def produce(pipe: Pipeline, count: int, seed: int, start_ms: int) -> None:
    """Enriched-shape orders in the topic's declared format (Avro via the registry)."""
    spec = pipe.spec
    topic = spec.topic(pipe.topic("orders_enriched"))
    inner = value_serializer(pipe.settings, topic)

    def serialize(obj: dict, ctx: SerdeContext) -> bytes:
        return inner({**obj, "loyalty_tier": loyalty_tier_for(obj["customer_id"])}, ctx)

    produce_orders(
        pipe.settings,
        topic,
        serialize,
        spec.aggregation().window,
        count=count,
        seed=seed,
        start_ms=start_ms,
        late_fraction=0.02,
        poison_fraction=0.005,
        progress=False,
    )


def test_backtest_reproduces_the_live_aggregator_across_a_kill(pipe):
    t0 = (int(time.time()) - 3_600) * 1000  # recent event times: old ones would fall to time-based retention
    produce(pipe, 8_000, seed=21, start_ms=t0)
    pipe.start("aggregator")
    group = pipe.spec.workers.aggregator.group_id
    topic = pipe.topic("orders_enriched")
    pipe.wait_for(
        lambda: committed_offsets(pipe.settings, group, topic, list(range(6))), 60, "a first commit", interval=0.05
    )
    pipe.kill("aggregator")
    produce(pipe, 8_000, seed=22, start_ms=t0 + 8_000 * 20)
    pipe.start("aggregator")
    pipe.wait_for(pipe.aggregator_caught_up, 120, "the aggregator to commit every offset")

    report = kstream_lab.backtest(spec=pipe.file, settings=pipe.settings)
    assert report.verdict is True, report.diff
    assert set(report.counts) <= {"match", "open"} and report.counts["match"] == report.live_finals > 50
    assert report.late > 0 and report.records == 16_000 - _poison(pipe)

    env = {"KSTREAM_PIPELINE_FILE": str(pipe.file)}
    res = run_cli("backtest", env=env, timeout=120)
    assert res.returncode == 0, (res.stdout + res.stderr)[:3000]
    assert "verdict: MATCH" in res.stdout

    # a second, different final record for a window the live side already closed: exit 1
    row = report.windows.filter(report.windows["status"] == "match").row(0, named=True)
    bogus = {
        "window_start": row["window_start"],
        "window_end": row["window_start"] + 60_000,
        "tier": row["tier"],
        "source_partition": row["source_partition"],
        "total_cents": row["live_total"] + 1,
        "count": row["live_count"],
        "final": True,
    }
    out = pipe.spec.topic(pipe.topic("sales_aggregates"))
    with BatchProducer(pipe.settings) as producer:
        producer.produce(
            out.name,
            key=b"bogus",
            value=value_serializer(pipe.settings, out)(bogus, SerdeContext(out.name)),
            partition=row["source_partition"],
        )
    time.sleep(0.5)
    res = run_cli("backtest", env=env, timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "duplicate_live" in res.stdout and "verdict: DIFFER (1 mismatching window(s))" in res.stdout
    res = run_cli("backtest", "--from", "bogus", env=env, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("error: not a position")


def _poison(pipe: Pipeline) -> int:
    dlq = kstream_lab.replay(pipe.topic("orders_dlq"), value_format="raw", settings=pipe.settings)
    return dlq.height
