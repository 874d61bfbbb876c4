"""Every record-level bounded read -- ``read_records``, the local registry's ``_schemas`` restore
(``SchemaLog.read_all``) and the aggregator's changelog restore (``read_changelog``) -- goes through
``kafka.read`` and follows its end rule on a real broker: aborted records, transaction markers and
compaction gaps are skipped, and an open transaction neither blocks the read nor shows its records."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka.admin import NewTopic

from kstream_lab.kafka.clients import make_admin, make_producer
from kstream_lab.kafka.read import read_records
from kstream_lab.kafka.schema_registry import SchemaLog
from kstream_lab.kafka.topics import delete_topics
from kstream_lab.kafka.transactional import read_changelog

# A compacted changelog whose segments roll after a second (only closed segments are compacted),
# cleaned as soon as anything is dirty.
COMPACTED = {
    "cleanup.policy": "compact",
    "segment.ms": "1000",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",
}


@pytest.fixture
def changelog(kafka_settings):
    name = f"changelog-{uuid.uuid4().hex[:8]}"
    admin = make_admin(kafka_settings)
    admin.create_topics([NewTopic(name, 1, 1, config=COMPACTED)])[name].result(30)
    yield name
    delete_topics(kafka_settings, [name])


class Writer:
    """A transactional producer writing (key, value) pairs into the changelog's partition 0."""

    def __init__(self, settings, topic: str) -> None:
        self.topic = topic
        self.producer = make_producer(settings, transactional_id=f"{topic}-writer")
        self.producer.init_transactions(30)

    def open(self, pairs: list[tuple[str, str]]) -> None:
        self.producer.begin_transaction()
        for k, v in pairs:
            self.producer.produce(self.topic, key=k.encode(), value=v.encode(), partition=0)
        self.producer.flush(10)

    def commit(self, pairs: list[tuple[str, str]]) -> None:
        self.open(pairs)
        self.producer.commit_transaction(30)

    def abort(self, pairs: list[tuple[str, str]] | None = None) -> None:
        if pairs is not None:
            self.open(pairs)
        self.producer.abort_transaction(30)


def keys(prefix: str, value: str, indices) -> list[tuple[str, str]]:
    return [(f"{prefix}{i}", value) for i in indices]


def read_all_three(settings, topic: str) -> list[list[tuple[bytes, bytes | None]]]:
    """The committed (key, value) pairs as each reader returns them; each must return within 10 s."""
    out = []
    for read in (
        lambda: [(r.key, r.value) for r in read_records(settings, topic)],
        lambda: SchemaLog(settings, topic).read_all(),
        lambda: read_changelog(settings, topic, [0])[0],
    ):
        t = time.monotonic()
        out.append(read())
        assert time.monotonic() - t < 10, "a bounded read waited for the open transaction"
    return out


def encoded(pairs: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


def test_restores_skip_aborted_records_and_compaction_gaps_and_stop_at_the_last_stable_offset(
    kafka_settings, changelog
) -> None:
    w = Writer(kafka_settings, changelog)
    w.commit(keys("k", "a", range(10)))  # offsets 0-9, commit marker 10
    w.abort(keys("k", "aborted", range(5)))  # 11-15, abort marker 16
    w.commit(keys("k", "c", range(5)))  # 17-21, commit marker 22
    w.open([("k5", "open")])  # 23, left open: the last stable offset is 23
    before = keys("k", "a", range(10)) + keys("k", "c", range(5))
    assert read_all_three(kafka_settings, changelog) == [encoded(before)] * 3
    got = read_records(kafka_settings, changelog)
    assert [r.offset for r in got] == list(range(10)) + list(range(17, 22))
    uncommitted = read_records(kafka_settings, changelog, read_committed=False)  # the high watermark
    assert [(r.offset, r.value) for r in uncommitted[-1:]] == [(23, b"open")] and len(uncommitted) == 21
    w.abort()

    time.sleep(1.1)
    w.commit([("k9", "d")])  # a new segment: the first one (offsets 0-24) can be compacted
    time.sleep(1.1)
    w.commit([("k10", "f")])  # and the second one
    compacted = keys("k", "a", range(5, 9)) + keys("k", "c", range(5)) + [("k9", "d"), ("k10", "f")]
    deadline = time.monotonic() + 120
    while [(r.key, r.value) for r in read_records(kafka_settings, changelog)] != encoded(compacted):
        assert time.monotonic() < deadline, "the log cleaner did not compact the changelog within 120 s"
        time.sleep(1)

    w.open([("k11", "open")])  # an open transaction at the end of the compacted log
    assert read_all_three(kafka_settings, changelog) == [encoded(compacted)] * 3
    offsets = [r.offset for r in read_records(kafka_settings, changelog)]
    assert offsets[:4] == [5, 6, 7, 8] and offsets[4:9] == list(range(17, 22))  # gaps left by compaction
    w.abort()
    w.producer.flush(10)
