"""Topic exploration as frames: partitions and watermarks, consumer lag, key skew, throughput.

What the first notebook shows, as plain functions returning Polars frames, so notebooks only call
and plot, and the same numbers are available from a script or the dashboard.
"""

from __future__ import annotations

import polars as pl

from kstream_lab.kafka.admin import group_lags, watermarks
from kstream_lab.settings import Settings, get_settings


def topic_overview(topic: str, settings: Settings | None = None) -> pl.DataFrame:
    """One row per partition: low and high watermark, offsets between them."""
    parts = watermarks(settings or get_settings(), topic)
    return pl.DataFrame(
        {
            "partition": [p.partition for p in parts],
            "low": [p.low for p in parts],
            "high": [p.high for p in parts],
            "messages": [p.messages for p in parts],
        },
        schema={"partition": pl.Int32, "low": pl.Int64, "high": pl.Int64, "messages": pl.Int64},
    )


def consumer_lag(topic: str, settings: Settings | None = None) -> pl.DataFrame:
    """Per consumer group and partition: committed offset, high watermark and lag."""
    settings = settings or get_settings()
    highs = {p.partition: p.high for p in watermarks(settings, topic)}
    rows = [
        {"group": g.group, "partition": p, "committed": g.committed.get(p), "high": highs[p], "lag": lag}
        for g in group_lags(settings, topic, highs)
        for p, lag in sorted(g.lag.items())
    ]
    schema = {"group": pl.String, "partition": pl.Int32, "committed": pl.Int64, "high": pl.Int64, "lag": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def key_skew(frame: pl.DataFrame, *, key: str = "key", top: int = 10) -> pl.DataFrame:
    """The most frequent keys with their share of records (hot keys make hot partitions)."""
    if frame.height == 0:
        return pl.DataFrame(schema={key: pl.String, "records": pl.UInt32, "share": pl.Float64})
    counts = frame.group_by(key).len("records").sort(["records", key], descending=[True, False])
    return counts.head(top).with_columns((pl.col("records") / frame.height).alias("share"))


def partition_skew(frame: pl.DataFrame) -> pl.DataFrame:
    """Records per partition and their ratio to the mean (1.0 = perfectly balanced)."""
    counts = frame.group_by("partition").len("records").sort("partition")
    return counts.with_columns((pl.col("records") / pl.col("records").mean()).alias("vs_mean"))


def throughput(frame: pl.DataFrame, *, every: str = "1m", time_column: str | None = None) -> pl.DataFrame:
    """Records per interval of the Kafka record timestamp (append time or producer time)."""
    col = time_column or ("kafka_timestamp" if "kafka_timestamp" in frame.columns else "timestamp")
    if frame.height == 0:
        return pl.DataFrame(schema={"interval": pl.Datetime("ms", "UTC"), "records": pl.UInt32})
    times = frame.select(pl.col(col).alias("interval"))
    if times.schema["interval"] == pl.Int64:
        times = times.with_columns(pl.from_epoch("interval", time_unit="ms").dt.replace_time_zone("UTC"))
    return times.sort("interval").group_by_dynamic("interval", every=every).agg(pl.len().alias("records"))
