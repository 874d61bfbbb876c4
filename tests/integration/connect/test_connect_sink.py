"""The pipeline with the Kafka Connect sink: Debezium's JDBC sink into a real PostgreSQL.

Real processes throughout: the session broker and registry, the pipeline's workers, a Connect worker
in distributed mode and a PostgreSQL server. The truth is the generator's (tests/support/pipeline.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import psycopg

from kstream_lab.connect import LocalConnect
from kstream_lab.connect.sink import apply_sink
from kstream_lab.kafka.admin import committed_offsets
from kstream_lab.kafka.producing import BatchProducer
from kstream_lab.monitoring.sales import load_minute_totals, sink_target
from kstream_lab.processes import pid_alive, port_free
from kstream_lab.schemas.serde import SerdeContext, value_serializer
from kstream_lab.sinks.postgres import read_aggregates
from kstream_lab.workers.dlq import DeadLetter
from tests.support.paths import free_port
from tests.support.pipeline import (
    BackgroundProducer,
    Pipeline,
    assert_pipeline_results,
    expected_rows,
    produce_truth,
    rows_diff,
    sink_by_key,
    totals_per_window_tier,
)
from tests.support.processes import run_cli


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


def connect_diagnosis(pipe: Pipeline, dsn: str, expected: dict, home) -> str:
    """For a timed-out wait: the rows' difference, the connector DLQ's count, the worker logs' tails."""
    parts = [rows_diff(rows(dsn), expected)]
    try:
        dead = len(pipe.read("orders_dlq"))
        parts.append(f"{pipe.spec.workers.sink.dlq}: {dead} records (poison and connector errors)")
    except Exception as exc:  # a diagnosis never hides the failure it explains
        parts.append(f"(DLQ unread: {exc})")
    for log in sorted(home.parent.rglob("*.log")):
        parts.append(f"--- {log.name} (tail)\n{log.read_text(errors='replace')[-2500:]}")
    return "\n".join(parts)


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
    # the dashboard reads the Connect sink's table as it reads the Python sink's
    minutes = load_minute_totals(sink_target(pipe.settings, pipe.spec), last_minutes=10_000)
    by_window = totals_per_window_tier(got, final_only=False)
    assert {(r["window_start"], r["tier"]): r["total_cents"] for r in minutes.iter_rows(named=True)} == by_window


def test_an_older_update_never_overwrites_a_final_and_bad_records_are_dead_lettered(
    live_pipeline, postgres_dsn, connect_worker
) -> None:
    """Replayed as after a crash: update, final, then the older update again. The row stays final with
    the final's values (the table's trigger; Debezium's upsert alone would go back). A record that is
    not Confluent-framed Avro goes to the dead-letter topic with its bytes and the reason, and the
    connector goes on to the records after it."""
    pipe = live_pipeline
    dsn = connect_pipeline(pipe, postgres_dsn, connect_worker)
    topic = pipe.topic("sales_aggregates")
    serialize = value_serializer(pipe.settings, pipe.spec.topic(topic))
    ws = 1_700_000_000_000

    def agg(total: int, count: int, final: bool, tier: str = "gold") -> bytes:
        row = {"window_start": ws, "window_end": ws + 60_000, "tier": tier, "source_partition": 0}
        return serialize({**row, "total_cents": total, "count": count, "final": final}, SerdeContext(topic))

    records = [
        (f"{ws}:gold:0", agg(100, 1, False)),
        (f"{ws}:gold:0", agg(250, 2, True)),
        (f"{ws}:gold:0", agg(100, 1, False)),  # the older update, replayed
        (f"{ws}:gold:0", b"\x07not avro at all"),
        (f"{ws}:silver:0", agg(999, 3, False, "silver")),
        (f"{ws}:silver:0", agg(1234, 4, True, "silver")),
    ]
    with BatchProducer(pipe.settings) as producer:
        for key, value in records:
            producer.produce(topic, key=key.encode(), value=value, partition=0)
    apply_sink(connect_worker.settings, pipe.spec, connect_worker.client)
    group = f"connect-{pipe.workers.sink.connector_name}"
    pipe.wait_for(
        lambda: committed_offsets(pipe.settings, group, topic, [0]).get(0) == len(records),
        timeout=120,
        what="the connector to commit past every record",
    )
    assert rows(dsn) == {
        (ws, "gold", 0): {"total_cents": 250, "count": 2, "final": True},
        (ws, "silver", 0): {"total_cents": 1234, "count": 4, "final": True},
    }
    dlq = pipe.read("orders_dlq")
    assert [(r.key, r.value) for r in dlq] == [(f"{ws}:gold:0".encode(), b"\x07not avro at all")]
    letter = DeadLetter.from_record(dlq[0].key, dlq[0].value, dlq[0].headers)
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (topic, 0, 3)
    assert letter.error_class == "DataException" and letter.error_reason == "connect_value_converter"
    assert "not Confluent-framed Avro" in letter.error_message and "first byte 7" in letter.error_message
    assert connect_worker.client.states()[pipe.workers.sink.connector_name] == "RUNNING"


