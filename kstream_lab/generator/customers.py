"""The customer base: a stable loyalty tier per customer id.

The customer service serves these tiers and the generator's truth file uses them, so tests can
predict the enricher's output exactly.
"""

from __future__ import annotations

import zlib

TIERS = ("bronze", "silver", "gold", "platinum")
_CUTS = (50, 80, 95, 100)  # cumulative percent: 50% bronze, 30% silver, 15% gold, 5% platinum
UNKNOWN_TIER = "unknown"


def loyalty_tier_for(customer_id: str) -> str:
    bucket = zlib.crc32(customer_id.encode()) % 100
    return next(t for t, cut in zip(TIERS, _CUTS, strict=True) if bucket < cut)


def customer_id(n: int) -> str:
    return f"C{n:07d}"
