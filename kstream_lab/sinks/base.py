"""The sink interface: idempotent upserts of SalesAggregate rows keyed by (window_start, tier, source_partition).

The sink consumes sales_aggregates at-least-once (offsets are committed after the database commit),
so a batch may be written twice after a crash; upserts make that harmless. A row that is already
``final`` is never changed again, so a replayed older update cannot overwrite a final result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from kstream_lab.errors import ConfigError
from kstream_lab.settings import Settings

AGGREGATE_COLUMNS = ("window_start", "window_end", "tier", "source_partition", "total_cents", "count", "final")
KEY_COLUMNS = ("window_start", "tier", "source_partition")
TABLE = "sales_aggregates"
# SQL types both databases spell alike; None: the database's own string type.
_SQL_TYPES: dict[str, str | None] = {
    "window_start": "BIGINT",
    "window_end": "BIGINT",
    "tier": None,
    "source_partition": "INTEGER",
    "total_cents": "BIGINT",
    "count": "BIGINT",
    "final": "BOOLEAN",
}


def create_table_sql(*, text: str, updated_at: str) -> str:
    """The one definition of the table, so DuckDB's and PostgreSQL's cannot drift apart.

    ``text`` is the string type (``VARCHAR``, ``TEXT``); ``updated_at`` its column type and default.
    """
    columns = [f"    {name} {_SQL_TYPES[name] or text} NOT NULL," for name in AGGREGATE_COLUMNS]
    return "\n".join(
        [
            f"\nCREATE TABLE IF NOT EXISTS {TABLE} (",
            *columns,
            f"    updated_at {updated_at},",
            f"    PRIMARY KEY ({', '.join(KEY_COLUMNS)})",
            ")",
        ]
    )


def upsert_sql(*, rows: str, now: str) -> str:
    """Insert ``rows`` (a ``SELECT`` or ``VALUES``) or update by key, never touching a row already final.

    This clause is the sink's whole idempotence rule (module docstring); ``now`` is the database's clock.
    """
    return f"""
INSERT INTO {TABLE} ({", ".join(AGGREGATE_COLUMNS)}) {rows}
ON CONFLICT ({", ".join(KEY_COLUMNS)}) DO UPDATE SET
    window_end = excluded.window_end, total_cents = excluded.total_cents, count = excluded.count,
    final = excluded.final, updated_at = {now}
WHERE NOT {TABLE}.final"""


class AggregateSink(Protocol):
    def upsert(self, rows: list[dict]) -> int:
        """Write rows (already coalesced per key) in one short transaction; return rows written."""

    def read(self, *, final_only: bool = False) -> list[dict]:
        """All rows, ordered by key (readers may call this while the sink writes)."""

    def close(self) -> None: ...


def coalesce(rows: list[dict]) -> list[dict]:
    """One row per key, the last one in input order, except that a final row is never replaced."""
    by_key: dict[tuple, dict] = {}
    for row in rows:
        key = tuple(row[c] for c in KEY_COLUMNS)
        prev = by_key.get(key)
        if prev is not None and prev["final"] and not row["final"]:
            continue
        by_key[key] = row
    return list(by_key.values())


def default_duckdb_path(settings: Settings) -> Path:
    return settings.data_dir / "sink" / "sales.duckdb"


def open_sink(target: str | None, settings: Settings) -> AggregateSink:
    """``None`` or ``duckdb:///path`` -> DuckDBSink; ``postgresql://...`` -> PostgresSink."""
    if target is None or target.startswith("duckdb://"):
        from kstream_lab.sinks.duckdb import DuckDBSink

        path = Path(target[len("duckdb://") :]) if target else default_duckdb_path(settings)
        return DuckDBSink(path)
    if target.startswith(("postgresql://", "postgres://")):
        from kstream_lab.sinks.postgres import PostgresSink

        return PostgresSink(target)
    raise ConfigError(f"unknown sink target {target!r}", hint="use duckdb:///path/to/file.duckdb or postgresql://...")
