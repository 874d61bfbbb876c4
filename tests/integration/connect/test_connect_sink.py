"""The pipeline with the Kafka Connect sink: Debezium's JDBC sink into a real PostgreSQL.

Real processes throughout: the session broker and registry, the pipeline's workers, a Connect worker
in distributed mode and a PostgreSQL server. The truth is the generator's (tests/support/pipeline.py).
"""

from __future__ import annotations

import psycopg

from kstream_lab.connect import LocalConnect
from kstream_lab.connect.sink import apply_sink
from kstream_lab.sinks.postgres import read_aggregates
from tests.support.pipeline import Pipeline, expected_rows, produce_truth, sink_by_key


def new_database(admin_dsn: str, name: str) -> str:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin_dsn.rsplit("/", 1)[0] + f"/{name}"


def connect_pipeline(pipe: Pipeline, postgres_dsn: str, worker: LocalConnect) -> str:
    """The pipeline's sink switched to Connect, into a database of its own; the DSN."""
    suffix = pipe.topic("orders_raw").rsplit("-", 1)[1]
    dsn = new_database(postgres_dsn, f"connect_{suffix}")
    pipe.set_worker("sink", kind="connect", target=dsn, connector_name=f"sales-{suffix}")
    return dsn


def rows(dsn: str) -> dict[tuple, dict]:
    try:
        return sink_by_key(read_aggregates(dsn))
    except psycopg.errors.UndefinedTable:
        return {}


def test_connect_sink_writes_the_pipeline_into_postgres(live_pipeline, postgres_dsn, connect_worker) -> None:
    """kind: connect: the JDBC sink's rows equal the truth to the cent, finals included."""
    pipe = live_pipeline
    dsn = connect_pipeline(pipe, postgres_dsn, connect_worker)
    truth = produce_truth(pipe, count=5000, seed=23)
    window = pipe.spec.aggregation().window
    expected = expected_rows(truth, window.size_ms, window.grace_ms)
    for name in ("customer-service", "enricher", "aggregator"):
        pipe.start(name)
    assert apply_sink(connect_worker.settings, pipe.spec, connect_worker.client) == "created"
    assert apply_sink(connect_worker.settings, pipe.spec, connect_worker.client) == "unchanged"
    pipe.wait_for(lambda: rows(dsn) == expected, timeout=180, what="PostgreSQL (Connect sink) to match the truth")
    got = rows(dsn)
    assert sum(v["count"] for v in got.values()) == truth.filter(truth["kind"] == "ok").height
    assert sum(v["total_cents"] for v in got.values()) == truth.filter(truth["kind"] == "ok")["total_cents"].sum()
    assert any(v["final"] for v in got.values()) and any(not v["final"] for v in got.values())
