"""Realistic, deterministic order streams.

For a given seed the generator yields the same orders (ids, customers, totals, event times,
partitions). It picks partitions itself with Kafka's murmur2 rule, so the ground truth knows where
each record lands and can label it late exactly as the aggregator will (docs/semantics.md §3).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

from kstream_lab.aggregations.spec import WindowSpec
from kstream_lab.generator.customers import customer_id, loyalty_tier_for


def recent_start_ms(minutes_back: int = 30, size_ms: int = 60_000) -> int:
    """A window-aligned event time ``minutes_back`` ago: realistic seeded data for a live pipeline."""
    import time

    now = int(time.time() * 1000)
    return now - now % size_ms - minutes_back * 60_000


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (as in the Java client's default partitioner)."""
    length, seed, m, r = len(data), 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest = length % 4
    if rest:
        tail = data[length - rest :]
        if rest == 3:
            h ^= tail[2] << 16
        if rest >= 2:
            h ^= tail[1] << 8
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def murmur2_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class GeneratedOrder:
    """One record to produce plus what the truth file needs to know about it."""

    key: str
    value: dict | None  # None for poison records
    poison: bytes | None
    partition: int
    kind: str  # ok | late | poison
    timestamp: int
    window_start: int
    tier: str


class OrderGenerator:
    """Skewed customers (Zipf-like), log-normal totals in whole cents, out-of-order event times."""

    def __init__(
        self,
        *,
        seed: int,
        start_ms: int,
        partitions: int,
        window: WindowSpec,
        customers: int = 10_000,
        late_fraction: float = 0.0,
        poison_fraction: float = 0.0,
        interval_ms: float = 20.0,
        disorder_ms: int = 3_000,
    ) -> None:
        if customers <= 0:
            raise ValueError("customers must be positive")
        for name, frac in (("late_fraction", late_fraction), ("poison_fraction", poison_fraction)):
            if not 0.0 <= frac <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {frac}")
        self.rng = random.Random(seed)
        self.start_ms, self.partitions, self.window = start_ms, partitions, window
        self.late_fraction, self.poison_fraction = late_fraction, poison_fraction
        self.interval_ms, self.disorder_ms = interval_ms, disorder_ms
        self.customer_weights = list(accumulate(1.0 / (rank**1.1) for rank in range(1, customers + 1)))
        self.watermarks = [-(2**63)] * partitions

    def __iter__(self) -> Iterator[GeneratedOrder]:
        i = 0
        while True:
            yield self._next(i)
            i += 1

    def take(self, count: int) -> Iterator[GeneratedOrder]:
        for i in range(count):
            yield self._next(i)

    def _next(self, i: int) -> GeneratedOrder:
        rng = self.rng
        order_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        partition = murmur2_partition(order_id.encode(), self.partitions)
        now = self.start_ms + int(i * self.interval_ms)
        roll = rng.random()
        if roll < self.poison_fraction:
            return self._poison(order_id, partition, rng)
        size, grace = self.window.size_ms, self.window.grace_ms
        if roll < self.poison_fraction + self.late_fraction:
            ts = now - size - grace - rng.randrange(0, 2 * size)
        else:
            ts = now - rng.randrange(0, self.disorder_ms + 1)
        cust_n = rng.choices(range(len(self.customer_weights)), cum_weights=self.customer_weights)[0]
        cust = customer_id(cust_n)
        total = max(50, int(round(math.exp(rng.gauss(math.log(4000), 0.8)))))
        value = {
            "order_id": order_id,
            "customer_id": cust,
            "total_cents": total,
            "currency": "EUR",
            "item_count": 1 + int(rng.expovariate(0.5)),
            "timestamp": ts,
        }
        window_start = ts - ts % size
        wm = self.watermarks[partition]
        late = window_start + size + grace <= wm
        self.watermarks[partition] = max(wm, ts)
        return GeneratedOrder(
            order_id, value, None, partition, "late" if late else "ok", ts, window_start, loyalty_tier_for(cust)
        )

    @staticmethod
    def _poison(order_id: str, partition: int, rng: random.Random) -> GeneratedOrder:
        """Bytes no decoder accepts: no magic byte, an unknown schema id, or a truncated body."""
        kind = rng.randrange(3)
        if kind == 0:
            payload = b"{not an order" + rng.randbytes(8)
        elif kind == 1:
            payload = b"\x00" + (0x7FFFFF00 + rng.randrange(255)).to_bytes(4, "big") + rng.randbytes(12)
        else:
            payload = b"\x00\x00\x00"  # magic byte + truncated schema id
        return GeneratedOrder(order_id, None, payload, partition, "poison", 0, 0, "")
