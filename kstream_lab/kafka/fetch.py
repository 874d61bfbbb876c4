"""Bounded, columnar reads of offset ranges: the low-level half of replay (docs/semantics.md §6).

The read is bounded by end offsets fixed before it starts, so producers that keep writing never
extend it. Ends are read with a read_committed consumer, which makes them last *stable* offsets: an
open transaction cannot make the read wait for it. Completion is decided by offsets, never by
waiting for a record at ``end - 1``: under read_committed the last offsets before an end can be
transaction markers or aborted records, and compaction leaves gaps, so a partition is done when a
record at or past ``end - 1`` arrives, or when librdkafka reports partition EOF at or past ``end``.

Two loops follow these rules. By default the native one (``kafka.fetch_native`` over
``kafka.native``: a C loop that writes consumed chunks straight into NumPy/Arrow columns with the
GIL released); where it cannot be built, or ``KSTREAM_REPLAY_FETCH=python``, the confluent-kafka one
below. Batches hold one partition each; here they are filled with ``map`` over the Message methods right
after each ``consume()``, while the messages are in cache: values packed into one buffer (each
followed by a newline, read by the decoders without a copy), keys, timestamps and headers as lists,
offsets as runs. Replay is bound by the Python work per record (the GIL), so the fetch loop does
the least it can per record: no partition or offset objects for contiguous runs, no Python object
kept per value.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from threading import Event
from typing import TYPE_CHECKING, Any

import numpy as np
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from kstream_lab.errors import BrokerError, TopicError
from kstream_lab.kafka.admin import topic_partitions
from kstream_lab.kafka.clients import consumer_config, make_admin, make_consumer
from kstream_lab.packed import PackedBuilder, PackedValues
from kstream_lab.settings import Settings

if TYPE_CHECKING:
    from kstream_lab.kafka.native import NativeConsumer

log = logging.getLogger(__name__)
_ts = itemgetter(1)
# Fetch settings layered over librdkafka's defaults; KSTREAM_CLIENT_CONFIG overrides any of them.
# librdkafka stops fetching a partition whose local queue is over its thresholds and, by default,
# looks again only a second later (fetch.queue.backoff.ms=1000): a bulk reader that drains the queue
# in milliseconds then idles most of the time (~0.2 M msg/s here). A 10 ms back-off keeps the fetcher
# busy, which lets the queues be small: 2.5-4x the throughput at lower peak memory (bench/README.md).
FETCH_TUNING: dict[str, object] = {
    "fetch.queue.backoff.ms": 10,
    "queued.min.messages": 20_000,
    "queued.max.messages.kbytes": 8192,
}
# Messages per consume() call. Small calls keep the Message objects short-lived and cache-warm: with
# the tuning above, 500 per call read ~1.5x faster than 10,000 and ~5x faster than 100,000 here, at a
# fraction of the peak memory (the batches handed to the decoder stay large).
CONSUME_CHUNK = 500
FIRST_BATCH = 2_000
_value, _key, _part, _off, _stamp, _hdrs, _err = (
    Message.value,
    Message.key,
    Message.partition,
    Message.offset,
    Message.timestamp,
    Message.headers,
    Message.error,
)


@dataclass
class Extract:
    """Which per-record metadata the fetch loop takes from each message.

    Keys, timestamps and headers cost the fetch thread ~150 ns per record of GIL-held time (and the
    decoder more to turn them into columns); a read that projects columns turns off what it will not
    show. Flags may be turned off while a read runs (never on again): a batch that lost a column
    midway drops it (None).
    """

    keys: bool = True
    timestamps: bool = True
    headers: bool = True


_ALL = Extract()


@dataclass(frozen=True)
class PartitionBounds:
    """A partition's first retained offset and its end (last stable offset) at snapshot time."""

    partition: int
    low: int
    end: int


