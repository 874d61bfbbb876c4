"""The bounded read loop over confluent-kafka's Consumer: the fallback where the native loop cannot run,
and the loop of record-level reads.

Batches are filled with ``map`` over the Message methods right after each ``consume()``, while the
messages are in cache: values packed into one buffer (each followed by a newline, read by the
decoders without a copy), keys, timestamps and headers as lists, offsets as runs. Replay is bound by
the Python work per record (the GIL), so the loop does the least it can per record: no partition or
offset objects for contiguous runs, no Python object kept per value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from operator import itemgetter
from threading import Event
from typing import cast

from confluent_kafka import Message, TopicPartition

from kstream_lab.kafka.read.batch import Batch, Extract, Run
from kstream_lab.kafka.read.batching import PartitionBatches
from kstream_lab.kafka.read.progress import HANDLED, Progress
from kstream_lab.packed import PackedBuilder

# Messages per consume() call. Small calls keep the Message objects short-lived and cache-warm: with
# the fetch tuning (``engine.FETCH_TUNING``), 500 per call read ~1.5x faster than 10,000 and ~5x
# faster than 100,000 here, at a fraction of the peak memory (the batches handed over stay large).
CONSUME_CHUNK = 500
_ts = itemgetter(1)
_value, _key, _stamp, _hdrs, _err = (
    Message.value,
    Message.key,
    Message.timestamp,
    Message.headers,
    Message.error,
)
# The stubs type these ``int | None`` (None only for messages not yet delivered); a consumed data message
# always has both. Cast once here, not per record.
_part = cast(Callable[[Message], int], Message.partition)
_off = cast(Callable[[Message], int], Message.offset)
_ALL = Extract()


class MessageColumns:
    """A batch being filled from consumed messages of one partition (sealed into a :class:`Batch`).

    Offsets are kept as runs (a contiguous run is just its first offset and length), so the common
    case costs no per-record offset object at all. A column turned off midway (``Extract``) is
    dropped for the whole batch.
    """

    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition
        self._values = PackedBuilder()
        self.keys: list[bytes | None] | None = []
        self.timestamps: list[int] | None = []
        self.headers: list[list[tuple[str, bytes]] | None] | None = None
        self._headers_dropped = False
        self._runs: list[Run] = []

    def __len__(self) -> int:
        return len(self._values)

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

    def seal(self) -> Batch:
        """The batch, its packed values joined. The loop does it before handing a batch over, because
        the join of a few MB releases the GIL -- a moment the decoding thread can use -- whereas the
        decoding thread would have to win the GIL back afterwards."""
        return Batch(
            self.topic,
            self.partition,
            self._values.build(),
            self._runs,
            keys=self.keys,
            timestamps=self.timestamps,
            headers=self.headers,
        )


def python_loop(
    consumer,
    topic: str,
    ends: dict[int, int],
    batch_size: int,
    stall_timeout: float,
    stop: Event | None,
    extract: Extract | None = None,
) -> Iterator[Batch]:
    """Consume in small chunks, gather them per partition, yield a partition's batch when it is full
    or the partition is done. Batches of one partition each let readers order a range by partition
    and offset by concatenation alone, without copying the data to sort or split it."""
    progress = Progress(topic, ends, lambda p: consumer.pause([TopicPartition(topic, p)]), stall_timeout)
    batches = PartitionBatches(lambda p: MessageColumns(topic, p), ends, batch_size)
    while progress.pending:
        if stop is not None and stop.is_set():
            return
        msgs = consumer.consume(num_messages=min(batch_size, CONSUME_CHUNK), timeout=0.2)
        if not msgs:
            progress.idle()
            continue
        progress.active()
        if any(map(_err, msgs)):
            msgs = _events(progress, msgs)
        if msgs:
            yield from _take(msgs, ends, progress, batches, extract)
        yield from batches.finished(progress.pending)
    yield from batches.rest()


def _take(
    msgs: list, ends: dict[int, int], progress: Progress, batches: PartitionBatches, extract: Extract | None
) -> Iterator[Batch]:
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
        progress.saw(p, last)
        if last >= end:  # past the snapshot: cut there
            run = run[: max(0, end - first)] if contiguous else [m for m in run if _off(m) < end]
            if not run:
                continue
        batches.get(p).add(run, first if contiguous else None, extract)
        yield from batches.full(p)


def _events(progress: Progress, msgs: list) -> list:
    """Act on EOF events and errors; return the data messages."""
    data = []
    for m in msgs:
        err = m.error()
        if err is None:
            data.append(m)
        elif err.fatal() or not err.retriable() or err.code() in HANDLED:
            progress.event(err.code(), m.partition(), m.offset(), err.str())
    return data
