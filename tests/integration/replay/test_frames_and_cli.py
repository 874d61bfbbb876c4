"""Replayed ranges into DuckDB, SQL, pandas and partitioned Parquet; the replay CLI."""

from __future__ import annotations

import json
import time

import duckdb
import polars as pl

import kstream_lab
from kstream_lab.replay.parquet import scan_export
from tests.support.processes import run_cli

T0 = (int(time.time()) - 3_600) * 1000


def orders(n: int) -> list[tuple[int, int, dict]]:
    tiers = ["gold", "silver", "bronze"]
    return [
        (
            i % 3,
            T0 + i,
            {"order_id": f"o{i}", "total_cents": 100 + i, "timestamp": T0 + i, "loyalty_tier": tiers[i % 3]},
        )
        for i in range(n)
    ]


def test_duckdb_sql_pandas(kafka_settings, topic_factory, produce_json):
    topic = topic_factory("sql", partitions=3)
    produce_json(topic, orders(300))
    df = kstream_lab.replay(topic, settings=kafka_settings)
    con = duckdb.connect()
    kstream_lab.to_duckdb(df, "o", con)
    want = [(300, sum(100 + i for i in range(300)))]
    assert con.execute("select count(*), sum(total_cents) from o").fetchall() == want
    kstream_lab.to_duckdb(df, "o_table", con, table=True)
    del df
    assert con.execute('select max("offset") from o_table').fetchall() == [(99,)]
    q = f'select loyalty_tier, count(*) n, sum(total_cents) s from "{topic}" group by 1 order by 1'
    out = kstream_lab.sql(q, start=f"@{T0 + 150}", settings=kafka_settings)
    assert out.rows() == [
        ("bronze", 50, sum(100 + i for i in range(150, 300) if i % 3 == 2)),
        ("gold", 50, sum(100 + i for i in range(150, 300) if i % 3 == 0)),
        ("silver", 50, sum(100 + i for i in range(150, 300) if i % 3 == 1)),
    ]
    pdf = kstream_lab.replay(topic, end=5, settings=kafka_settings).to_pandas()
    assert list(pdf["order_id"]) == [
        "o0",
        "o3",
        "o6",
        "o9",
        "o12",
        "o1",
        "o4",
        "o7",
        "o10",
        "o13",
        "o2",
        "o5",
        "o8",
        "o11",
        "o14",
    ]


def test_chunked_export_and_cli(kafka_settings, topic_factory, produce_json, tmp_path):
    topic = topic_factory("export", partitions=3)
    produce_json(topic, orders(3_000))
    summary = kstream_lab.export(topic, tmp_path / "out", settings=kafka_settings, chunk_rows=400, progress=False)
    assert summary.records == 3_000 and summary.files == 9  # 1,000 per partition in chunks of <= 400 + rest
    files = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.parquet"))
    assert files[:3] == [
        "partition-0/part-00000000000000000000.parquet",
        "partition-0/part-00000000000000000400.parquet",
        "partition-0/part-00000000000000000800.parquet",
    ]
    scanned = scan_export(tmp_path / "out").collect()
    assert scanned.height == 3_000 and scanned["offset"].head(3).to_list() == [0, 1, 2]
    manifest = json.loads((tmp_path / "out" / "_range.json").read_text())
    assert manifest["partitions"] == {
        "0": {"start": 0, "end": 1000},
        "1": {"start": 0, "end": 1000},
        "2": {"start": 0, "end": 1000},
    }
    kstream_lab.to_parquet(kstream_lab.replay(topic, end=2, settings=kafka_settings), tmp_path / "one.parquet")
    assert pl.read_parquet(tmp_path / "one.parquet").height == 6

    res = run_cli(
        "replay",
        topic,
        "--from",
        "0:10,2:990",
        "--to",
        "latest",
        "--out",
        str(tmp_path / "cli"),
        "--no-progress",
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "wrote 1,000 records in 2 file(s)" in res.stdout
    parts = scan_export(tmp_path / "cli").select(pl.col("partition").unique().sort()).collect()
    assert parts.to_series().to_list() == [0, 2]  # a start dict also selects the partitions
    res = run_cli("replay", topic, "--to", "3", timeout=120)
    assert res.returncode == 0 and res.stdout.strip().endswith("9 records")
    res = run_cli("replay", "no-such-topic-abc", timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("error: unknown topic 'no-such-topic-abc'")
    (tmp_path / "schema.json").write_text('{"order_id": "String", "total_cents": "Int32", "coupon": "String"}')
    res = run_cli(
        "replay",
        topic,
        "--out",
        str(tmp_path / "typed"),
        "--schema",
        str(tmp_path / "schema.json"),
        "--no-progress",
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    typed = scan_export(tmp_path / "typed").collect()
    assert typed.height == 3000 and typed.schema["total_cents"] == pl.Int32 and typed["coupon"].null_count() == 3000
    assert typed["total_cents"].sum() == sum(100 + i for i in range(3000)) and "loyalty_tier" not in typed.columns
