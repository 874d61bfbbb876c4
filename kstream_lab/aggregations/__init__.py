"""Aggregation specs: one definition, two engines (streaming fold and vectorised batch)."""

from kstream_lab.aggregations.spec import AggregationSpec, MetricSpec, WindowSpec

__all__ = ["AggregationSpec", "MetricSpec", "WindowSpec"]
