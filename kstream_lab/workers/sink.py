"""The sink worker: sales_aggregates -> DuckDB (or PostgreSQL), at-least-once into idempotent upserts.

Reads read_committed, so it only ever sees results of committed aggregator transactions. Each batch
is coalesced to one row per key, written in one database transaction, and only then are the offsets
committed; a crash in between replays the batch, and the upserts (which never touch final rows)
make the replay a no-op. Together with the aggregator's transactions this is end-to-end exactly-once
in effect, without a two-phase commit between Kafka and the database.

A database that stops or restarts mid-run (:class:`~kstream_lab.errors.DatabaseUnavailable`) used to
end the worker with a traceback. Now the batch in hand is held and written again with backoff until
the database answers, and only then are its offsets committed: no offset ever moves past an
unwritten row. One warning when the outage starts and one line when it ends, not one per attempt.
An outage longer than the consumer's ``max.poll.interval.ms`` (5 min) costs the group membership:
the commit after the write then fails harmlessly and the rejoined consumer re-reads from the last
committed offset into the same upserts.
"""

from __future__ import annotations

import logging
import threading
import time

from kstream_lab.errors import DatabaseUnavailable, RecordError
from kstream_lab.kafka.consuming import BatchConsumer
from kstream_lab.kafka.producing import BatchProducer
from kstream_lab.kafka.transactional import RetryBatch
from kstream_lab.observability.metrics import METRICS
from kstream_lab.observability.tracing import origin_ms, record_spans
from kstream_lab.pipeline_spec import SinkConfig
from kstream_lab.schemas.serde import Decoder, SerdeContext
from kstream_lab.settings import Settings
from kstream_lab.sinks.base import AggregateSink, coalesce
from kstream_lab.workers.codec import require
from kstream_lab.workers.dlq import dlq_headers

log = logging.getLogger(__name__)
# Back-off between writes while the database is unavailable: doubling from 0.2 s up to 5 s.
WRITE_RETRY_S, WRITE_RETRY_MAX_S = 0.2, 5.0
AGGREGATE_FIELDS = {
    "window_start": int,
    "window_end": int,
    "tier": str,
    "source_partition": int,
    "total_cents": int,
    "count": int,
    "final": bool,
}


class SinkWorker:
    def __init__(
        self,
        settings: Settings,
        config: SinkConfig,
        *,
        decode: Decoder,
        sink: AggregateSink,
        stop: threading.Event,
        service: str = "sink",
    ) -> None:
        self.settings, self.config, self.decode, self.sink = settings, config, decode, sink
        self.stop, self.service = stop, service
        self.rows_written = 0

    def run(self) -> None:
        consumer = BatchConsumer(
            self.settings,
            self.config.input,
            self.config.group_id,
            service=self.service,
            batch_size=self.config.batch_size,
        )
        dlq = BatchProducer(self.settings)
        try:
            for batch in consumer.batches(self.stop):
                t0, started = time.perf_counter(), time.time_ns()
                rows = self._decode_with_retry(batch, dlq)
                if rows is None:  # stopping while a dependency was down: the batch is re-read next time
                    return
                dlq.flush()
                if not self._write_with_retry(coalesce(rows)):  # stopped during an outage: re-read next time
                    return
                consumer.commit()
                METRICS.latency.labels(self.service).observe(time.perf_counter() - t0)
                record_spans("sink", (r.headers for r in batch), started)  # decoded, written, committed
                self._observe_end_to_end(batch)
        finally:
            consumer.close()
            dlq.flush(10)
            self.sink.close()

    def _observe_end_to_end(self, batch: list) -> None:
        """POST → committed here, for each update whose trigger carried the order service's origin."""
        now_ms = time.time() * 1000
        for r in batch:
            origin = origin_ms(r.headers)
            if origin is not None:
                METRICS.end_to_end.labels(self.service).observe(max(0.0, now_ms - origin) / 1000)

    def _write_with_retry(self, rows: list[dict]) -> bool:
        """Upsert ``rows``, waiting out a database outage; False when stopped before they were written."""
        delay, attempts, down_since = WRITE_RETRY_S, 0, 0.0
        while True:
            try:
                self.rows_written += self.sink.upsert(rows)
            except DatabaseUnavailable as exc:
                attempts += 1
                METRICS.errors.labels(self.service, "sink_write").inc()
                if attempts == 1:
                    down_since = time.monotonic()
                    log.warning(
                        "%s; holding the batch of %d rows, its offsets uncommitted, retrying", exc.message, len(rows)
                    )
                if self.stop.wait(delay):
                    log.info("stopping during the database outage: the held batch is re-read at the next start")
                    return False
                delay = min(WRITE_RETRY_MAX_S, delay * 2)
                continue
            if attempts:
                log.info(
                    "database answers again after %.1f s and %d failed writes; the held batch is written",
                    time.monotonic() - down_since,
                    attempts,
                )
            return True

    def _decode_with_retry(self, batch: list, dlq: BatchProducer) -> list[dict] | None:
        delay = 0.2
        while not self.stop.is_set():
            try:
                return self._decode(batch, dlq)
            except RetryBatch as exc:
                log.warning("retrying the batch in %.1fs: %s", delay, exc)
                self.stop.wait(delay)
                delay = min(5.0, delay * 2)
        return None

    def _decode(self, batch: list, dlq: BatchProducer) -> list[dict]:
        rows, dead = [], []
        for r in batch:
            try:
                row = self.decode(r.value, SerdeContext(r.topic, r.partition, r.offset, r.headers))
                require(
                    row,
                    {k: v for k, v in AGGREGATE_FIELDS.items() if k != "final"},
                    topic=r.topic,
                    partition=r.partition,
                    offset=r.offset,
                )
                if not isinstance(row.get("final"), bool):
                    raise RecordError(
                        "field 'final' is not a boolean", topic=r.topic, partition=r.partition, offset=r.offset
                    )
            except RecordError as exc:
                dead.append((r, exc))
                continue
            rows.append(row)
        for r, err in dead:  # only after the whole batch decoded, so a retried batch is not dead-lettered twice
            METRICS.dlq.labels(self.service).inc()
            dlq.produce(
                self.config.dlq,
                key=r.key,
                value=r.value,
                partition=r.partition,
                headers=dlq_headers(err, topic=r.topic, partition=r.partition, offset=r.offset),
            )
        return rows