class FlakyRegistry(ThreadingHTTPServer):
    """A registry front that answers 503 to its first ``failures`` requests, then forwards to ``upstream``."""

    def __init__(self, upstream: str, failures: int) -> None:
        self.upstream, self.failures, self.refused, self.forwarded = upstream.rstrip("/"), failures, 0, 0
        super().__init__(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def _handler(self):
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if front.refused < front.failures:
                    front.refused += 1
                    status, body, kind = 503, b'{"error_code":50301,"message":"restarting"}', "application/json"
                else:
                    front.forwarded += 1
                    answer = httpx.get(front.upstream + self.path, headers={"Accept": self.headers["Accept"] or ""})
                    status, body, kind = answer.status_code, answer.content, answer.headers["content-type"]
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        return Handler


def test_a_registry_outage_is_retried_not_dead_lettered(live_pipeline, postgres_dsn, connect_worker) -> None:
    """The registry answers 503 to the converter's first three schema fetches (as while it restarts):
    Connect retries, every record reaches PostgreSQL and nothing goes to the dead-letter topic."""
    pipe = live_pipeline
    front = FlakyRegistry(pipe.settings.registry_url, failures=3)
    try:
        dsn = connect_pipeline(pipe, postgres_dsn, connect_worker)
        pipe.set_worker("sink", connector_config={"value.converter.schema.registry.url": front.url})
        topic = pipe.topic("sales_aggregates")
        serialize = value_serializer(pipe.settings, pipe.spec.topic(topic))
        ws = 1_700_000_000_000
        row = {"window_start": ws, "window_end": ws + 60_000, "source_partition": 0, "final": False}
        with BatchProducer(pipe.settings) as producer:
            for n, tier in enumerate(("gold", "silver", "bronze"), start=1):
                value = serialize({**row, "tier": tier, "total_cents": 100 * n, "count": n}, SerdeContext(topic))
                producer.produce(topic, key=f"{ws}:{tier}:0".encode(), value=value, partition=0)
        apply_sink(connect_worker.settings, pipe.spec, connect_worker.client)
        pipe.wait_for(lambda: len(rows(dsn)) == 3, timeout=120, what="the three rows after the outage")
    finally:
        front.shutdown()
    assert rows(dsn) == {
        (ws, "gold", 0): {"total_cents": 100, "count": 1, "final": False},
        (ws, "silver", 0): {"total_cents": 200, "count": 2, "final": False},
        (ws, "bronze", 0): {"total_cents": 300, "count": 3, "final": False},
    }
    assert front.refused == 3 and front.forwarded >= 1
    assert pipe.read("orders_dlq") == []
    assert connect_worker.client.states()[pipe.workers.sink.connector_name] == "RUNNING"


def test_connect_worker_sigkilled_mid_run_and_restarted(live_pipeline, postgres_dsn, connect_worker) -> None:
    """SIGKILL the Connect worker while the pipeline runs, start it again: it resumes from its committed
    offsets into the same final rows, and no reader ever sees a final row change (polled throughout)."""
    pipe = live_pipeline
    dsn = connect_pipeline(pipe, postgres_dsn, connect_worker)
    rate, count = 1000.0, 30_000
    pipe.set_window("5s", "3s")
    producer = BackgroundProducer(pipe, count, rate, seed=29)
    for name in ("customer-service", "enricher", "aggregator"):
        pipe.start(name)
    apply_sink(connect_worker.settings, pipe.spec, connect_worker.client)
    watcher = FinalWatcher(dsn)
    watcher.start()
    producer.start()
    try:
        pipe.wait_for(lambda: any(v["final"] for v in rows(dsn).values()), timeout=120, what="a first final row")
        time.sleep(3)
        pid = connect_worker.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        while pid_alive(pid):  # reaps it: the REST port is free once it is gone
            time.sleep(0.05)
        wait_port_free(connect_worker.settings.connect_port)
        written_before = len(rows(dsn))
        connect_worker.up(timeout=240)  # the pid file names a dead process: a start, not a refusal
        truth = producer.truth()
        window = pipe.spec.aggregation().window
        expected = expected_rows(truth, window.size_ms, window.grace_ms)
        pipe.wait_for(lambda: pipe.aggregator_caught_up(), timeout=180, what="the aggregator to catch up")
        pipe.wait_for(lambda: rows(dsn) == expected, timeout=240, what="PostgreSQL to match after the SIGKILL")
    finally:
        watcher.stop.set()
        watcher.join(10)
    assert 0 < written_before < len(expected)
    assert watcher.polls > 20 and watcher.finals_seen > 0
    assert watcher.changed == [], f"final rows changed after they were final: {watcher.changed[:5]}"
    assert_pipeline_results(pipe, truth, expected)


def wait_port_free(port: int, timeout: float = 60.0) -> None:
    """The killed worker's REST port, free again (sockets still closing can hold it a moment)."""
    deadline = time.monotonic() + timeout
    while not port_free(port):
        if time.monotonic() > deadline:
            held = subprocess.run(["ss", "-tanp"], capture_output=True, text=True).stdout
            raise AssertionError(
                f"port {port} still in use:\n" + "\n".join(line for line in held.splitlines() if f":{port}" in line)
            )
        time.sleep(0.2)


class FinalWatcher(threading.Thread):
    """Polls the table; records any row that was final once and later reads differently."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.stop = dsn, threading.Event()
        self.finals: dict[tuple, dict] = {}
        self.changed: list[tuple] = []
        self.polls = 0

    @property
    def finals_seen(self) -> int:
        return len(self.finals)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                now = rows(self.dsn)
            except psycopg.OperationalError:
                continue
            self.polls += 1
            for key, value in now.items():
                if key in self.finals and self.finals[key] != value:
                    self.changed.append((key, self.finals[key], value))
                elif value["final"]:
                    self.finals.setdefault(key, value)


def test_pipeline_up_runs_the_connect_sink_and_the_cli_applies_it(live_pipeline, postgres_dsn) -> None:
    """`pipeline up` with kind: connect starts a Connect worker as the `sink` component and applies the
    connector; `connect apply <pipeline>` again is `unchanged`; `pipeline down` stops all five."""
    pipe = live_pipeline
    suffix = pipe.topic("orders_raw").rsplit("-", 1)[1]
    dsn = new_database(postgres_dsn, f"cli_{suffix}")
    pipe.set_worker("sink", kind="connect", target=dsn, connector_name=f"cli-{suffix}")
    port = free_port()
    env = {
        "KSTREAM_DATA_DIR": str(pipe.tmp / "data"),
        "KSTREAM_CONNECT_PORT": str(port),
        "KSTREAM_CONNECT_GROUP_ID": f"cli-{suffix}",
    }
    truth = produce_truth(pipe, count=3000, seed=31)
    window = pipe.spec.aggregation().window
    expected = expected_rows(truth, window.size_ms, window.grace_ms)
    up = run_cli("pipeline", "up", "--pipeline", str(pipe.file), "--timeout", "240", env=env, timeout=400)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{port}/connectors" in up.stdout
        pipe.wait_for(
            lambda: rows(dsn) == expected,
            timeout=180,
            what="the Connect sink to match the truth",
            explain=lambda: connect_diagnosis(pipe, dsn, expected, pipe.tmp / "data" / "connect"),
        )
        again = run_cli("connect", "apply", str(pipe.file), env=env)
        assert again.returncode == 0 and again.stdout.strip() == f"cli-{suffix}: unchanged (running)", again.stdout
        status = run_cli("connect", "status", env={**env, "KSTREAM_DATA_DIR": str(pipe.tmp / "other")})
        assert f"connector:  cli-{suffix}: RUNNING" in status.stdout, status.stdout  # REST answers, whoever started it
        refused = run_cli("worker", "sink", "--pipeline", str(pipe.file), env=env)
        assert refused.returncode == 2 and "workers.sink.kind is connect" in refused.stderr
    finally:
        down = run_cli("pipeline", "down", "--pipeline", str(pipe.file), "--timeout", "30", env=env)
    assert down.returncode == 0 and down.stdout.count("stopped") == 5, down.stdout + down.stderr
