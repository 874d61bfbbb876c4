"""Record-level bounded reads: plain records over the same engine, for callers that want objects.

The aggregator's changelog restore, the local registry's ``_schemas`` restore, the test harness and
tools read a topic (or some partitions) from a start to its end as it stood at call time. They go
through ``read_batches`` like replay, so they follow its end rule: under read_committed the end is
the last stable offset, so an open transaction neither blocks them nor shows its records, and
aborted records, transaction markers and compaction gaps are skipped, never waited for. They use the
Python loop: a Record per record is built anyway, which is what the native loop exists to avoid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kstream_lab.errors import ConfigError
from kstream_lab.kafka.read.bounds import PartitionBounds, snapshot_bounds
from kstream_lab.kafka.read.engine import read_batches
from kstream_lab.settings import Settings

Start = int | Mapping[int, int] | None


@dataclass(frozen=True)
class Record:
    """A consumed record detached from librdkafka (safe to keep after the consumer is closed)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int


def read_records(
    settings: Settings,
    topic: str,
    partitions: list[int] | None = None,
    *,
    start: Start = None,
    read_committed: bool = True,
    stall_timeout: float = 30.0,
) -> list[Record]:
    """Every record of ``topic`` (or of ``partitions``) from ``start`` to the end snapshotted now,
    ordered by partition, then offset.

    ``start`` is an offset for every partition or a ``{partition: offset}`` dict (partitions left out
    start at their first retained offset); None (the default) is the first retained offset. A start
    below it starts there. Raises TopicError for an unknown topic or partition, BrokerError when the
    read makes no progress for ``stall_timeout`` seconds.
    """
    bounds = snapshot_bounds(settings, topic, partitions, read_committed=read_committed)
    ranges = {p: (_start(start, b), b.end) for p, b in bounds.items()}
    by_partition: dict[int, list[Record]] = {p: [] for p in bounds}
    for batch in read_batches(
        settings, topic, ranges, stall_timeout=stall_timeout, read_committed=read_committed, loop="python"
    ):
        p = batch.partition
        by_partition[p].extend(Record(topic, p, o, k, v, h, t) for o, k, v, h, t in batch.rows())
    return [r for p in sorted(by_partition) for r in by_partition[p]]


def _start(start: Start, bounds: PartitionBounds) -> int:
    if start is None:
        return bounds.low
    if isinstance(start, Mapping):
        given = start.get(bounds.partition)
        return bounds.low if given is None else max(bounds.low, int(given))
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ConfigError(f"start must be a non-negative offset or a {{partition: offset}} dict, got {start!r}")
    return max(bounds.low, start)