class RawBatch:
    """Records of one partition in offset order, in columns.

    Values are packed (``kstream_lab.packed``) chunk by chunk as they are consumed; keys,
    timestamps and headers are lists; offsets are kept as runs (a contiguous run is just its first
    offset and length), so the common case costs no per-record offset object at all. ``headers`` is
    None when no record had headers; ``keys``, ``timestamps`` and ``headers`` are None when they
    were not extracted (``Extract``).
    """

    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition
        self._values = PackedBuilder()
        self._packed: PackedValues | None = None
        self.keys: list[bytes | None] | None = []
        self.timestamps: list[int] | None = []
        self.headers: list[list[tuple[str, bytes]] | None] | None = None
        self._headers_dropped = False
        self._runs: list[tuple[int, int] | list[int]] = []

    @classmethod
    def of(
        cls,
        topic: str,
        partition: int,
        values: list[bytes | None],
        *,
        keys: list[bytes | None] | None = None,
        offsets: list[int] | None = None,
        timestamps: list[int] | None = None,
        headers: list | None = None,
    ) -> RawBatch:
        """A batch from plain lists (tests, benchmarks, decoding values held in memory)."""
        n = len(values)
        batch = cls(topic, partition)
        batch.add_columns(
            values,
            [None] * n if keys is None else keys,
            [0] * n if timestamps is None else timestamps,
            [None] * n if headers is None else headers,
            list(range(n)) if offsets is None else offsets,
        )
        return batch

    def __len__(self) -> int:
        return len(self._values if self._packed is None else self._packed)

    def add(self, msgs: list[Message], first_offset: int | None, extract: Extract | None = None) -> None:
        """Append consumed messages of this partition; ``first_offset`` when their offsets are contiguous."""
        x = extract or _ALL
        self.add_columns(
            list(map(_value, msgs)),
            list(map(_key, msgs)) if x.keys else None,
            list(map(_ts, map(_stamp, msgs))) if x.timestamps else None,
            list(map(_hdrs, msgs)) if x.headers else None,
            list(map(_off, msgs)) if first_offset is None else first_offset,
        )

    def add_columns(
        self,
        values: list,
        keys: list | None,
        timestamps: list[int] | None,
        headers: list | None,
        offsets: list[int] | int,
    ) -> None:
        """Append columns of one chunk; a None column was not extracted, and the batch drops it."""
        n = len(self._values)
        self._values.add(values)
        if keys is None:
            self.keys = None
        elif self.keys is not None:
            self.keys.extend(keys)
        if timestamps is None:
            self.timestamps = None
        elif self.timestamps is not None:
            self.timestamps.extend(timestamps)
        if headers is None or self._headers_dropped:
            self.headers, self._headers_dropped = None, True
        elif self.headers is not None:
            self.headers.extend(headers)
        elif any(headers):
            self.headers = [None] * n + headers
        runs = self._runs
        if isinstance(offsets, int):
            last = runs[-1] if runs else None
            if isinstance(last, tuple) and last[0] + last[1] == offsets:  # continues the previous run
                runs[-1] = (last[0], last[1] + len(values))
            else:
                runs.append((offsets, len(values)))
        else:
            runs.append(offsets)

    def seal(self) -> RawBatch:
        """Finish the batch: join the packed values. The fetch loop does it before handing a batch
        over, because the join of a few MB releases the GIL -- a moment the decoding thread can use
        -- whereas the decoding thread would have to win the GIL back afterwards."""
        if self._packed is None:
            self._packed = self._values.build()
            self._values = PackedBuilder()
        return self

    @property
    def values(self) -> PackedValues:
        return self.seal()._packed  # type: ignore[return-value]

    @property
    def offsets(self) -> np.ndarray:
        """Every record's offset (int64)."""
        parts = [
            np.arange(r[0], r[0] + r[1], dtype=np.int64) if isinstance(r, tuple) else np.array(r, dtype=np.int64)
            for r in self._runs
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def snapshot_bounds(
    settings: Settings, topic: str, partitions: list[int] | None = None, timeout: float = 10.0
) -> dict[int, PartitionBounds]:
    """Low offset and last stable offset per partition, now; TopicError for unknown topics/partitions."""
    consumer = make_consumer(settings, "kstream-lab-replay", read_committed=True)
    try:
        have = topic_partitions(consumer, topic, timeout)
        wanted = have if partitions is None else sorted(set(partitions))
        missing = [p for p in wanted if p not in have]
        if missing:
            raise TopicError(f"topic {topic!r} has no partition(s) {missing}", hint=f"it has {have}")
        out = {}
        for p in wanted:
            low, end = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            out[p] = PartitionBounds(p, low, end)
        return out
    except KafkaException as exc:
        raise BrokerError(f"cannot read offsets of {topic!r}: {exc}", hint="is the broker up?") from None
    finally:
        consumer.close()


def committed_offsets(
    settings: Settings, group_id: str, topic: str, partitions: list[int], timeout: float = 10.0
) -> dict[int, int]:
    """The group's committed offset per partition (partitions it never committed are left out)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = make_admin(settings)
    req = [ConsumerGroupTopicPartitions(group_id, [TopicPartition(topic, p) for p in partitions])]
    try:
        res = admin.list_consumer_group_offsets(req)[group_id].result(timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"cannot read committed offsets of group {group_id!r}: {exc}") from None
    return {tp.partition: tp.offset for tp in res.topic_partitions if tp.offset >= 0}


def fetch_batches(
    settings: Settings,
    topic: str,
    ranges: dict[int, tuple[int, int]],
    *,
    batch_size: int = 50_000,
    stall_timeout: float = 30.0,
    stop: Event | None = None,
    extract: Extract | None = None,
) -> Iterator[RawBatch]:
    """Yield every committed record with ``start <= offset < end`` per partition, then stop.

    Each batch holds records of one partition in offset order, ``batch_size`` or a little more (a
    consumed chunk is never split); batches of different partitions interleave.

    ``ranges`` maps partition -> (start, end). Raises BrokerError if no partition makes progress for
    ``stall_timeout`` seconds, and TopicError if offsets vanish (retention) during the read.
    """
    ends = {p: e for p, (s, e) in ranges.items() if e > s}
    if not ends:
        return
    group = f"kstream-lab-replay-{uuid.uuid4().hex[:8]}"
    conf = {
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
        **{k: v for k, v in FETCH_TUNING.items() if k not in settings.client_config},
    }
    native = _native_consumer(settings, group, conf)
    if native is not None:
        from kstream_lab.kafka.fetch_native import native_loop

        try:
            native.assign(topic, {p: ranges[p][0] for p in ends})
            yield from native_loop(native, topic, ends, batch_size, stall_timeout, stop, extract or Extract())
        finally:
            native.close()
        return
    consumer = make_consumer(settings, group, read_committed=True, **conf)
    try:
        consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in sorted(ends)])
        yield from _fetch_loop(consumer, topic, ends, batch_size, stall_timeout, stop, extract)
    finally:
        consumer.close()


def _native_consumer(settings: Settings, group: str, conf: dict[str, object]) -> NativeConsumer | None:
    """The native consumer (``kafka.native``) unless settings ask for the Python path or, in "auto",
    it cannot be built or configured here (then the log says why)."""
    if settings.replay_fetch == "python":
        return None
    from kstream_lab.kafka import native

    try:
        lib = native.load(settings.native_cache_dir)
        options = native.native_config(consumer_config(settings, group, read_committed=True, **conf))
    except native.NativeUnavailable as exc:
        if settings.replay_fetch == "native":
            raise
        log.info("replay reads through confluent-kafka: %s", exc)
        return None
    return native.NativeConsumer(lib, options)


def _fetch_loop(
    consumer,
    topic: str,
    ends: dict[int, int],
    batch_size: int,
    stall_timeout: float,
    stop: Event | None,
    extract: Extract | None = None,
) -> Iterator[RawBatch]:
    """Consume in small chunks, gather them per partition, yield a partition's batch when it is full
    or the partition is done. Batches of one partition each let readers order a range by partition
    and offset by concatenation alone, without copying the data to sort or split it."""
    pending = dict(ends)
    batches = PartitionBatches(lambda p: RawBatch(topic, p), ends, batch_size)
    last_progress = time.monotonic()
    while pending:
        if stop is not None and stop.is_set():
            return
        msgs = consumer.consume(num_messages=min(batch_size, CONSUME_CHUNK), timeout=0.2)
        if not msgs:
            if time.monotonic() - last_progress > stall_timeout:
                raise stalled(topic, stall_timeout, pending)
            continue
        last_progress = time.monotonic()
        if any(map(_err, msgs)):
            msgs = _handle_errors(consumer, topic, msgs, pending)
        if msgs:
            yield from _take(consumer, topic, msgs, ends, pending, batches, extract)
        yield from batches.finished(pending)
    yield from batches.rest()


class PartitionBatches:
    """The open batches of a bounded read, one per partition: the batching rules both fetch loops share.

    Each partition's first batch is small and the next ones double up to ``batch_size``, so decoding
    starts after a few thousand records instead of after batch_size per partition (with six
    partitions filling together, ~120k records into the read the decoder had not started yet). A
    batch is handed over, sealed, when it reaches its target or its partition is finished; the
    callers add whole consumed chunks, so a chunk is never split.
    """

    def __init__(self, make: Callable[[int], Any], ends: dict[int, int], batch_size: int) -> None:
        self._make, self._batch_size = make, batch_size
        self._open: dict[int, Any] = {}
        self._targets = {p: min(batch_size, FIRST_BATCH) for p in ends}

    def get(self, partition: int) -> Any:
        """The partition's open batch, started if there is none."""
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = self._make(partition)
        return batch

    def full(self, partition: int) -> list:
        """The partition's batch if it reached its target (the next target doubles)."""
        if len(self._open[partition]) < self._targets[partition]:
            return []
        self._targets[partition] = min(self._batch_size, 2 * self._targets[partition])
        return [self._open.pop(partition).seal()]

    def finished(self, pending: dict[int, int]) -> list:
        """The batches of partitions no longer pending: they will not grow."""
        return [self._open.pop(p).seal() for p in sorted(p for p in self._open if p not in pending)]

    def rest(self) -> list:
        return [self._open.pop(p).seal() for p in sorted(self._open)]


def _take(
    consumer,
    topic: str,
    msgs: list,
    ends: dict[int, int],
    pending: dict[int, int],
    batches: PartitionBatches,
    extract: Extract | None = None,
) -> Iterator[RawBatch]:
    """Add one consumed chunk to the per-partition batches; yield those that filled up."""
    parts = list(map(_part, msgs))
    if parts.count(parts[0]) == len(parts):  # the usual case: librdkafka hands out one partition's batch
        runs = [(parts[0], msgs)]
    else:
        runs = [(p, [m for m, q in zip(msgs, parts, strict=True) if q == p]) for p in sorted(set(parts))]
    for p, run in runs:
        end = ends.get(p)
        if end is None:
            continue  # not a partition of the range
        first, last = _off(run[0]), _off(run[-1])
        # Offsets strictly increase within a partition, so a span of exactly len-1 means no gaps.
        contiguous = last - first == len(run) - 1
        if last >= end - 1:
            _finish(consumer, topic, pending, p)
        if last >= end:  # past the snapshot: cut there
            run = run[: max(0, end - first)] if contiguous else [m for m in run if _off(m) < end]
            if not run:
                continue
        batches.get(p).add(run, first if contiguous else None, extract)
        yield from batches.full(p)


def _handle_errors(consumer, topic: str, msgs: list, pending: dict[int, int]) -> list:
    """Act on EOF events and errors; return the data messages."""
    data = []
    for m in msgs:
        err = m.error()
        if err is None:
            data.append(m)
        elif err.fatal() or not err.retriable() or err.code() in _HANDLED:
            on_error(
                topic,
                pending,
                err.code(),
                m.partition(),
                m.offset(),
                err.str(),
                lambda p: _finish(consumer, topic, pending, p),
            )
    return data


_GONE = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC)
_HANDLED = (KafkaError._PARTITION_EOF, KafkaError.OFFSET_OUT_OF_RANGE, *_GONE)
# Connection trouble librdkafka retries by itself; the stall timeout bounds how long a read waits.
_TRANSIENT = (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._RESOLVE)


