"""Group consumption: batches handed out by a subscribed consumer, committed when told, and lag.

Bounded reads of a range to its end (replay, restores, tools) are not group consumption; they live
in ``kafka.read``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from kstream_lab.errors import BrokerError
from kstream_lab.kafka.clients import make_consumer
from kstream_lab.kafka.denials import is_denial
from kstream_lab.kafka.read.records import Record
from kstream_lab.observability.metrics import METRICS
from kstream_lab.settings import Settings

log = logging.getLogger(__name__)


def _record(m: Any) -> Record:
    return Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(), tuple(m.headers() or ()), m.timestamp()[1])


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
        tuning: dict[str, Any] = {
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": max(500, session_timeout_ms // 6),
            "fetch.wait.max.ms": 100,
        }
        self.consumer = make_consumer(settings, group_id, **tuning)
        self.consumer.subscribe([topic])
        self._commit_failing = False

    def batches(self, stop: threading.Event) -> Iterator[list[Record]]:
        while not stop.is_set():
            try:
                messages = self.consumer.consume(self.batch_size, self.batch_timeout_s)
            except KafkaException as exc:  # non-fatal ones pass (a broker restart): the client reconnects
                cause: KafkaError = exc.args[0]
                if cause.fatal() or is_denial(cause):
                    raise BrokerError(f"consume from {self.topic}: {cause.str()}") from None
                METRICS.errors.labels(self.service, "consume").inc()
                log.warning("consume from %s: %s", self.topic, cause.str())
                stop.wait(0.5)
                continue
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

    def commit(self) -> bool:
        """Synchronously commit the positions of everything handed out so far; False if it could not.

        A commit that fails for a reason that passes (the broker restarting, the coordinator moving,
        a rebalance that made this member unknown) loses nothing: the batches were already written,
        the next successful commit covers them, and if the partitions move meanwhile their new owner
        re-reads from the last committed offset into idempotent upserts. So the worker carries on;
        only a fatal error or an ACL denial ends it.
        """
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() == KafkaError._NO_OFFSET:
                return True
            if err.fatal() or is_denial(err):
                raise BrokerError(f"commit on {self.topic}: {err.str()}") from None
            METRICS.errors.labels(self.service, "commit").inc()
            if not self._commit_failing:
                log.warning("commit on %s failed, carrying on (the next commit covers it): %s", self.topic, err.str())
            self._commit_failing = True
            return False
        if self._commit_failing:
            log.info("commits on %s succeed again", self.topic)
        self._commit_failing = False
        update_lag(self.consumer, self.service)
        return True

    def close(self) -> None:
        self.consumer.close()
