"""The sink table's SQL, built once for both databases: the same columns, key and final-row guard."""

from __future__ import annotations

from kstream_lab.sinks import duckdb, postgres


def test_both_databases_create_the_same_table_in_their_own_types() -> None:
    assert (
        duckdb.DDL
        == """
CREATE TABLE IF NOT EXISTS sales_aggregates (
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    tier VARCHAR NOT NULL,
    source_partition INTEGER NOT NULL,
    total_cents BIGINT NOT NULL,
    count BIGINT NOT NULL,
    final BOOLEAN NOT NULL,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (window_start, tier, source_partition)
)"""
    )
    in_postgres = duckdb.DDL.replace("tier VARCHAR", "tier TEXT").replace(
        "TIMESTAMP NOT NULL DEFAULT current_timestamp", "TIMESTAMPTZ NOT NULL DEFAULT now()"
    )
    assert in_postgres == postgres.DDL


def test_both_upserts_update_by_key_and_never_touch_a_final_row() -> None:
    assert (
        postgres.UPSERT
        == """
INSERT INTO sales_aggregates (window_start, window_end, tier, source_partition, total_cents, count, final) \
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (window_start, tier, source_partition) DO UPDATE SET
    window_end = excluded.window_end, total_cents = excluded.total_cents, count = excluded.count,
    final = excluded.final, updated_at = now()
WHERE NOT sales_aggregates.final"""
    )
    in_duckdb = postgres.UPSERT.replace(
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        "SELECT window_start, window_end, tier, source_partition, total_cents, count, final FROM batch",
    ).replace("updated_at = now()", "updated_at = now()::TIMESTAMP")
    assert in_duckdb == duckdb.UPSERT
