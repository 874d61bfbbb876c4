"""The batching rules both loops share: one open batch per partition, small first, doubling after."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from kstream_lab.kafka.read.batch import Batch

FIRST_BATCH = 2_000


class Builder(Protocol):
    """A batch being filled by one loop, a consumed chunk at a time; ``seal`` hands it over."""

    def __len__(self) -> int: ...

    def seal(self) -> Batch: ...


B = TypeVar("B", bound=Builder)


class PartitionBatches(Generic[B]):
    """The open batches of a bounded read, one per partition.

    Each partition's first batch is small and the next ones double up to ``batch_size``, so decoding
    starts after a few thousand records instead of after batch_size per partition (with six
    partitions filling together, ~120k records into the read the decoder had not started yet). A
    batch is handed over, sealed, when it reaches its target or its partition is finished; the
    callers add whole consumed chunks, so a chunk is never split.
    """

    def __init__(self, make: Callable[[int], B], ends: dict[int, int], batch_size: int) -> None:
        self._make, self._batch_size = make, batch_size
        self._open: dict[int, B] = {}
        self._targets = {p: min(batch_size, FIRST_BATCH) for p in ends}

    def get(self, partition: int) -> B:
        """The partition's open batch, started if there is none."""
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = self._make(partition)
        return batch

    def full(self, partition: int) -> list[Batch]:
        """The partition's batch if it reached its target (the next target doubles)."""
        if len(self._open[partition]) < self._targets[partition]:
            return []
        self._targets[partition] = min(self._batch_size, 2 * self._targets[partition])
        return [self._open.pop(partition).seal()]

    def finished(self, pending: dict[int, int]) -> list[Batch]:
        """The batches of partitions no longer pending: they will not grow."""
        return [self._open.pop(p).seal() for p in sorted(p for p in self._open if p not in pending)]

    def rest(self) -> list[Batch]:
        return [self._open.pop(p).seal() for p in sorted(self._open)]
