"""``read_batches``: a bounded read of offset ranges, through the native loop or the Python one.

The native loop (``native_loop`` over ``kafka.native``: a C loop that writes consumed chunks
straight into NumPy/Arrow columns with the GIL released) is the default; where it cannot be built,
with ``KSTREAM_REPLAY_FETCH=python``, or when the caller asks (record-level reads, which build a
Python object per record anyway), the confluent-kafka one (``python_loop``). Both follow the same
end rule (``progress``) and batching rules (``batching``) and hand out the same ``Batch``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from threading import Event
from typing import TYPE_CHECKING, Literal

from confluent_kafka import TopicPartition

from kstream_lab.kafka.clients import consumer_config, make_consumer
from kstream_lab.kafka.read.batch import Batch, Extract
from kstream_lab.kafka.read.python_loop import python_loop
from kstream_lab.settings import Settings

if TYPE_CHECKING:
    from kstream_lab.kafka.native import NativeConsumer

log = logging.getLogger(__name__)
Loop = Literal["auto", "native", "python"]
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


def read_batches(
    settings: Settings,
    topic: str,
    ranges: dict[int, tuple[int, int]],
    *,
    batch_size: int = 50_000,
    stall_timeout: float = 30.0,
    stop: Event | None = None,
    extract: Extract | None = None,
    read_committed: bool = True,
    loop: Loop | None = None,
) -> Iterator[Batch]:
    """Yield every record with ``start <= offset < end`` per partition (committed ones under
    read_committed), then stop.

    Each batch holds records of one partition in offset order, ``batch_size`` or a little more (a
    consumed chunk is never split); batches of different partitions interleave. ``ranges`` maps
    partition -> (start, end), the ends from ``bounds.snapshot_bounds``. ``loop`` overrides
    ``settings.replay_fetch``. Raises BrokerError if no partition makes progress for
    ``stall_timeout`` seconds, and TopicError if offsets vanish (retention) during the read.
    """
    ends = {p: e for p, (s, e) in ranges.items() if e > s}
    if not ends:
        return
    group = f"{settings.read_group_prefix}{uuid.uuid4().hex[:8]}"  # librdkafka asks for its coordinator
    conf = {
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
        **{k: v for k, v in FETCH_TUNING.items() if k not in settings.client_config},
    }
    native = _native_consumer(settings, group, conf, read_committed=read_committed, loop=loop)
    if native is not None:
        from kstream_lab.kafka.read.native_loop import native_loop

        try:
            native.assign(topic, {p: ranges[p][0] for p in ends})
            yield from native_loop(native, topic, ends, batch_size, stall_timeout, stop, extract or Extract())
        finally:
            native.close()
        return
    consumer = make_consumer(settings, group, read_committed=read_committed, **conf)
    try:
        consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in sorted(ends)])
        yield from python_loop(consumer, topic, ends, batch_size, stall_timeout, stop, extract)
    finally:
        consumer.close()


def _native_consumer(
    settings: Settings, group: str, conf: dict[str, object], *, read_committed: bool = True, loop: Loop | None = None
) -> NativeConsumer | None:
    """The native consumer (``kafka.native``) unless the loop asked for (``settings.replay_fetch`` by
    default) is the Python one or, in "auto", it cannot be built or configured here (then the log
    says why)."""
    loop = loop or settings.replay_fetch
    if loop == "python":
        return None
    from kstream_lab.kafka import native

    try:
        lib = native.load(settings.native_cache_dir)
        options = native.native_config(consumer_config(settings, group, read_committed=read_committed, **conf))
    except native.NativeUnavailable as exc:
        if loop == "native":
            raise
        log.info("replay reads through confluent-kafka: %s", exc)
        return None
    return native.NativeConsumer(lib, options)
