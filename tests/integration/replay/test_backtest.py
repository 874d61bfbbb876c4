"""Back-tests against the generator's truth: exact to the cent, with no worker involved.

The "live" output here is computed from the truth file (docs/semantics.md §3 applied by the generator,
independently of both engines) and produced as SalesAggregate JSON records; the aggregator group's
committed offsets are set by hand. test_backtest_live.py does the same against the real aggregator.
"""

from __future__ import annotations

import json

import polars as pl
import pytest
from confluent_kafka import TopicPartition

import kstream_lab
from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.generator import loyalty_tier_for
from kstream_lab.generator.orders import recent_start_ms
from kstream_lab.kafka.clients import make_consumer
from kstream_lab.kafka.producing import BatchProducer
from kstream_lab.kafka.read import snapshot_bounds
from kstream_lab.pipeline_spec import TopicSpec, load_pipeline
from kstream_lab.replay.reader import RangeError
from kstream_lab.schemas.serde import SerdeContext, json_serializer
from tests.support.backtest import WINDOW_REPORT_COLUMNS
from tests.support.paths import ROOT
from tests.support.pipeline import produce_with_truth
from tests.support.processes import run_cli

ORDERS = 12_000
# An hour back and window-aligned: the same seed then gives the same windows, closes and late set every run
# (an unaligned start made which windows are final, and so the what-if's direction, depend on the clock).
START_MS = recent_start_ms(minutes_back=60)


def enriched_json(obj: dict, ctx: SerdeContext) -> bytes:
    return json_serializer({**obj, "loyalty_tier": loyalty_tier_for(obj["customer_id"])}, ctx)


def truth_windows(truth: pl.DataFrame, size: int, grace: int) -> pl.DataFrame:
    wm = truth.filter(pl.col("kind") != "poison").group_by("partition").agg(pl.col("timestamp").max().alias("wm"))
    return (
        truth.filter(pl.col("kind") == "ok")
        .group_by("partition", "window_start", "tier")
        .agg(pl.col("total_cents").sum(), pl.len().alias("count"))
        .join(wm, on="partition")
        .with_columns((pl.col("window_start") + size + grace <= pl.col("wm")).alias("final"))
    )


@pytest.fixture
def scenario(kafka_settings, topic_factory, tmp_path):
    """An enriched-orders topic with late and poison records, live finals from the truth, a committed group."""
    base = load_pipeline(ROOT / "pipelines/orders.yaml").aggregation()
    source, live_topic = topic_factory("enriched", partitions=3), topic_factory("aggregates", partitions=3)
    spec = base.model_copy(update={"source": source})
    truth = produce_with_truth(
        kafka_settings,
        TopicSpec(name=source, partitions=3),
        enriched_json,
        spec.window,
        tmp_path / "truth.parquet",
        count=ORDERS,
        seed=11,
        start_ms=START_MS,
        late_fraction=0.02,
        poison_fraction=0.005,
    )
    windows = truth_windows(truth, spec.window.size_ms, spec.window.grace_ms)
    with BatchProducer(kafka_settings) as producer:
        for row in windows.sort("partition", "window_start", "tier").iter_rows(named=True):
            value = {
                "window_start": row["window_start"],
                "window_end": row["window_start"] + spec.window.size_ms,
                "tier": row["tier"],
                "source_partition": row["partition"],
                "total_cents": row["total_cents"],
                "count": row["count"],
                "final": row["final"],
            }
            producer.produce(
                live_topic,
                key=f"{row['window_start']}:{row['tier']}:{row['partition']}".encode(),
                value=json.dumps(value).encode(),
                partition=row["partition"],
            )
    group = f"aggregator-{source}"
    ends = {p: b.end for p, b in snapshot_bounds(kafka_settings, source).items()}
    consumer = make_consumer(kafka_settings, group)
    consumer.commit(offsets=[TopicPartition(source, p, o) for p, o in ends.items()], asynchronous=False)
    consumer.close()
    return {
        "spec": spec,
        "source": source,
        "live": live_topic,
        "group": group,
        "truth": truth,
        "windows": windows,
        "ends": ends,
        "settings": kafka_settings,
    }


