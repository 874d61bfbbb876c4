"""Consumer-side helpers: batched group consumption, bounded reads to the end, lag and open transactions.

``read_partitions_to_end`` is how the aggregator restores state: it reads changelog partitions from
the beginning up to the end offset as it stood at call time, ``read_committed``, so aborted writes
of a crashed instance never leak into the restored state.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from kstream_lab.errors import BrokerError
from kstream_lab.kafka.clients import make_admin, make_consumer
from kstream_lab.observability.metrics import METRICS
from kstream_lab.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """A consumed record detached from librdkafka (safe to keep after the consumer is closed)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int


def _record(m: Any) -> Record:
    return Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(), tuple(m.headers() or ()), m.timestamp()[1])


def read_partitions_to_end(
    settings: Settings, topic: str, partitions: list[int], *, timeout: float = 120.0
) -> dict[int, list[tuple[bytes, bytes | None]]]:
    """(key, value) pairs of each partition from offset 0 to its end offset at call time, committed only."""
    out: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in partitions}
    consumer = make_consumer(settings, f"kstream-lab-restore-{uuid.uuid4().hex[:8]}", **{"fetch.wait.max.ms": 50})
    try:
        ends: dict[int, int] = {}
        for p in partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > 0:
                ends[p] = high
        if not ends:
            return out
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        pending = dict(ends)
        while pending:
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"restoring {topic} partitions {sorted(pending)} did not reach the end within {timeout:.0f}s",
                    hint="an open transaction may be blocking read_committed",
                )
            for m in consumer.consume(10000, 0.2):
                if m.error() is None:
                    out[m.partition()].append((m.key(), m.value()))
            for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                if tp.offset >= pending[tp.partition]:
                    del pending[tp.partition]
        return out
    finally:
        consumer.close()


def update_lag(consumer: Any, service: str) -> None:
    """Set the lag gauge from the high watermarks the last fetches reported (no extra requests)."""
    try:
        assignment = consumer.assignment()
        for tp in consumer.position(assignment):
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                METRICS.lag.labels(service, tp.topic, str(tp.partition)).set(max(0, high - tp.offset))
    except KafkaException as exc:  # lag is best effort; never fail a batch over it
        log.debug("lag update failed: %s", exc)


class BatchConsumer:
    """A group consumer handing out batches, committing only when told (after the sink's write)."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        group_id: str,
        *,
        service: str,
        batch_size: int = 5000,
        batch_timeout_s: float = 0.05,
        session_timeout_ms: int = 6000,
    ) -> None:
        self.topic, self.service = topic, service
        self.batch_size, self.batch_timeout_s = batch_size, batch_timeout_s
        self.consumer = make_consumer(
            settings,
            group_id,
            **{
                "session.timeout.ms": session_timeout_ms,
                "heartbeat.interval.ms": max(500, session_timeout_ms // 6),
                "fetch.wait.max.ms": 100,
            },
        )
        self.consumer.subscribe([topic])

    def batches(self, stop: threading.Event) -> Iterator[list[Record]]:
        while not stop.is_set():
            try:
                messages = self.consumer.consume(self.batch_size, self.batch_timeout_s)
            except KafkaException as exc:
                raise BrokerError(f"consume from {self.topic}: {exc.args[0].str()}") from None
            batch = []
            for m in messages:
                err = m.error()
                if err is None:
                    batch.append(_record(m))
                elif err.fatal():
                    raise BrokerError(f"consume from {self.topic}: {err.str()}")
                elif err.code() != KafkaError._PARTITION_EOF:
                    METRICS.errors.labels(self.service, "consume").inc()
            if batch:
                METRICS.consumed.labels(self.service, self.topic).inc(len(batch))
                yield batch

    def commit(self) -> None:
        """Synchronously commit the positions of everything handed out so far."""
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                raise BrokerError(f"commit on {self.topic}: {exc.args[0].str()}") from None
        update_lag(self.consumer, self.service)

    def close(self) -> None:
        self.consumer.close()


def read_topic(settings: Settings, topic: str, *, read_committed: bool = True, timeout: float = 60.0) -> list[Record]:
    """Every record of ``topic`` up to its end offsets at call time (tests, tools, the DLQ triage)."""
    consumer = make_consumer(settings, f"kstream-lab-read-{uuid.uuid4().hex[:8]}", read_committed=read_committed)
    try:
        md = consumer.list_topics(topic, timeout=10).topics[topic]
        if md.error is not None:
            raise BrokerError(f"cannot read {topic}: {md.error.str()}")
        parts = sorted(md.partitions)
        ends_all = (stable_end_offsets if read_committed else high_watermarks)(settings, topic, parts)
        ends = {p: high for p, high in ends_all.items() if high > 0}
        out: list[Record] = []
        if not ends:
            return out
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for m in consumer.consume(10000, 0.2):
                if m.error() is None and m.offset() < ends.get(m.partition(), -1):
                    out.append(_record(m))
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
        if ends:
            raise BrokerError(f"reading {topic} did not reach the end of partitions {sorted(ends)}")
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def stable_end_offsets(settings: Settings, topic: str, partitions: list[int]) -> dict[int, int]:
    """Last stable offset per partition: where a read_committed reader stops (below any open transaction)."""
    return _list_offsets(settings, topic, partitions, IsolationLevel.READ_COMMITTED)


def high_watermarks(settings: Settings, topic: str, partitions: list[int]) -> dict[int, int]:
    return _list_offsets(settings, topic, partitions, IsolationLevel.READ_UNCOMMITTED)


def _list_offsets(settings: Settings, topic: str, partitions: list[int], isolation: Any) -> dict[int, int]:
    admin = make_admin(settings)
    req = {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}
    res = admin.list_offsets(req, isolation_level=isolation, request_timeout=10)
    return {tp.partition: fut.result(timeout=15).offset for tp, fut in res.items()}


def open_transaction_partitions(settings: Settings, topic: str, partitions: list[int]) -> list[int]:
    """Partitions whose last stable offset lags the high watermark, i.e. with a transaction still open."""
    stable = stable_end_offsets(settings, topic, partitions)
    high = high_watermarks(settings, topic, partitions)
    return sorted(p for p in partitions if stable[p] < high[p])
