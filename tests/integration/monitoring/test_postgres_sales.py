"""Per-minute totals from a real PostgreSQL sink: the same numbers as DuckDB, and a clear empty state."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from kstream_lab.monitoring.sales import SinkMissing, SinkTarget, load_minute_totals
from kstream_lab.sinks.duckdb import DuckDBSink
from kstream_lab.sinks.postgres import PostgresSink
from tests.support.sales import ROWS


def test_postgres_totals_equal_duckdb_totals(postgres_dsn: str, tmp_path: Path) -> None:
    name = f"dash_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = postgres_dsn.rsplit("/", 1)[0] + f"/{name}"
    with pytest.raises(SinkMissing, match="PostgreSQL has no sales_aggregates table yet"):
        load_minute_totals(SinkTarget("postgres", dsn))

    sink = PostgresSink(dsn)
    sink.upsert(ROWS)
    sink.close()
    duck = DuckDBSink(tmp_path / "sales.duckdb")
    duck.upsert(ROWS)
    from_pg = load_minute_totals(SinkTarget("postgres", dsn))
    from_duck = load_minute_totals(SinkTarget("duckdb", str(duck.path)))
    assert from_pg.rows() == from_duck.rows()
    assert from_pg["total_cents"].to_list() == [1, 22_346, 999, 50_000, 123_456_789, 3_125]