def run(sc, **kw) -> kstream_lab.api.BacktestReport:
    return kstream_lab.backtest(
        spec=sc["spec"], group_id=sc["group"], live_topic=sc["live"], settings=sc["settings"], **kw
    )


def test_backtest_equals_truth_to_the_cent(scenario):
    sc = scenario
    report = run(sc)
    finals = sc["windows"].filter(pl.col("final"))
    assert report.verdict is True and report.diff.height == 0
    assert report.counts == {"match": finals.height, "open": sc["windows"].height - finals.height}
    kinds = dict(sc["truth"].group_by("kind").len().iter_rows())
    assert report.late == kinds["late"] and report.records == kinds["ok"] + kinds["late"]
    assert report.ranges == {p: (0, e) for p, e in sc["ends"].items()}
    matched = report.windows.filter(pl.col("status") == "match")
    assert matched["backtest_total"].sum() == finals["total_cents"].sum()
    assert matched["live_count"].sum() == matched["backtest_count"].sum() == finals["count"].sum()
    assert report.windows.columns == WINDOW_REPORT_COLUMNS


def test_a_changed_live_total_is_reported_with_its_delta(scenario):
    sc = scenario
    live = kstream_lab.replay(sc["live"], settings=sc["settings"])
    victim = live.filter(pl.col("final")).row(5, named=True)
    bumped = live.with_columns(
        pl.when(
            (pl.col("window_start") == victim["window_start"])
            & (pl.col("tier") == victim["tier"])
            & (pl.col("source_partition") == victim["source_partition"])
        )
        .then(pl.col("total_cents") + 7)
        .otherwise(pl.col("total_cents"))
        .alias("total_cents")
    )
    report = run(sc, live=bumped)
    assert report.verdict is False
    assert report.diff.select("window_start", "tier", "delta", "status").rows() == [
        (victim["window_start"], victim["tier"], -7, "differ")
    ]


