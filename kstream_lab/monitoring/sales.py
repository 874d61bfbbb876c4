"""Per-minute sales totals for the dashboard, read from the sink without getting in the writer's way.

The aggregator emits one row per (window, tier, source partition) -- docs/semantics.md §3 leaves the
sum over partitions to the reader, so it happens here, in SQL, in the database that holds the rows.

DuckDB lets a file be open read-write by one process *or* read-only by many, never both. The sink
worker only holds the file for the milliseconds of one batch, so we do the same from the other side:
one short read-only connection per refresh (``with_connection`` retries while a batch is being
written), and nothing kept open between refreshes. PostgreSQL readers never block writers (MVCC), so
a plain short connection is enough there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from kstream_lab.errors import KStreamLabError
from kstream_lab.generator.customers import TIERS
from kstream_lab.pipeline_spec import PipelineSpec
from kstream_lab.settings import Settings
from kstream_lab.sinks.base import TABLE, default_duckdb_path

MINUTE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "window_start": pl.Int64,
    "minute": pl.Datetime("ms", "UTC"),
    "tier": pl.String,
    "total_cents": pl.Int64,
    "count": pl.Int64,
    "partitions": pl.Int64,
    "final": pl.Boolean,
}


class SinkMissing(KStreamLabError):
    """The sink has not written anything yet: no database file, or no table in it."""


class SinkUnavailable(KStreamLabError):
    """The sink database exists but cannot be read right now (PostgreSQL down, file corrupt...)."""


@dataclass(frozen=True)
class SinkTarget:
    """Where the sink worker writes: a DuckDB file or a PostgreSQL DSN."""

    kind: Literal["duckdb", "postgres"]
    location: str

    def describe(self) -> str:
        """Human-readable location, without a password."""
        if self.kind == "duckdb":
            return f"DuckDB file {self.location}"
        from urllib.parse import urlsplit

        parts = urlsplit(self.location)
        host = parts.hostname or "localhost"
        return f"PostgreSQL {host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def sink_target(settings: Settings, spec: PipelineSpec) -> SinkTarget:
    """The target the pipeline file gives the sink worker (default: the DuckDB file in the data dir)."""
    target = spec.workers.sink.target
    if target is None:
        return SinkTarget("duckdb", str(default_duckdb_path(settings)))
    if target.startswith("duckdb://"):
        return SinkTarget("duckdb", target[len("duckdb://") :])
    if target.startswith(("postgresql://", "postgres://")):
        return SinkTarget("postgres", target)
    raise SinkUnavailable(f"unknown sink target {target!r}", hint="use duckdb:///path or postgresql://...")


def minute_totals_sql(last_minutes: int, window_ms: int) -> str:
    """Totals per (window, tier) summed over source partitions, for the newest ``last_minutes`` windows."""
    span = int(last_minutes) * int(window_ms)
    return f"""
        SELECT window_start, tier, CAST(sum(total_cents) AS BIGINT), CAST(sum(count) AS BIGINT),
               CAST(count(*) AS BIGINT), bool_and(final)
        FROM {TABLE}
        WHERE window_start > (SELECT max(window_start) FROM {TABLE}) - {span}
        GROUP BY window_start, tier
        ORDER BY window_start, tier"""


def load_minute_totals(
    target: SinkTarget, *, last_minutes: int = 60, window_ms: int = 60_000, timeout_s: float = 5.0
) -> pl.DataFrame:
    """One row per (minute, tier): exact integer cents, order count, partitions seen, all-final flag.

    Raises SinkMissing when the sink has not created its table yet, SinkUnavailable when it cannot be read.
    """
    sql = minute_totals_sql(last_minutes, window_ms)
    rows = (
        _read_duckdb(Path(target.location), sql, timeout_s)
        if target.kind == "duckdb"
        else _read_postgres(target.location, sql, timeout_s)
    )
    frame = pl.DataFrame(
        rows,
        schema=["window_start", "tier", "total_cents", "count", "partitions", "final"],
        orient="row",
        schema_overrides={k: v for k, v in MINUTE_SCHEMA.items() if k != "minute"},
    )
    return frame.with_columns(pl.col("window_start").cast(pl.Datetime("ms", "UTC")).alias("minute")).select(
        list(MINUTE_SCHEMA)
    )


def _read_duckdb(path: Path, sql: str, timeout_s: float) -> list[tuple]:
    import duckdb

    from kstream_lab.sinks.duckdb import with_connection

    if not path.exists():
        raise SinkMissing(f"no sink database at {path} yet", hint="start the sink worker: `kstream-lab worker sink`")

    def run(conn: Any) -> list[tuple]:
        return conn.execute(sql).fetchall()

    try:
        return with_connection(path, run, read_only=True, timeout_s=timeout_s)
    except duckdb.CatalogException:
        raise SinkMissing(f"{path} has no {TABLE} table yet", hint="the sink worker creates it on start") from None
    except duckdb.Error as exc:
        raise SinkUnavailable(f"cannot read {path}: {exc}") from None


def _read_postgres(dsn: str, sql: str, timeout_s: float) -> list[tuple]:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=max(1, int(timeout_s))) as conn:
            return conn.execute(sql).fetchall()
    except psycopg.errors.UndefinedTable:
        raise SinkMissing(f"PostgreSQL has no {TABLE} table yet", hint="the sink worker creates it on start") from None
    except psycopg.Error as exc:
        raise SinkUnavailable(f"cannot read PostgreSQL sink: {str(exc).strip().splitlines()[0]}") from None


def format_cents(cents: int) -> str:
    """Integer cents as dollars with thousands separators, exactly (no float on the way)."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(int(cents)), 100)
    return f"{sign}${whole:,}.{frac:02d}"