def on_error(
    topic: str,
    pending: dict[int, int],
    code: int,
    partition: int,
    offset: int,
    text: str,
    finish: Callable[[int], None],
) -> None:
    """One error message of a bounded read: EOF at or past a pending end finishes that partition;
    deleted offsets and vanished topics are TopicErrors; connection trouble is waited out (the stall
    timeout bounds it); anything else fails the read."""
    if code == KafkaError._PARTITION_EOF:
        if partition in pending and offset >= pending[partition]:
            finish(partition)
    elif code == KafkaError.OFFSET_OUT_OF_RANGE:
        raise TopicError(
            f"{topic}[{partition}]: offsets of the range were deleted during the read ({text})",
            hint="retention removed them; choose a later start",
        )
    elif code in _GONE:
        raise TopicError(f"topic {topic!r} disappeared during the read ({text})")
    elif code not in _TRANSIENT:
        raise BrokerError(f"replay of {topic} failed: {text}")


def stalled(topic: str, stall_timeout: float, pending: dict[int, int]) -> BrokerError:
    return BrokerError(
        f"replay of {topic} stalled: no records for {stall_timeout:.0f}s; still waiting "
        f"for partitions {sorted(pending)} to reach offsets {pending}",
        hint="is the broker up? were the offsets deleted?",
    )


def _finish(consumer, topic: str, pending: dict[int, int], partition: int) -> None:
    if pending.pop(partition, None) is not None:
        consumer.pause([TopicPartition(topic, partition)])