def test_sub_range_end_and_start_rules(scenario):
    sc = scenario
    mid = {p: e // 2 for p, e in sc["ends"].items()}
    early_end = run(sc, end=mid)
    assert early_end.verdict is True
    assert early_end.ranges == {p: (0, m) for p, m in mid.items()}
    assert early_end.counts["match"] > 0 and early_end.counts["open"] > 0
    late_start = run(sc, start=mid)
    assert late_start.verdict is True and late_start.counts["warmup"] > 0 and late_start.counts["match"] > 0
    full = run(sc)
    assert late_start.counts["match"] + late_start.counts["warmup"] >= full.counts["match"] - 3 * 2


def test_what_if_and_parquet_source(scenario, tmp_path):
    sc = scenario
    report = run(sc, grace="0s")
    wi = report.what_if
    assert report.verdict is True and wi is not None and wi.late_what_if > wi.late_base
    assert wi.by_group.columns == ["tier", "live_total", "live_count", "what_if_total", "what_if_count"]
    moved = wi.by_group.select((pl.col("what_if_count") - pl.col("live_count")).sum()).item()
    assert moved < 0 and wi.windows is not None
    summary = kstream_lab.export(
        sc["source"], tmp_path / "export", settings=sc["settings"], progress=False, chunk_rows=3_000
    )
    assert summary.records == ORDERS - int((sc["truth"]["kind"] == "poison").sum())
    from_parquet = run(sc, source=tmp_path / "export")
    assert from_parquet.verdict is True and from_parquet.counts == run(sc).counts


def test_spec_without_live_output_is_a_user_error(scenario, kafka_settings):
    spec: AggregationSpec = scenario["spec"]
    with pytest.raises(RangeError, match="no committed offsets"):
        kstream_lab.backtest(spec=spec, group_id="nobody-ever", live_topic=scenario["live"], settings=kafka_settings)


@pytest.fixture(scope="module")
def dask_client():
    """A real Dask cluster: a scheduler and two worker processes (one thread each) on this machine."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client:
        yield client


def test_a_backtest_on_dask_equals_the_single_process_one(scenario, dask_client):
    """One task per partition on two worker processes; the merged report, what-if included, equals the
    report of one process exactly (every window, status, total and count; late and record counts)."""
    from distributed import get_task_stream
    from polars.testing import assert_frame_equal

    sc = scenario
    here = run(sc, grace="0s")
    with get_task_stream(dask_client) as stream:
        there = run(sc, grace="0s", cluster=dask_client)  # the caller's own Client; the CLI test gives an address
    tasks = [t for t in stream.data if t["key"].startswith("backtest-")]
    assert len(tasks) == 3 and {t["worker"] for t in tasks} <= set(dask_client.scheduler_info()["workers"])
    assert there.verdict is True and there.counts == here.counts
    assert_frame_equal(there.windows, here.windows)
    assert (there.records, there.late, there.live_finals, there.ranges) == (
        here.records,
        here.late,
        here.live_finals,
        here.ranges,
    )
    assert here.what_if is not None and there.what_if is not None
    assert_frame_equal(there.what_if.by_group, here.what_if.by_group)
    assert here.what_if.windows is not None and there.what_if.windows is not None
    assert_frame_equal(there.what_if.windows, here.what_if.windows)
    assert (there.what_if.late_base, there.what_if.late_what_if) == (here.what_if.late_base, here.what_if.late_what_if)
    kinds = dict(sc["truth"].group_by("kind").len().iter_rows())
    assert there.late == kinds["late"] and there.records == kinds["ok"] + kinds["late"]


def test_the_cli_backtests_on_a_dask_scheduler_and_refuses_an_export(scenario, dask_client, tmp_path):
    sc = scenario
    pipeline = ROOT / "pipelines/orders.yaml"
    address = dask_client.scheduler.address
    args = ["backtest", "--group", sc["group"], "--live-topic", sc["live"], "--source", sc["source"]]
    done = run_cli(*args, "--dask", address, env={"KSTREAM_PIPELINE_FILE": str(pipeline)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: MATCH" in done.stdout
    kstream_lab.export(sc["source"], tmp_path / "export", settings=sc["settings"], progress=False)
    refused = run_cli(
        *args[:-1], str(tmp_path / "export"), "--dask", address, env={"KSTREAM_PIPELINE_FILE": str(pipeline)}
    )
    assert refused.returncode == 2 and "--dask reads the input from Kafka" in refused.stderr, refused.stderr


def late_per_grace(truth: pl.DataFrame, size: int, graces: list[int]) -> dict[int, int]:
    """Independently of both engines: per partition in offset order (the generator's order), a record
    is late when its window closed (start + size + grace <= the max event time before it); poison
    records do not move the watermark."""
    late = dict.fromkeys(graces, 0)
    for (_p,), part in truth.filter(pl.col("kind") != "poison").group_by(["partition"], maintain_order=True):
        watermark = None
        for ts in part["timestamp"]:
            if watermark is not None:
                for g in graces:
                    late[g] += ts - ts % size + size + g <= watermark
            watermark = ts if watermark is None else max(watermark, ts)
    return late


def test_a_grace_sweep_counts_the_late_records_of_the_truth_for_each_grace(scenario, dask_client):
    """One read, four graces: each variant's late count equals the count computed from the truth; the
    deployed grace is the generator's own late set; on Dask the sweep is the same table."""
    sc = scenario
    graces = [0, 5_000, 10_000, 30_000, 120_000]
    report = run(sc, sweep={"grace": graces})
    assert report.verdict is True and report.sweep is not None
    table = report.sweep.table
    size = sc["spec"].window.size_ms
    want = late_per_grace(sc["truth"], size, graces)
    assert want[0] > want[10_000] > want[120_000], want  # the input has records late for each of them
    assert dict(zip(table["grace_ms"], table["late"], strict=True)) == want
    kinds = dict(sc["truth"].group_by("kind").len().iter_rows())
    assert want[sc["spec"].window.grace_ms] == kinds["late"] == report.late
    deployed = table.filter(pl.col("grace_ms") == sc["spec"].window.grace_ms).row(0, named=True)
    assert (deployed["moved"], deployed["delta_total_cents"], deployed["delta_count"]) == (0, 0, 0)
    assert deployed["final_windows"] == report.counts["match"]
    assert list(table["late"]) == sorted(table["late"], reverse=True)  # more grace, fewer late records
    on_dask = run(sc, sweep={"grace": graces}, cluster=dask_client)
    assert on_dask.sweep is not None and on_dask.sweep.table.equals(table)
    cli = run_cli(
        "backtest", "--group", sc["group"], "--live-topic", sc["live"], "--source", sc["source"],
        "--sweep", "grace=0s,2m",
        env={"KSTREAM_PIPELINE_FILE": str(ROOT / "pipelines/orders.yaml")},
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert f"  window 60s grace 0s: late {want[0]:,}, final windows" in cli.stdout
    assert f"  window 60s grace 120s: late {want[120_000]:,}, final windows" in cli.stdout
    bad = run_cli(
        "backtest", "--sweep", "grace=soon", env={"KSTREAM_PIPELINE_FILE": str(ROOT / "pipelines/orders.yaml")}
    )
    assert bad.returncode == 2 and "--sweep grace: " in bad.stderr, bad.stderr


def test_an_event_time_range_judges_its_windows_from_the_offsets_that_decide_them(scenario):
    """The middle third of the history by event time: exactly the truth's windows starting in it are
    judged (finals match to the cent), from fewer offsets than the whole range, via the CLI too."""
    sc = scenario
    starts = sorted(sc["windows"]["window_start"].unique().to_list())
    t_from, t_to = starts[len(starts) // 3], starts[2 * len(starts) // 3]
    report = run(sc, event_from=t_from, event_to=t_to)
    assert report.verdict is True
    inside = sc["windows"].filter(pl.col("window_start").is_between(t_from, t_to - 1))
    assert report.windows["window_start"].is_between(t_from, t_to - 1).all()
    assert report.counts == {"match": inside.filter(pl.col("final")).height} | (
        {"open": inside.height - inside.filter(pl.col("final")).height} if not inside["final"].all() else {}
    )
    matched = report.windows.filter(pl.col("status") == "match")
    assert matched["backtest_total"].sum() == inside.filter(pl.col("final"))["total_cents"].sum()
    full = sum(e for e in sc["ends"].values())
    read = sum(e - s for s, e in report.ranges.values())
    assert 0 < read < full and all(s > 0 for s, _e in report.ranges.values())
    assert any("windows starting in [" in n for n in report.notes)
    args = ["backtest", "--group", sc["group"], "--live-topic", sc["live"], "--source", sc["source"]]
    cli = run_cli(
        *args, "--event-from", f"@{t_from}", "--event-to", f"@{t_to}",
        env={"KSTREAM_PIPELINE_FILE": str(ROOT / "pipelines/orders.yaml")},
    )  # fmt: skip
    assert cli.returncode == 0 and f"match={inside.filter(pl.col('final')).height}" in cli.stdout, (
        cli.stdout + cli.stderr
    )
    bad = run_cli(*args, "--event-from", "earliest", env={"KSTREAM_PIPELINE_FILE": str(ROOT / "pipelines/orders.yaml")})
    assert bad.returncode == 2 and "--event-from: 'earliest' is not a time" in bad.stderr, bad.stderr
