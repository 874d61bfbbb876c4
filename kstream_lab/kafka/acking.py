"""A producer whose ``produce`` returns a future resolved by the broker's acknowledgement.

Request handlers (the order service) must answer only once the record is durably in Kafka, without
flushing per request: a background thread serves delivery callbacks continuously, and each callback
resolves the future of its record. Idempotence keeps retries from duplicating or reordering records.

librdkafka counts a record against ``queue.buffering.max.messages`` from ``produce`` until its
delivery report has been served, so that bound is the number of records awaiting the broker's
acknowledgement; past it ``produce`` refuses at once (:class:`ProducerQueueFull`) and enqueues nothing.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from kstream_lab.errors import BrokerError, ProducerQueueFull
from kstream_lab.kafka.clients import make_producer
from kstream_lab.kafka.producing import produce_kwargs
from kstream_lab.settings import Settings


class Ack:
    __slots__ = ("partition", "offset")

    def __init__(self, partition: int, offset: int) -> None:
        self.partition, self.offset = partition, offset


class AckingProducer:
    """Idempotent producer; ``produce`` -> Future[Ack]; callbacks served by a daemon thread."""

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        conf = {"partitioner": "murmur2_random", "linger.ms": 2, **overrides}
        self._producer = make_producer(settings, **conf)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="acking-producer", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def produce(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp: int | None = None,
    ) -> Future:
        future: Future = Future()

        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            if err is None:
                future.set_result(Ack(msg.partition(), msg.offset()))
            else:
                future.set_exception(BrokerError(f"produce to {topic} failed: {err.str()}"))

        try:
            kwargs = produce_kwargs(topic, value, key, timestamp=timestamp, headers=headers, on_delivery=on_delivery)
            self._producer.produce(**kwargs)
        except BufferError:
            raise ProducerQueueFull(
                "producer queue is full: as many records as it may hold await the broker's acknowledgement",
                hint="the broker is slow or unreachable, or records come faster than it takes them",
            ) from None
        except KafkaException as exc:
            raise BrokerError(f"produce to {topic} failed: {exc.args[0].str()}") from None
        return future

    def close(self, timeout: float = 10.0) -> int:
        """Deliver what is queued (up to ``timeout``), stop the callback thread; return undelivered count."""
        self._stop.set()
        self._thread.join(timeout=2)
        return self._producer.flush(timeout)
