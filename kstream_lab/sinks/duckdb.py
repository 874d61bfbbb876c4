"""DuckDB sink: a single file under the data dir that notebooks and the dashboard can query.

DuckDB lets one process hold a database file read-write *or* many processes hold it read-only,
never both at once. To let readers in while the sink is running, the sink never keeps the file open:
each batch is one short write transaction (connect, upsert, commit, close -- milliseconds), and
readers open short read-only connections through :func:`read_aggregates`. Whichever side finds the
file locked retries with a short backoff, so neither ever fails because of the other, and readers see
only committed batches.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from kstream_lab.sinks.base import AGGREGATE_COLUMNS, TABLE, create_table_sql, upsert_sql

T = TypeVar("T")
ARROW_SCHEMA = pa.schema(
    [
        ("window_start", pa.int64()),
        ("window_end", pa.int64()),
        ("tier", pa.string()),
        ("source_partition", pa.int32()),
        ("total_cents", pa.int64()),
        ("count", pa.int64()),
        ("final", pa.bool_()),
    ]
)

DDL = create_table_sql(text="VARCHAR", updated_at="TIMESTAMP NOT NULL DEFAULT current_timestamp")
UPSERT = upsert_sql(rows=f"SELECT {', '.join(AGGREGATE_COLUMNS)} FROM batch", now="now()::TIMESTAMP")


def _locked(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text or "used by another process" in text


def with_connection(path: Path, fn: Callable[[Any], T], *, read_only: bool, timeout_s: float = 30.0) -> T:
    """Open ``path``, run ``fn(conn)``, close; retry while another process holds the file."""
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            conn = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if not _locked(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(0.1, delay * 2)
            continue
        try:
            return fn(conn)
        finally:
            conn.close()


class DuckDBSink:
    """Idempotent upserts into ``sales_aggregates`` of a DuckDB file, one short transaction per batch."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with_connection(self.path, lambda c: c.execute(DDL), read_only=False)

    def upsert(self, rows: list[dict]) -> int:
        if not rows:
            return 0
        batch = pa.Table.from_pylist([{c: r[c] for c in AGGREGATE_COLUMNS} for r in rows], schema=ARROW_SCHEMA)

        def write(conn: Any) -> int:
            conn.register("batch", batch)
            conn.execute("BEGIN TRANSACTION")
            try:
                conn.execute(UPSERT)
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
            return batch.num_rows

        return with_connection(self.path, write, read_only=False)

    def read(self, *, final_only: bool = False) -> list[dict]:
        return read_aggregates(self.path, final_only=final_only)

    def close(self) -> None:
        """Nothing is held open between batches."""


def read_aggregates(path: Path, *, final_only: bool = False) -> list[dict]:
    """All rows of the sink file, from a short read-only connection (safe while the sink writes)."""
    where = "WHERE final" if final_only else ""
    sql = f"SELECT {', '.join(AGGREGATE_COLUMNS)} FROM {TABLE} {where} ORDER BY window_start, tier, source_partition"

    def read(conn: Any) -> list[dict]:
        cur = conn.execute(sql)
        return [dict(zip(AGGREGATE_COLUMNS, row, strict=True)) for row in cur.fetchall()]

    return with_connection(Path(path), read, read_only=True)
