"""Where sales aggregates land: DuckDB (default, a file under the data dir) or PostgreSQL, one interface."""

from kstream_lab.sinks.base import AGGREGATE_COLUMNS, AggregateSink, coalesce, open_sink

__all__ = ["AGGREGATE_COLUMNS", "AggregateSink", "coalesce", "open_sink"]
