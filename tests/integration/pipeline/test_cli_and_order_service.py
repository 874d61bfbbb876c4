"""`kstream-lab pipeline up|status|down` and the order service end to end: POST /orders -> the sink row.

One order posted over HTTP travels order service -> enricher -> aggregator -> sink, and its W3C trace
id appears in the Kafka headers of every hop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx

from kstream_lab.generator.customers import loyalty_tier_for
from kstream_lab.observability.tracing import trace_id_of
from kstream_lab.processes import read_pid
from tests.support.paths import ROOT, free_port
from tests.support.pipeline import Pipeline
from tests.support.processes import run_cli


def cli(pipe: Pipeline, *args: str) -> subprocess.CompletedProcess:
    """``kstream-lab ARGS --pipeline FILE`` with the pipeline's own data dir."""
    return run_cli(*args, "--pipeline", str(pipe.file), env={"KSTREAM_DATA_DIR": str(pipe.tmp / "data")}, timeout=120)


def test_pipeline_up_status_down_and_an_order_end_to_end(live_pipeline: Pipeline) -> None:
    pipe = live_pipeline
    up = cli(pipe, "pipeline", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        status = cli(pipe, "pipeline", "status")
        assert status.returncode == 0 and status.stdout.count("running (pid") == 5, status.stdout
        base = f"http://127.0.0.1:{pipe.workers.order_service.port}"

        bad = httpx.post(f"{base}/orders", json={"customer_id": "C0000001", "total_cents": 12.5, "item_count": 0})
        assert bad.status_code == 422
        assert {tuple(e["loc"]) for e in bad.json()["detail"]} == {("body", "total_cents"), ("body", "item_count")}

        resp = httpx.post(f"{base}/orders", json={"customer_id": "C0000042", "total_cents": 1999, "item_count": 2})
        assert resp.status_code == 202, resp.text
        accepted = resp.json()
        assert accepted["offset"] >= 0 and 0 <= accepted["partition"] < 6 and len(accepted["trace_id"]) == 32

        tier = loyalty_tier_for("C0000042")
        rows = pipe.wait_for(lambda: pipe.sink_rows(), timeout=60, what="the order to reach the sink")
        assert [(r["tier"], r["source_partition"], r["total_cents"], r["count"], r["final"]) for r in rows] == [
            (tier, accepted["partition"], 1999, 1, False)
        ]

        for role in ("orders_raw", "orders_enriched", "sales_aggregates"):
            records = pipe.read(role)
            assert len(records) == 1 and trace_id_of(records[0].headers) == accepted["trace_id"], role
        enriched = pipe.decoded("orders_enriched")
        assert enriched[0][0].decode() == accepted["order_id"] and enriched[0][1]["loyalty_tier"] == tier

        metrics = httpx.get(f"{base}/metrics").text
        assert 'kstream_http_requests_total{route="/orders",service="order-service",status="202"} 1.0' in metrics
        watch_restarts_a_killed_worker(pipe)
    finally:
        down = cli(pipe, "pipeline", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.count("stopped") == 5, down.stdout
    assert cli(pipe, "pipeline", "status").returncode == 1


def watch_restarts_a_killed_worker(pipe: Pipeline) -> None:
    """`pipeline watch` restarts the enricher after a SIGKILL; stopping the watch leaves it running."""
    pid_file = pipe.tmp / "data" / "pipeline" / "pids" / "enricher.pid"
    env = {**os.environ, "KSTREAM_DATA_DIR": str(pipe.tmp / "data")}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "kstream_lab", "pipeline", "watch", "--interval", "0.2", "--pipeline", str(pipe.file)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        old = int(pid_file.read_text())
        os.kill(old, signal.SIGKILL)
        new = pipe.wait_for(
            lambda: (p := read_pid(pid_file)) and p != old and p, timeout=60, what="the enricher to be restarted"
        )
        pipe.wait_http(f"http://127.0.0.1:{pipe.workers.enricher.metrics_port}/metrics")
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, _ = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, out
    assert "enricher exited" in out and f"enricher restarted (pid {new})" in out, out
    assert read_pid(pid_file) == new  # the watch stopped, the restarted enricher did not


def test_demo_runs_bounded_and_stops_everything(live_pipeline: Pipeline) -> None:
    pipe = live_pipeline
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "kstream_lab",
            "demo",
            "--duration",
            "8",
            "--rate",
            "40",
            "--pipeline",
            str(pipe.file),
            "--dashboard-port",
            str(free_port()),
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "orders accepted" in out and "aggregator" in out
    accepted = [
        int(line.split("orders accepted")[1].split()[0]) for line in out.splitlines() if "orders accepted" in line
    ]
    assert accepted[-1] > 100
    assert "dashboard         pid" in out and "http://127.0.0.1:" in out
    assert out.count(" stopped") == 6 and "did not drain" not in out, out
    rows = pipe.sink_rows()
    assert sum(r["count"] for r in rows) == accepted[-1]
