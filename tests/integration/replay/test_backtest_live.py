"""The back-test against the real live aggregator (a `kstream-lab worker aggregator` process).

Avro end to end (values via the local registry). Enriched-shape orders (late and poison included) go
straight into an isolated copy of the pipeline's orders_enriched; the aggregator is killed with
SIGKILL part-way and restarted (state restored from its changelog); then the back-test must
reproduce its final windows exactly, from Python and from the CLI.
"""

from __future__ import annotations

import time

import kstream_lab
from kstream_lab.kafka.producing import BatchProducer
from kstream_lab.schemas.serde import SerdeContext, value_serializer
from tests.support.backtest import aggregate_across_a_kill
from tests.support.pipeline import Pipeline
from tests.support.processes import run_cli


def test_backtest_reproduces_the_live_aggregator_across_a_kill(pipe):
    t0 = (int(time.time()) - 3_600) * 1000  # recent event times: old ones would fall to time-based retention
    aggregate_across_a_kill(pipe, 8_000, (21, 22), t0)

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
