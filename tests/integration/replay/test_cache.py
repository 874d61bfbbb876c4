"""The exact replay cache against the real broker: cached reads equal fresh ones row for row over
random ranges of an Avro topic with aborted transactions (offset gaps) and poison; a hit fetches
nothing for the cached part (the lineage says which parts came from where); a re-created topic, a
retention move and a changed writer schema are never served stale; compacted topics are not cached."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

import kstream_lab
from kstream_lab.generator.orders import recent_start_ms
from kstream_lab.generator.produce import produce_orders
from kstream_lab.kafka.clients import make_producer
from kstream_lab.lineage import load_reads
from kstream_lab.pipeline_spec import TopicSpec, load_pipeline
from kstream_lab.replay import cache
from kstream_lab.schemas.serde import value_serializer
from kstream_lab.settings import Settings
from tests.support.paths import ROOT

WINDOW = load_pipeline(ROOT / "pipelines/orders.yaml").aggregation().window


def fill(settings: Settings, spec: TopicSpec, count: int, seed: int) -> None:
    produce_orders(
        settings,
        spec,
        value_serializer(settings, spec),
        WINDOW,
        count=count,
        seed=seed,
        start_ms=recent_start_ms(),
        poison_fraction=0.02,
        progress=False,
    )


def aborted(settings: Settings, topic: str, partitions: int, n: int) -> None:
    """``n`` records per partition in an aborted transaction: offsets the range spans but never returns."""
    producer = make_producer(settings, transactional_id=f"{topic}-aborter")
    producer.init_transactions(30)
    producer.begin_transaction()
    for p in range(partitions):
        for i in range(n):
            producer.produce(topic, key=f"x{i}".encode(), value=b"\x00\x00\x00\x00\x01garbage", partition=p)
    producer.flush(10)
    producer.abort_transaction(30)


def test_cached_reads_equal_fresh_reads_and_hits_fetch_nothing(kafka_settings: Settings, topic_factory, tmp_path: Path):
    base = kafka_settings.model_copy(update={"pipeline_file": ROOT / "pipelines/orders.yaml", "data_dir": tmp_path})
    lineage = tmp_path / "lineage.jsonl"
    settings = base.model_copy(update={"lineage_file": lineage})
    name = topic_factory("cached", partitions=3)
    spec = TopicSpec(name=name, partitions=3, value_format="avro", schema="Order")
    fill(settings, spec, 3000, seed=5)
    aborted(settings, name, 3, 40)
    fill(settings, spec, 1500, seed=6)
    fresh_all = kstream_lab.replay(name, settings=settings, cache=False)
    rng = random.Random(3)
    for _ in range(8):
        bounds = {p: sorted(rng.sample(range(0, 1700), 2)) for p in range(3)}
        start = {p: a for p, (a, _b) in bounds.items()}
        end = {p: b for p, (_a, b) in bounds.items()}
        fresh = kstream_lab.replay(name, start=start, end=end, settings=settings, cache=False)
        lineage.unlink(missing_ok=True)
        got = kstream_lab.replay(name, start=start, end=end, settings=settings, cache=True)
        assert_frame_equal(got, fresh)
    # now the whole topic: a mix of kept segments and holes, equal to the fresh read
    lineage.unlink(missing_ok=True)
    assert_frame_equal(kstream_lab.replay(name, settings=settings, cache=True), fresh_all)
    # and again: every part is a hit, nothing is fetched
    lineage.unlink(missing_ok=True)
    assert_frame_equal(kstream_lab.replay(name, settings=settings, cache=True), fresh_all)
    reads = load_reads(lineage)
    assert reads and {r["source"] for r in reads} == {"cache"}
    assert sum(r["records"] for r in reads) == fresh_all.height
    # the disk tier alone (a new kernel): the same rows from Parquet
    cache.flush()
    cache.forget_memory()
    lineage.unlink(missing_ok=True)
    assert_frame_equal(kstream_lab.replay(name, settings=settings, cache=True), fresh_all)
    assert {r["source"] for r in load_reads(lineage)} == {"cache"}
    # new records after the cached range: only the tail is fetched
    fill(settings, spec, 300, seed=7)
    lineage.unlink(missing_ok=True)
    grown = kstream_lab.replay(name, settings=settings, cache=True)
    fetched = [r for r in load_reads(lineage) if r["source"] == "broker" and r["end"] > r["start"]]
    assert sum(r["records"] for r in fetched) == grown.height - fresh_all.height  # the 300 less their poison
    assert 280 < grown.height - fresh_all.height <= 300
    assert_frame_equal(grown, kstream_lab.replay(name, settings=base, cache=False))
    listed = [e for e in cache.entries(settings) if e.topic == name]
    assert len(listed) == 1 and listed[0].rows >= grown.height


def test_a_recreated_topic_and_a_changed_schema_are_not_served_stale(kafka_settings: Settings, topic_factory, tmp_path):
    from kstream_lab.kafka.topics import apply_topics, delete_topics

    settings = kafka_settings.model_copy(update={"pipeline_file": ROOT / "pipelines/orders.yaml", "data_dir": tmp_path})
    name = topic_factory("recreated", partitions=1)
    spec = TopicSpec(name=name, partitions=1, value_format="avro", schema="Order")
    fill(settings, spec, 200, seed=1)
    first = kstream_lab.replay(name, settings=settings, cache=True)
    delete_topics(settings, [name])
    apply_topics(settings, [TopicSpec(name=name, partitions=1)])
    fill(settings, spec, 120, seed=2)
    again = kstream_lab.replay(name, settings=settings, cache=True)
    assert_frame_equal(again, kstream_lab.replay(name, settings=settings, cache=False))
    assert again.height < first.height and again["order_id"].to_list() != first["order_id"].to_list()[: again.height]
    assert len([e for e in cache.entries(settings) if e.topic == name]) == 2  # the old topic's entry is apart
    # a writer schema id that now names another schema (a registry reset): the segment is dropped
    (entry,) = [e for e in cache.entries(settings) if e.topic == name and e.rows == again.height]
    index = json.loads((entry.directory / "segments.json").read_text())
    for seg in index["segments"]:
        seg["schemas"] = {i: "0" * 64 for i in seg["schemas"]}
    (entry.directory / "segments.json").write_text(json.dumps(index))
    assert_frame_equal(kstream_lab.replay(name, settings=settings, cache=True), again)
    index = json.loads((entry.directory / "segments.json").read_text())
    assert all(set(seg["schemas"].values()) != {"0" * 64} for seg in index["segments"])
    assert cache.clear(settings, name) == 2 and not [e for e in cache.entries(settings) if e.topic == name]


def test_compacted_topics_are_not_cached(kafka_settings: Settings, topic_factory, tmp_path):
    settings = kafka_settings.model_copy(update={"data_dir": tmp_path})
    name = topic_factory("compacted", partitions=1, cleanup_policy="compact")
    producer = make_producer(settings)
    for i in range(20):
        producer.produce(name, key=f"k{i % 5}".encode(), value=f'{{"n": {i}}}'.encode(), partition=0)
    producer.flush(10)
    df = kstream_lab.replay(name, settings=settings, cache=True, schema={"n": pl.Int64})
    assert df.height == 20 and cache.entries(settings) == []
