"""Deterministic order generator with ground truth for exact checks."""

from kstream_lab.generator.customers import loyalty_tier_for
from kstream_lab.generator.orders import GeneratedOrder, OrderGenerator, murmur2_partition, recent_start_ms

__all__ = ["GeneratedOrder", "OrderGenerator", "loyalty_tier_for", "murmur2_partition", "recent_start_ms"]
