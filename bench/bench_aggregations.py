"""Spec v2 window kinds without Kafka: the aggregator's fold and the back-test's plan, per kind.

* **fold**: :class:`AggregatorProcessor` (filter and derived fields evaluated per batch, the fold,
  the aggregates it emits, the changelog) over already-decoded columns of generated orders in
  batches of the worker's size (10,000), outputs discarded: events/s per process, each kind beside
  today's tumbling spec in the same run. Decoding is left out (it is the same for every kind;
  bench_pipeline.py measures it with the broker).
* **batch**: ``run_batch`` over the same orders as one frame: seconds, beside tumbling.

``python -m bench.bench_aggregations`` writes bench/results/aggregations.json.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import polars as pl

from kstream_lab.aggregations.batch import run_batch
from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.workers.aggregator import AggregatorProcessor
from kstream_lab.workers.codec import Columns

EVENTS = int(os.environ.get("KSTREAM_BENCH_AGG_EVENTS", "1000000"))
BATCH = 10_000
PARTITIONS = 6
BASE = {"name": "bench", "source": "orders_enriched", "group_by": ["loyalty_tier"]}
SUMS = {"total_cents": {"sum": "total_cents"}, "count": {"count": "*"}}
SPECS = {
    "tumbling 60s (today)": {"window": {"size": "60s", "grace": "10s"}, "metrics": SUMS},
    "hopping 5m/1m + filter": {
        "window": {"type": "hopping", "size": "5m", "advance": "1m", "grace": "10s"},
        "filter": "total_cents >= 3000",
        "metrics": SUMS,
    },
    "session 30s per customer + filter": {
        "window": {"type": "session", "gap": "30s", "grace": "10s"},
        "filter": "total_cents >= 3000",
        "group_by": ["customer_id"],
        "metrics": SUMS,
    },
    "sliding 60s": {"window": {"type": "sliding", "size": "60s", "grace": "10s"}, "metrics": SUMS},
}
# A sliding window's cost grows with the records per window (each record is in every window within
# `size` of it, ~750 here per tier and partition): it runs over fewer events.
SLIDING_EVENTS = int(os.environ.get("KSTREAM_BENCH_AGG_SLIDING_EVENTS", "50000"))


class _Msg:
    __slots__ = ("_o", "_p")

    def __init__(self, p: int, o: int) -> None:
        self._p, self._o = p, o

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def topic(self) -> str:
        return "orders_enriched"

    def value(self) -> bytes:
        return b""

    def key(self) -> bytes:
        return b""

    def headers(self) -> list:
        return []


class _Discard:
    def send(self, *args, **kwargs) -> None:
        pass


def orders(n: int, seed: int = 1) -> dict[str, list]:
    rng = random.Random(seed)
    tiers = ["bronze", "silver", "gold", "platinum"]
    t0 = 1_700_000_000_000
    ts = [t0 + i * 20 - rng.randrange(0, 3001) for i in range(n)]
    return {
        "partition": [i % PARTITIONS for i in range(n)],
        "offset": [i // PARTITIONS for i in range(n)],
        "timestamp": ts,
        "total_cents": [max(50, int(rng.lognormvariate(8.3, 0.8))) for _ in range(n)],
        "loyalty_tier": [tiers[rng.randrange(4)] for _ in range(n)],
        "customer_id": [f"C{rng.randrange(10_000):07d}" for _ in range(n)],
    }


def fold_rate(spec: AggregationSpec, data: dict[str, list]) -> float:
    events = len(data["timestamp"])
    ints, others = AggregatorProcessor.fields(spec)
    names = [*ints, *others]
    batches = []
    for at in range(0, events, BATCH):
        msgs = [
            _Msg(p, o) for p, o in zip(data["partition"][at : at + BATCH], data["offset"][at : at + BATCH], strict=True)
        ]
        cols = {n: data[n][at : at + BATCH] for n in names}
        batches.append((msgs, cols))
    queue = iter(batches)
    current: dict = {}

    def decode(values, topic, partitions, offsets):
        return Columns(dict(current), list(range(len(values))))

    proc = AggregatorProcessor(spec, decode=decode, encode_aggregate=lambda v: b"", output="o", late="l", dlq="d")
    proc.assign(list(range(PARTITIONS)), lambda parts: {p: [] for p in parts})
    out = _Discard()
    t0 = time.perf_counter()
    for msgs, cols in queue:
        current.clear()
        current.update(cols)
        proc.process(msgs, out)
        proc.changelog()
    return events / (time.perf_counter() - t0)


def batch_seconds(spec: AggregationSpec, frame: pl.DataFrame) -> float:
    t0 = time.perf_counter()
    run_batch(spec, frame)
    return time.perf_counter() - t0


def main() -> None:
    data = orders(EVENTS)
    frame = pl.DataFrame(data).with_columns(pl.col("partition").cast(pl.Int32))
    results = {"events": EVENTS, "batch_size": BATCH, "load_average": os.getloadavg()[0], "kinds": {}}
    for name, body in SPECS.items():
        spec = AggregationSpec.model_validate({**BASE, **body})
        n = SLIDING_EVENTS if body["window"].get("type") == "sliding" else EVENTS
        part = {k: v[:n] for k, v in data.items()}
        rate = fold_rate(spec, part)
        secs = batch_seconds(spec, frame.head(n))
        results["kinds"][name] = {"events": n, "fold_events_per_s": round(rate), "batch_seconds": round(secs, 3)}
        print(f"{name:36s} {n:>9,} events: fold {rate:>10,.0f} events/s   batch {secs:6.2f} s")
    results["load_average_end"] = os.getloadavg()[0]
    out = Path(__file__).parent / "results" / "aggregations.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