def tier_order(tiers: list[str]) -> list[str]:
    """Known loyalty tiers in rank order, then any others alphabetically."""
    known = [t for t in TIERS if t in tiers]
    return known + sorted(t for t in set(tiers) if t not in TIERS)


def minute_table(totals: pl.DataFrame, *, newest_first: bool = True, limit: int = 15) -> pl.DataFrame:
    """Wide display table: one row per minute, a formatted total per tier, the all-tier total and count.

    Values are strings formatted from integer cents, so what the page shows is exact.
    """
    if totals.is_empty():
        return pl.DataFrame()
    tiers = tier_order(totals["tier"].unique().to_list())
    per_minute = totals.group_by("window_start").agg(
        pl.col("total_cents").sum().alias("all_cents"),
        pl.col("count").sum().alias("orders"),
        pl.col("final").all().alias("final"),
    )
    wide = totals.pivot(on="tier", index="window_start", values="total_cents").join(per_minute, on="window_start")
    wide = wide.sort("window_start", descending=newest_first).head(limit)
    out: dict[str, list] = {"minute (UTC)": [minute_label(ws) for ws in wide["window_start"]]}
    for tier in tiers:
        out[tier] = [format_cents(v) if v is not None else "—" for v in wide[tier]]
    out["all tiers"] = [format_cents(v) for v in wide["all_cents"]]
    out["orders"] = [f"{v:,}" for v in wide["orders"]]
    out["status"] = ["final" if f else "open" for f in wide["final"]]
    return pl.DataFrame(out)


def chart_frame(totals: pl.DataFrame) -> pl.DataFrame:
    """Long frame for stacked bars: minute, tier, tier_rank (stack order), sales_usd (display only), orders."""
    tiers = tier_order(totals["tier"].unique().to_list())
    return totals.select(
        pl.col("minute"),
        pl.col("tier"),
        pl.col("tier").replace_strict({t: i for i, t in enumerate(tiers)}, return_dtype=pl.Int32).alias("tier_rank"),
        (pl.col("total_cents") / 100).alias("sales_usd"),
        pl.col("count").alias("orders"),
    ).sort("minute", "tier_rank")


def minute_label(window_start_ms: int) -> str:
    """``YYYY-MM-DD HH:MM`` of a window start, in UTC (the windows are epoch-aligned UTC minutes)."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(window_start_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
