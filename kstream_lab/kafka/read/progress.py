"""The one end-of-range rule of a bounded read, and what its errors mean.

The ends are fixed before the read starts (``bounds``). Under read_committed the last offsets before
an end can be transaction markers or aborted records, and compaction leaves gaps, so a partition is
never done by waiting for a record at ``end - 1``: it is done when a record at or past ``end - 1``
arrives, or when librdkafka reports partition EOF at or past ``end``. Records at or past the end
are cut by the loops. Both loops report to one :class:`Progress`, so the rule is written once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import KafkaError

from kstream_lab.errors import BrokerError, TopicError

_GONE = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC)
HANDLED = (KafkaError._PARTITION_EOF, KafkaError.OFFSET_OUT_OF_RANGE, *_GONE)
# Connection trouble librdkafka retries by itself; the stall timeout bounds how long a read waits.
_TRANSIENT = (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._RESOLVE)


class Progress:
    """Which partitions of a read are still pending; ``pause`` stops fetching a finished one."""

    def __init__(self, topic: str, ends: dict[int, int], pause: Callable[[int], None], stall_timeout: float) -> None:
        self.topic, self.ends = topic, ends
        self.pending = dict(ends)
        self._pause, self._stall_timeout = pause, stall_timeout
        self._last = time.monotonic()

    def saw(self, partition: int, last_offset: int) -> None:
        """Records of ``partition`` up to ``last_offset`` arrived: at or past ``end - 1`` it is done."""
        if last_offset >= self.ends[partition] - 1:
            self.finish(partition)

    def finish(self, partition: int) -> None:
        if self.pending.pop(partition, None) is not None:
            self._pause(partition)

    def active(self) -> None:
        """Something arrived (records or events): the stall clock restarts."""
        self._last = time.monotonic()

    def idle(self) -> None:
        """Nothing arrived: a BrokerError once no partition made progress for the stall timeout."""
        if time.monotonic() - self._last > self._stall_timeout:
            raise BrokerError(
                f"reading {self.topic} stalled: no records for {self._stall_timeout:.0f}s; still waiting "
                f"for partitions {sorted(self.pending)} to reach offsets {self.pending}",
                hint="is the broker up? were the offsets deleted?",
            )

    def event(self, code: int, partition: int, offset: int, text: str) -> None:
        """One error message: EOF at or past a pending end finishes that partition; deleted offsets
        and vanished topics are TopicErrors; connection trouble is waited out (the stall timeout
        bounds it); anything else fails the read."""
        topic = self.topic
        if code == KafkaError._PARTITION_EOF:
            if partition in self.pending and offset >= self.pending[partition]:
                self.finish(partition)
        elif code == KafkaError.OFFSET_OUT_OF_RANGE:
            raise TopicError(
                f"{topic}[{partition}]: offsets of the range were deleted during the read ({text})",
                hint="retention removed them; choose a later start",
            )
        elif code in _GONE:
            raise TopicError(f"topic {topic!r} disappeared during the read ({text})")
        elif code not in _TRANSIENT:
            raise BrokerError(f"reading {topic} failed: {text}")
