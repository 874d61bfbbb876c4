"""Producing generated orders to Kafka, with optional rate limit, progress and a truth file."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from kstream_lab.aggregations.spec import WindowSpec
from kstream_lab.errors import BrokerError
from kstream_lab.generator.orders import GeneratedOrder, OrderGenerator
from kstream_lab.kafka.producing import BatchProducer
from kstream_lab.pipeline_spec import TopicSpec
from kstream_lab.schemas.serde import SerdeContext, Serializer
from kstream_lab.settings import Settings


@dataclass
class ProduceSummary:
    topic: str
    produced: int
    kinds: Counter = field(default_factory=Counter)
    per_partition: Counter = field(default_factory=Counter)
    first_ts: int | None = None
    last_ts: int | None = None
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.produced / self.seconds if self.seconds else 0.0

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.kinds.items()))
        parts = " ".join(f"p{p}={n}" for p, n in sorted(self.per_partition.items()))
        return [
            f"produced {self.produced} records to {self.topic} in {self.seconds:.1f}s ({self.rate:,.0f}/s)",
            f"  kinds: {kinds}",
            f"  partitions: {parts}",
        ]


def truth_schema() -> dict:
    """The truth frame's columns and types (the generator's, and any test truth built like it)."""
    import polars as pl

    return {
        "order_id": pl.Utf8,
        "partition": pl.Int32,
        "kind": pl.Utf8,
        "timestamp": pl.Int64,
        "window_start": pl.Int64,
        "tier": pl.Utf8,
        "customer_id": pl.Utf8,
        "total_cents": pl.Int64,
    }


def truth_frame(records: list[GeneratedOrder]):
    import polars as pl

    return pl.DataFrame(
        {
            "order_id": [r.key for r in records],
            "partition": [r.partition for r in records],
            "kind": [r.kind for r in records],
            "timestamp": [r.timestamp for r in records],
            "window_start": [r.window_start for r in records],
            "tier": [r.tier for r in records],
            "customer_id": [r.value["customer_id"] if r.value else None for r in records],
            "total_cents": [r.value["total_cents"] if r.value else None for r in records],
        },
        schema=truth_schema(),
    )


def produce_orders(
    settings: Settings,
    topic: TopicSpec,
    serialize: Serializer,
    window: WindowSpec,
    *,
    count: int,
    seed: int,
    start_ms: int | None = None,
    rate: float | None = None,
    late_fraction: float = 0.0,
    poison_fraction: float = 0.0,
    customers: int = 10_000,
    truth: Path | None = None,
    progress: bool = True,
    flush_timeout_s: float = 60.0,
) -> ProduceSummary:
    """Generate ``count`` orders for ``seed`` and produce them; return counts by kind and partition.

    ``flush_timeout_s`` bounds the wait for the last deliveries (a test that restarts the broker
    under load waits longer than the default minute)."""
    if count < 0:
        raise ValueError(f"--count must not be negative, got {count}")
    if rate is not None and rate <= 0:
        raise ValueError(f"--rate must be positive, got {rate}")
    interval = 1000.0 / rate if rate else 20.0
    if start_ms is None:
        now = int(time.time() * 1000)
        start_ms = now - int(count * interval) if not rate else now
    gen = OrderGenerator(
        seed=seed,
        start_ms=start_ms,
        partitions=topic.partitions,
        window=window,
        customers=customers,
        late_fraction=late_fraction,
        poison_fraction=poison_fraction,
        interval_ms=interval,
    )
    summary = ProduceSummary(topic.name, 0)
    ctx = SerdeContext(topic.name)
    kept: list[GeneratedOrder] = []
    t0 = time.monotonic()
    with (
        BatchProducer(settings) as producer,
        tqdm(total=count, unit="rec", disable=not progress or None, desc=f"produce {topic.name}") as bar,
    ):
        for i, rec in enumerate(gen.take(count)):
            value = rec.poison if rec.value is None else serialize(rec.value, ctx)
            producer.produce(topic.name, key=rec.key.encode(), value=value, partition=rec.partition)
            summary.kinds[rec.kind] += 1
            summary.per_partition[rec.partition] += 1
            if rec.value is not None:
                summary.first_ts = min(summary.first_ts or rec.timestamp, rec.timestamp)
                summary.last_ts = max(summary.last_ts or rec.timestamp, rec.timestamp)
            if truth is not None:
                kept.append(rec)
            if (i + 1) % 5000 == 0:
                bar.update(5000)
            if rate:
                ahead = (i + 1) / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        bar.update(count - bar.n)
        producer.flush(flush_timeout_s)
    if producer.failed:
        raise BrokerError(
            f"{producer.failed} of {count} records were not acknowledged: {producer.first_error}",
            hint="check the broker log",
        )
    summary.produced = count
    summary.seconds = time.monotonic() - t0
    if truth is not None:
        truth.parent.mkdir(parents=True, exist_ok=True)
        truth_frame(kept).write_parquet(truth)
    return summary
