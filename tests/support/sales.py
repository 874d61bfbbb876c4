"""Sample sink rows (sales_aggregates) for the dashboard and monitoring tests."""

from __future__ import annotations

MINUTE = 60_000
T0 = 1_790_000_040_000 - 1_790_000_040_000 % MINUTE  # 2026-09-21 14:14 UTC, an epoch-aligned minute


def agg(ws: int, tier: str, partition: int, total_cents: int, count: int, final: bool = True) -> dict:
    return {
        "window_start": ws,
        "window_end": ws + MINUTE,
        "tier": tier,
        "source_partition": partition,
        "total_cents": total_cents,
        "count": count,
        "final": final,
    }


# Two minutes, three tiers, spread over partitions; the second minute is still open on partition 2.
ROWS = [
    agg(T0, "gold", 0, 12_345, 2),
    agg(T0, "gold", 1, 10_001, 1),
    agg(T0, "silver", 0, 999, 1),
    agg(T0, "bronze", 3, 1, 1),
    agg(T0 + MINUTE, "gold", 0, 50_000, 3),
    agg(T0 + MINUTE, "platinum", 2, 123_456_789, 7, final=False),
    agg(T0 + MINUTE, "silver", 4, 1_050, 2),
    agg(T0 + MINUTE, "silver", 5, 2_075, 1),
]
