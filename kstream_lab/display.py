"""Frames a person can read: event times as UTC datetimes, money as exact decimal amounts.

The data keeps what the pipeline computes with (epoch milliseconds, integer cents: exact, and what
back-tests compare); only what a notebook shows is converted, so a reader never does arithmetic on
``1733212800000`` or ``1999`` in their head. :func:`readable` returns a new frame and leaves its
argument alone.
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl

# Columns holding epoch milliseconds in kstream_lab's topics and frames (Avro timestamp-millis fields
# decoded in bulk arrive as Int64).
TIME_COLUMNS = ("timestamp", "kafka_timestamp", "window_start", "window_end", "event_time")
MONEY_SUFFIX = "_cents"
_INTEGERS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)


def readable(frame: pl.DataFrame, *, times: tuple[str, ...] = TIME_COLUMNS) -> pl.DataFrame:
    """``frame`` for display: each integer column named in ``times`` (or ending in ``_ms``) as a UTC
    datetime, each integer ``*_cents`` column as an exact ``Decimal`` amount named without the suffix
    (``total_cents`` 1999 -> ``total`` 19.99). Other columns pass through unchanged."""
    exprs = []
    for name, dtype in frame.schema.items():
        integer = dtype in _INTEGERS
        if integer and (name in times or name.endswith("_ms")):
            exprs.append(pl.from_epoch(pl.col(name).cast(pl.Int64), time_unit="ms").dt.replace_time_zone("UTC"))
        elif integer and name.endswith(MONEY_SUFFIX) and name != MONEY_SUFFIX:
            amount = pl.col(name).cast(pl.Decimal(38, 0)) * pl.lit(Decimal("0.01"), dtype=pl.Decimal(3, 2))
            exprs.append(amount.alias(name.removesuffix(MONEY_SUFFIX)))
        else:
            exprs.append(pl.col(name))
    return frame.select(exprs)
