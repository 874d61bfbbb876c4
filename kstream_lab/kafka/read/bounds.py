"""Where a bounded read starts and ends: each partition's low offset and end, snapshotted once.

Under read_committed (the default) the end is the last stable offset when the snapshot is taken --
a read_committed consumer's watermark query answers it -- so an open transaction cannot make a read
wait for it, and producers that keep writing never extend it. Under read_uncommitted it is the high
watermark.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException, TopicPartition

from kstream_lab.errors import BrokerError, TopicError
from kstream_lab.kafka.admin import topic_partitions
from kstream_lab.kafka.clients import make_consumer
from kstream_lab.settings import Settings


@dataclass(frozen=True)
class PartitionBounds:
    """A partition's first retained offset and its end at snapshot time."""

    partition: int
    low: int
    end: int


def snapshot_bounds(
    settings: Settings,
    topic: str,
    partitions: list[int] | None = None,
    timeout: float = 10.0,
    *,
    read_committed: bool = True,
) -> dict[int, PartitionBounds]:
    """Low offset and end per partition, now; TopicError for unknown topics/partitions.

    Offset queries that fail are retried until ``timeout``: a topic created a moment ago can have no
    leader yet (the local registry creates ``_schemas`` and reads it right away).
    """
    consumer = make_consumer(settings, "kstream-lab-bounds", read_committed=read_committed)
    deadline = time.monotonic() + timeout
    try:
        have = topic_partitions(consumer, topic, timeout)
        wanted = have if partitions is None else sorted(set(partitions))
        missing = [p for p in wanted if p not in have]
        if missing:
            raise TopicError(f"topic {topic!r} has no partition(s) {missing}", hint=f"it has {have}")
        return {p: _bounds(consumer, topic, p, timeout, deadline) for p in wanted}
    except KafkaException as exc:
        raise BrokerError(f"cannot read offsets of {topic!r}: {exc}", hint="is the broker up?") from None
    finally:
        consumer.close()


def _bounds(consumer, topic: str, partition: int, timeout: float, deadline: float) -> PartitionBounds:
    while True:
        try:
            low, end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            return PartitionBounds(partition, low, end)
        except KafkaException:  # NOT_LEADER / LEADER_NOT_AVAILABLE right after creation
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def open_transaction_partitions(settings: Settings, topic: str, partitions: list[int]) -> list[int]:
    """Partitions whose last stable offset lags the high watermark, i.e. with a transaction still open."""
    stable = snapshot_bounds(settings, topic, partitions)
    high = snapshot_bounds(settings, topic, partitions, read_committed=False)
    return sorted(p for p in partitions if stable[p].end < high[p].end)
