"""Bounded, columnar reads of offset ranges: the low-level half of replay (DESIGN.md section 6).

The read is bounded by end offsets fixed before it starts, so producers that keep writing never
extend it. Ends are read with a read_committed consumer, which makes them last *stable* offsets: an
open transaction cannot make the read wait for it. Completion is decided by offsets, never by
waiting for a record at ``end - 1``: under read_committed the last offsets before an end can be
transaction markers or aborted records, and compaction leaves gaps, so a partition is done when a
record at or past ``end - 1`` arrives, or when librdkafka reports partition EOF at or past ``end``.

Batches are handed over as parallel lists (values, keys, partitions, offsets, timestamps, headers),
filled with ``map`` over the Message methods -- no per-record Python objects of our own, so the
decode side can build Arrow columns in one go.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter
from threading import Event

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from kstream_lab.errors import BrokerError, TopicError
from kstream_lab.kafka.admin import topic_partitions
from kstream_lab.kafka.clients import make_admin, make_consumer
from kstream_lab.settings import Settings

_ts = itemgetter(1)
# Fetch settings layered over librdkafka's defaults; KSTREAM_CLIENT_CONFIG overrides any of them.
# librdkafka stops fetching a partition whose local queue is over its thresholds and, by default,
# looks again only a second later (fetch.queue.backoff.ms=1000): a bulk reader that drains the queue
# in milliseconds then idles most of the time (~0.2 M msg/s here). A 10 ms back-off keeps the fetcher
# busy, which lets the queues be small: 2.5-4x the throughput at lower peak memory (bench/README.md).
FETCH_TUNING: dict[str, object] = {"fetch.queue.backoff.ms": 10, "queued.min.messages": 20_000,
                                   "queued.max.messages.kbytes": 8192}
# Messages per consume() call. Small calls keep the Message objects short-lived and cache-warm: with
# the tuning above, 500 per call read ~1.5x faster than 10,000 and ~5x faster than 100,000 here, at a
# fraction of the peak memory (the batches handed to the decoder stay large).
CONSUME_CHUNK = 500
_value, _key, _part, _off, _stamp, _hdrs, _err = (Message.value, Message.key, Message.partition, Message.offset,
                                                  Message.timestamp, Message.headers, Message.error)


@dataclass(frozen=True)
class PartitionBounds:
    """A partition's first retained offset and its end (last stable offset) at snapshot time."""

    partition: int
    low: int
    end: int


@dataclass
class RawBatch:
    """Columnar records of one fetch batch; ``headers`` is None when no record in it had headers."""

    topic: str
    values: list[bytes | None]
    keys: list[bytes | None]
    partitions: list[int]
    offsets: list[int]
    timestamps: list[int]
    headers: list[list[tuple[str, bytes]] | None] | None

    def __len__(self) -> int:
        return len(self.offsets)


def snapshot_bounds(settings: Settings, topic: str, partitions: list[int] | None = None,
                    timeout: float = 10.0) -> dict[int, PartitionBounds]:
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


