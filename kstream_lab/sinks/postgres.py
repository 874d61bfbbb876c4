"""PostgreSQL sink behind the same interface as DuckDB.

PostgreSQL's MVCC already gives readers consistent snapshots while the sink writes, so the sink keeps
one connection and writes each batch in one transaction with ``INSERT ... ON CONFLICT DO UPDATE``
(never touching rows that are already final).
"""

from __future__ import annotations

import zlib

import psycopg

from kstream_lab.sinks.base import AGGREGATE_COLUMNS, TABLE, create_table_sql, upsert_sql

DDL = create_table_sql(text="TEXT", updated_at="TIMESTAMPTZ NOT NULL DEFAULT now()")


# CREATE TABLE IF NOT EXISTS is not safe against itself: two sessions creating the table at the same
# moment can both pass the "exists?" check and one fails on pg_type's unique index. Sinks (and
# readers) starting together therefore take this transaction-scoped advisory lock around the DDL.
DDL_LOCK = zlib.crc32(f"kstream_lab.{TABLE}".encode())

UPSERT = upsert_sql(rows=f"VALUES ({', '.join(['%s'] * len(AGGREGATE_COLUMNS))})", now="now()")


class PostgresSink:
    """Idempotent upserts into ``sales_aggregates`` of a PostgreSQL database."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn = psycopg.connect(dsn)
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
            self.conn.execute(DDL)

    def upsert(self, rows: list[dict]) -> int:
        if not rows:
            return 0
        params = [tuple(r[c] for c in AGGREGATE_COLUMNS) for r in rows]
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(UPSERT, params)
        return len(params)

    def read(self, *, final_only: bool = False) -> list[dict]:
        where = "WHERE final" if final_only else ""
        sql = (
            f"SELECT {', '.join(AGGREGATE_COLUMNS)} FROM {TABLE} {where} ORDER BY window_start, tier, source_partition"
        )
        with psycopg.connect(self.dsn) as conn:
            return [dict(zip(AGGREGATE_COLUMNS, row, strict=True)) for row in conn.execute(sql).fetchall()]

    def close(self) -> None:
        self.conn.close()
