"""Aggregation specs: one definition, two engines.

``spec`` is the declarative definition from ``pipelines/*.yaml``; ``fold`` is the streaming engine
the live aggregator runs record by record; ``batch`` compiles the same spec to a vectorised Polars
plan for back-tests. A Hypothesis test checks that the two agree on random out-of-order input.
"""

from kstream_lab.aggregations.spec import AggregationSpec, MetricSpec, WindowSpec

__all__ = ["AggregationSpec", "MetricSpec", "WindowSpec"]
