"""The dashboard's broker-side health against the real broker: exact counts on transactional topics,
latest dead letters with their reasons, group lag per partition and watermark deltas."""

from __future__ import annotations

import threading

from kstream_lab.kafka.consuming import BatchConsumer
from kstream_lab.kafka.producing import BatchProducer, publish_atomically
from kstream_lab.monitoring.health import (
    PipelineTopics,
    collect_health,
    count_records,
    lag_table,
    latest_dead_letters,
    snapshot_offsets,
)
from kstream_lab.settings import Settings
from kstream_lab.workers.dlq import dlq_headers

T = 1_790_000_000_000


def dead_letter(topic: str, source: str, i: int, partition: int) -> dict:
    exc = ValueError(f"bad order {i}")
    return {
        "topic": topic,
        "key": f"order-{i}".encode(),
        "value": b"\x00garbage",
        "partition": partition,
        "headers": dlq_headers(exc, topic=source, partition=i % 3, offset=100 + i, failed_at_ms=T + i),
    }


def test_counts_are_exact_and_incremental_on_a_transactional_topic(kafka_settings: Settings, topic_factory) -> None:
    dlq = topic_factory("dlq", partitions=2)
    batches = [range(0, 5), range(5, 12), range(12, 13)]
    for n, batch in enumerate(batches):
        publish_atomically(
            kafka_settings, f"dash-test-{dlq}-{n}", [dead_letter(dlq, "orders_raw", i, i % 2) for i in batch]
        )
    topics = PipelineTopics("r", "e", "a", dlq, "l")
    snap = snapshot_offsets(kafka_settings, topics)
    assert snap.missing == ("r", "e", "a", "l")
    assert snap.messages(dlq) == 13 + 5  # a commit marker in each partition a transaction wrote to: 2 + 2 + 1
    first = count_records(kafka_settings, dlq, snap.offsets[dlq])
    assert first.records == 13
    assert count_records(kafka_settings, dlq, snap.offsets[dlq], first) is first  # unchanged: nothing read

    publish_atomically(
        kafka_settings,
        f"dash-test-{dlq}-3",
        [dead_letter(dlq, "orders_raw", 13, 0), dead_letter(dlq, "orders_raw", 14, 0)],
    )
    snap2 = snapshot_offsets(kafka_settings, topics)
    second = count_records(kafka_settings, dlq, snap2.offsets[dlq], first)
    assert second.records == 15 and second.ends[0] > first.ends[0] and second.ends[1] == first.ends[1]

    latest = latest_dead_letters(kafka_settings, dlq, snap2.offsets[dlq], n=4)
    assert [r["key"] for r in latest] == ["order-14", "order-13", "order-12", "order-11"]
    assert latest[0] == {
        "failed at (UTC)": "2026-09-21 14:13:20",
        "error": "ValueError",
        "message": "bad order 14",
        "source": "orders_raw[2]@114",
        "key": "order-14",
        "dlq offset": latest[0]["dlq offset"],
    }


def test_group_lag_per_partition_and_watermark_deltas(kafka_settings: Settings, topic_factory) -> None:
    raw = topic_factory("raw", partitions=2)
    topics = PipelineTopics(
        raw, topic_factory("enr", 1), topic_factory("agg", 1), topic_factory("dlq", 1), topic_factory("late", 1)
    )

    def produce(n: int, partition: int) -> None:
        with BatchProducer(kafka_settings) as producer:
            for i in range(n):
                producer.produce(raw, key=f"k{i}".encode(), value=b"{}", partition=partition)

    produce(6, 0)
    produce(4, 1)
    group = f"dash-group-{raw}"
    consumer = BatchConsumer(kafka_settings, raw, group, service="test")
    seen = 0
    for batch in consumer.batches(threading.Event()):
        seen += len(batch)
        if seen >= 10:
            break
    consumer.commit()
    consumer.close()
    before = collect_health(kafka_settings, topics, None)
    produce(3, 1)
    after = collect_health(kafka_settings, topics, before.snapshot)
    rows = [r for r in lag_table(after) if r["group"] == group]
    assert rows == [{"group": group, "topic": raw, "total": 3, "p0": 0, "p1": 3}]
    assert after.snapshot.high(raw) - before.snapshot.high(raw) == 3
    assert before.rates[raw] is None and after.rates[raw] is not None and after.rates[raw] > 0
