"""Dead letters and late events as frames.

The DLQ holds each failed record's original key and bytes, and what went wrong in headers
(docs/semantics.md §2). Here those headers become columns, so a notebook can group by error class,
look at examples and jump to the source offsets.
"""

from __future__ import annotations

import polars as pl

from kstream_lab.api import replay
from kstream_lab.settings import Settings

DLQ_HEADERS = {
    "error.class": "error_class",
    "error.reason": "error_reason",
    "error.message": "error_message",
    "source.topic": "source_topic",
    "source.partition": "source_partition",
    "source.offset": "source_offset",
    "attempts": "attempts",
    "failed.at": "failed_at",
}


def header(name: str, column: str = "headers") -> pl.Expr:
    """The first value of header ``name`` as text (null when absent), vectorised over a headers column."""
    entries = pl.col(column).list.eval(pl.element().filter(pl.element().struct.field("key") == name))
    return entries.list.first().struct.field("value").cast(pl.String)


def dead_letters(
    start="earliest", end="latest", *, topic: str = "orders_dlq", settings: Settings | None = None
) -> pl.DataFrame:
    """DLQ records in ``[start, end)`` with their headers as typed columns and the original bytes."""
    raw = replay(topic, start, end, value_format="raw", settings=settings)
    if raw.height == 0:
        return pl.DataFrame(
            schema={
                "partition": pl.Int32,
                "offset": pl.Int64,
                "key": pl.String,
                "value": pl.Binary,
                **{c: pl.String for c in DLQ_HEADERS.values()},
            }
        )
    frame = raw.with_columns([header(h).alias(c) for h, c in DLQ_HEADERS.items()])
    return frame.with_columns(
        pl.col("source_partition").cast(pl.Int32, strict=False),
        pl.col("source_offset").cast(pl.Int64, strict=False),
        pl.col("attempts").cast(pl.Int32, strict=False),
    ).drop("headers")


def dlq_summary(dead: pl.DataFrame) -> pl.DataFrame:
    """Count per error class and reason, with an example and the source offsets involved."""
    if dead.height == 0:
        return pl.DataFrame(schema={"error_class": pl.String, "error_message": pl.String, "count": pl.UInt32})
    return (
        dead.group_by("error_class", "error_message")
        .agg(
            pl.len().alias("count"),
            pl.col("value").first().alias("example_value"),
            pl.format("{}[{}]@{}", "source_topic", "source_partition", "source_offset")
            .head(5)
            .alias("example_sources"),
        )
        .sort(["count", "error_class", "error_message"], descending=[True, False, False])
    )


def late_events(
    start="earliest",
    end="latest",
    *,
    topic: str = "orders_late",
    size_ms: int = 60_000,
    settings: Settings | None = None,
) -> pl.DataFrame:
    """Late records with the window they missed (their event-time ``timestamp`` floored to ``size_ms``)."""
    late = replay(topic, start, end, settings=settings)
    if late.height == 0 or "total_cents" not in late.columns:
        return late
    ts = pl.col("timestamp").cast(pl.Int64)
    return late.with_columns((ts - ts.mod(size_ms)).alias("window_start"))
