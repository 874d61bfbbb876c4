"""Topic exploration as frames: partitions and watermarks, consumer lag, key skew, throughput.

What the first notebook shows, as plain functions returning Polars frames, so notebooks only call
and plot, and the same numbers are available from a script or the dashboard.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import polars as pl

from kstream_lab.errors import KStreamLabError
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


@dataclass(frozen=True)
class KeySkew:
    """Key skew with the sentence that says what it is skew of (a notebook shows both)."""

    column: str
    frame: pl.DataFrame
    note: str

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.note)}</p>" + self.frame._repr_html_()

    def __repr__(self) -> str:
        return f"{self.note}\n{self.frame}"


def declared_key(topic: str | None, settings: Settings | None = None) -> str | None:
    """What the pipeline file says a topic's key is (``order_id``), None if it does not say."""
    if topic is None:
        return None
    from kstream_lab.pipeline_spec import load_pipeline

    settings = settings or get_settings()
    try:
        spec = load_pipeline(settings.pipeline_file)
    except (KStreamLabError, OSError):
        return None
    found = spec.topics.get(topic)
    return found.key if found is not None else None


def explain_key_skew(
    frame: pl.DataFrame,
    topic: str | None = None,
    *,
    settings: Settings | None = None,
    fallback: str = "customer_id",
    top: int = 10,
) -> KeySkew:
    """Key skew of a replayed range, named after the topic's declared key. When every key is unique
    (order ids) there is no key skew to see; then the skew is by ``fallback`` (the field hot keys come
    from), and the note says why."""
    key = "kafka_key" if "kafka_key" in frame.columns else "key"
    name = declared_key(topic, settings) or "key"
    skew = key_skew(frame, key=key, top=top)
    distinct = frame[key].n_unique() if frame.height else 0
    if frame.height and distinct == frame.height and fallback in frame.columns:
        note = (
            f"every {name} in the range is unique ({frame.height} records, {distinct} keys), so keys cannot be "
            f"skewed; shown instead: records per {fallback}, the top {top}"
        )
        return KeySkew(fallback, key_skew(frame, key=fallback, top=top), note)
    if not frame.height:
        return KeySkew(key, skew, f"no records in the range: no skew of {name}")
    note = (
        f"records per {name} (the topic's key; {distinct} distinct in {frame.height} records), the top {top}: "
        f"the most frequent has {skew['share'][0]:.1%} of the range"
    )
    return KeySkew(key, skew, note)


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