def committed_offsets(settings: Settings, group_id: str, topic: str, partitions: list[int],
                      timeout: float = 10.0) -> dict[int, int]:
    """The group's committed offset per partition (partitions it never committed are left out)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = make_admin(settings)
    req = [ConsumerGroupTopicPartitions(group_id, [TopicPartition(topic, p) for p in partitions])]
    try:
        res = admin.list_consumer_group_offsets(req)[group_id].result(timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"cannot read committed offsets of group {group_id!r}: {exc}") from None
    return {tp.partition: tp.offset for tp in res.topic_partitions if tp.offset >= 0}


def fetch_batches(settings: Settings, topic: str, ranges: dict[int, tuple[int, int]], *,
                  batch_size: int = 50_000, stall_timeout: float = 30.0,
                  stop: Event | None = None) -> Iterator[RawBatch]:
    """Yield every committed record with ``start <= offset < end`` per partition, then stop.

    Each batch holds records of one partition in offset order, ``batch_size`` or a little more (a
    consumed chunk is never split); batches of different partitions interleave.

    ``ranges`` maps partition -> (start, end). Raises BrokerError if no partition makes progress for
    ``stall_timeout`` seconds, and TopicError if offsets vanish (retention) during the read.
    """
    ends = {p: e for p, (s, e) in ranges.items() if e > s}
    if not ends:
        return
    consumer = make_consumer(
        settings, f"kstream-lab-replay-{uuid.uuid4().hex[:8]}", read_committed=True,
        **{"enable.partition.eof": True, "auto.offset.reset": "error",
           **{k: v for k, v in FETCH_TUNING.items() if k not in settings.client_config}})
    try:
        consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in sorted(ends)])
        yield from _fetch_loop(consumer, topic, ends, batch_size, stall_timeout, stop)
    finally:
        consumer.close()


def _fetch_loop(consumer, topic: str, ends: dict[int, int], batch_size: int, stall_timeout: float,
                stop: Event | None) -> Iterator[RawBatch]:
    """Consume in small chunks, gather them per partition, yield a partition's batch when it is full
    or the partition is done. Batches of one partition each let readers order a range by partition
    and offset by concatenation alone, without copying the data to sort or split it."""
    pending = dict(ends)
    batches: dict[int, RawBatch] = {}
    last_progress = time.monotonic()
    while pending:
        if stop is not None and stop.is_set():
            return
        msgs = consumer.consume(num_messages=min(batch_size, CONSUME_CHUNK), timeout=0.2)
        if not msgs:
            if time.monotonic() - last_progress > stall_timeout:
                raise BrokerError(f"replay of {topic} stalled: no records for {stall_timeout:.0f}s; still waiting "
                                  f"for partitions {sorted(pending)} to reach offsets {pending}",
                                  hint="is the broker up? were the offsets deleted?")
            continue
        last_progress = time.monotonic()
        if any(map(_err, msgs)):
            msgs = _handle_errors(consumer, topic, msgs, pending)
        if msgs:
            yield from _take(consumer, topic, msgs, ends, pending, batches, batch_size)
        for p in sorted(p for p in batches if p not in pending):  # finished: its batch will not grow
            yield batches.pop(p)
    for p in sorted(batches):
        yield batches[p]


def _take(consumer, topic: str, msgs: list, ends: dict[int, int], pending: dict[int, int],
          batches: dict[int, RawBatch], batch_size: int) -> Iterator[RawBatch]:
    """Add one consumed chunk to the per-partition batches; yield those that filled up."""
    parts, offs = list(map(_part, msgs)), list(map(_off, msgs))
    one = parts.count(parts[0]) == len(parts)  # one partition, the usual case: its offsets ascend
    last = {parts[0]: offs[-1]} if one else dict(zip(parts, offs, strict=True))
    overshoot = False
    for p, off in last.items():
        end = ends.get(p)
        if end is None or off >= end:
            overshoot = True
        if end is not None and off >= end - 1:
            _finish(consumer, topic, pending, p)
    if overshoot:
        keep = [i for i, (p, o) in enumerate(zip(parts, offs, strict=True)) if o < ends.get(p, -1)]
        msgs, parts, offs = [msgs[i] for i in keep], [parts[i] for i in keep], [offs[i] for i in keep]
    if not msgs:
        return
    if one:  # the usual case: librdkafka hands out one partition's fetched batch at a time
        runs = [(parts[0], msgs, offs)]
    else:
        runs = []
        for p in sorted(set(parts)):
            idx = [i for i, q in enumerate(parts) if q == p]
            runs.append((p, [msgs[i] for i in idx], [offs[i] for i in idx]))
    for p, run, run_offs in runs:
        batch = batches.get(p)
        if batch is None:
            batch = batches[p] = _empty(topic)
        _append(batch, run, [p] * len(run), run_offs)
        if len(batch) >= batch_size:
            yield batches.pop(p)


def _handle_errors(consumer, topic: str, msgs: list, pending: dict[int, int]) -> list:
    """Act on EOF events and errors; return the data messages."""
    data = []
    for m in msgs:
        err = m.error()
        if err is None:
            data.append(m)
        elif err.code() == KafkaError._PARTITION_EOF:
            p = m.partition()
            if p in pending and m.offset() >= pending[p]:
                _finish(consumer, topic, pending, p)
        elif err.code() == KafkaError.OFFSET_OUT_OF_RANGE:
            raise TopicError(f"{topic}[{m.partition()}]: offsets of the range were deleted during the read "
                             f"({err.str()})", hint="retention removed them; choose a later start")
        elif err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION,
                            KafkaError._UNKNOWN_TOPIC):
            raise TopicError(f"topic {topic!r} disappeared during the read ({err.str()})")
        elif err.fatal() or not err.retriable():
            raise BrokerError(f"replay of {topic} failed: {err.str()}")
    return data


def _finish(consumer, topic: str, pending: dict[int, int], partition: int) -> None:
    if pending.pop(partition, None) is not None:
        consumer.pause([TopicPartition(topic, partition)])


def _empty(topic: str) -> RawBatch:
    return RawBatch(topic, [], [], [], [], [], None)


def _append(batch: RawBatch, msgs: list, parts: list[int], offs: list[int]) -> None:
    n = len(batch)
    batch.values.extend(map(_value, msgs))
    batch.keys.extend(map(_key, msgs))
    batch.partitions.extend(parts)
    batch.offsets.extend(offs)
    batch.timestamps.extend(map(_ts, map(_stamp, msgs)))
    headers = list(map(_hdrs, msgs))
    if batch.headers is not None:
        batch.headers.extend(headers)
    elif any(headers):
        batch.headers = [None] * n + headers
