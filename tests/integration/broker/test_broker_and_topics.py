"""The local broker, topics as code and the generator, against a real Apache Kafka."""

from __future__ import annotations

import polars as pl
import pytest

from kstream_lab.broker import LocalBroker
from kstream_lab.errors import BrokerError, TopicError
from kstream_lab.generator.orders import recent_start_ms
from kstream_lab.generator.produce import produce_orders
from kstream_lab.kafka.admin import describe_topic, watermarks
from kstream_lab.kafka.topics import apply_topics, plan_changes
from kstream_lab.pipeline_spec import TopicSpec, load_pipeline
from kstream_lab.schemas.serde import json_serializer
from tests.support.paths import ROOT, free_port
from tests.support.processes import run_cli

START_MS = recent_start_ms()  # recent event times, as a live pipeline has


def test_apply_is_idempotent_and_grows_but_never_shrinks(kafka_settings, topic_factory):
    name = topic_factory("grow", partitions=2)
    spec = TopicSpec(name=name, partitions=2, retention_ms=3_600_000)
    assert [c.action for c in apply_topics(kafka_settings, [spec])] == ["alter-config"]
    assert [c.action for c in apply_topics(kafka_settings, [spec])] == ["unchanged"]
    grown = spec.model_copy(update={"partitions": 4})
    assert [c.action for c in apply_topics(kafka_settings, [grown])] == ["add-partitions"]
    assert len(watermarks(kafka_settings, name)) == 4
    with pytest.raises(TopicError, match="cannot shrink"):
        plan_changes(kafka_settings, [spec])
    assert [c.action for c in apply_topics(kafka_settings, [spec], force=True)] == ["recreate"]
    assert len(watermarks(kafka_settings, name)) == 2


def test_generator_counts_and_truth(kafka_settings, topic_factory, tmp_path):
    name = topic_factory("orders", partitions=6)
    window = load_pipeline(ROOT / "pipelines/orders.yaml").aggregation().window
    truth = tmp_path / "truth.parquet"
    summary = produce_orders(
        kafka_settings,
        TopicSpec(name=name, partitions=6),
        json_serializer,
        window,
        count=5_000,
        seed=3,
        start_ms=START_MS,
        late_fraction=0.02,
        poison_fraction=0.01,
        truth=truth,
        progress=False,
    )
    desc = describe_topic(kafka_settings, name)
    assert desc.messages == 5_000
    assert {p.partition: p.high for p in desc.partitions} == dict(summary.per_partition)
    df = pl.read_parquet(truth)
    assert df.height == 5_000
    assert df.group_by("kind").len().sort("kind").rows() == sorted(summary.kinds.items())
    assert df.filter(pl.col("kind") != "poison")["total_cents"].null_count() == 0


def test_cli_topic_errors_exit_2(kafka_settings):
    res = run_cli("topics", "describe", "no-such-topic")
    assert res.returncode == 2
    assert "unknown topic 'no-such-topic'" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("produce-orders", "--count", "-1", "--seed", "1")
    assert res.returncode == 2 and "--count" in res.stderr


def test_cli_broker_not_running_exit_2(tmp_path):
    port = free_port()
    res = run_cli("topics", "list", env={"KSTREAM_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "did not answer" in res.stderr and "broker up" in res.stderr


def test_data_survives_down_and_up(kafka_settings, tmp_path):
    """A second broker of its own: records and offsets are the same after a restart."""
    s = kafka_settings.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "broker_port": free_port(),
            "controller_port": free_port(),
            "bootstrap_servers": None,
        }
    )
    broker = LocalBroker(s)
    broker.up()
    try:
        with pytest.raises(BrokerError, match="already running"):
            broker.up()
        apply_topics(s, [TopicSpec(name="persist", partitions=3)])
        window = load_pipeline(ROOT / "pipelines/orders.yaml").aggregation().window
        produce_orders(
            s,
            TopicSpec(name="persist", partitions=3),
            json_serializer,
            window,
            count=3_000,
            seed=9,
            start_ms=START_MS,
            progress=False,
        )
        before = [(p.partition, p.low, p.high) for p in watermarks(s, "persist")]
        cluster_id = (broker.home / "cluster.id").read_text()
        assert broker.down() is True
        assert broker.pid() is None
        broker.up()
        assert [(p.partition, p.low, p.high) for p in watermarks(s, "persist")] == before
        assert sum(h for _, _, h in before) == 3_000
        assert (broker.home / "cluster.id").read_text() == cluster_id
    finally:
        broker.down()


def test_port_in_use_is_refused_cleanly(kafka_settings, tmp_path):
    s = kafka_settings.model_copy(
        update={
            "data_dir": tmp_path / "d2",
            "bootstrap_servers": None,
            "broker_port": int(kafka_settings.bootstrap.rsplit(":", 1)[1]),
        }
    )
    broker = LocalBroker(s)
    with pytest.raises(BrokerError, match="already in use"):
        broker.up()
    assert not broker.pid_file.exists()


def test_done_when_sequence_starts_the_local_registry_for_avro(kafka_settings, tmp_path):
    """`broker up && topics apply pipelines/orders.yaml && produce-orders`: no separate `registry up`."""
    env = {
        "KSTREAM_DATA_DIR": str(tmp_path / "d"),
        "KSTREAM_BROKER_PORT": str(free_port()),
        "KSTREAM_CONTROLLER_PORT": str(free_port()),
        "KSTREAM_REGISTRY_PORT": str(free_port()),
    }
    try:
        assert run_cli("broker", "up", env=env).returncode == 0
        assert run_cli("topics", "apply", "pipelines/orders.yaml", env=env).returncode == 0
        res = run_cli("produce-orders", "--count", "2000", "--seed", "1", "--no-progress", env=env)
        assert res.returncode == 0, res.stderr
        assert "schema registry up at" in res.stdout and "produced 2000 records to orders_raw" in res.stdout
        assert (
            "topic orders_raw: 6 partitions, 2000 messages"
            in run_cli("topics", "describe", "orders_raw", env=env).stdout
        )
    finally:
        run_cli("registry", "down", env=env)
        run_cli("broker", "down", env=env)
