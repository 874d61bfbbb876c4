"""`kstream-lab demo`: the live order pipeline, end to end, with a summary in the terminal.

Broker and registry (when local), topics, the two apps and three workers in the background, then
orders posted to the order service while the summary refreshes. Ctrl-C (or ``--duration``) stops the
poster and every pipeline process cleanly; the broker keeps running for the next command.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import typer

from kstream_lab.broker import LocalBroker
from kstream_lab.cli.common import ensure_local_registry, pipeline, settings
from kstream_lab.errors import KStreamLabError
from kstream_lab.generator.produce import produce_orders
from kstream_lab.kafka.topics import apply_topics
from kstream_lab.schemas.serde import value_serializer
from kstream_lab.sinks.base import open_sink
from kstream_lab.workers.live_demo import OrderPoster, drain, summary_lines
from kstream_lab.workers.supervisor import Supervisor


def demo_cmd(
    duration: float | None = typer.Option(None, "--duration", min=1, help="seconds to run (default: until Ctrl-C)"),
    rate: float = typer.Option(50.0, "--rate", min=0.1, help="orders per second posted to the order service"),
    count: int = typer.Option(0, "--count", min=0, help="generated orders produced straight to orders_raw first"),
    seed: int = typer.Option(1, "--seed"),
    pipeline_file: Path | None = typer.Option(None, "--pipeline", "-P"),
    dashboard_port: int = typer.Option(8501, "--dashboard-port", min=1, max=65535),
    dashboard: bool = typer.Option(True, "--dashboard/--no-dashboard", help="also serve the live dashboard"),
) -> None:
    """Run the live pipeline: apps, workers, the dashboard, orders posted over HTTP, a refreshing summary."""
    s = settings()
    if s.uses_local_broker:
        broker = LocalBroker(s)
        if broker.pid() is None:
            typer.echo(f"kafka up at {broker.up()}")
    ensure_local_registry(s)
    if pipeline_file is not None:  # schemas are read next to the pipeline file
        s = s.model_copy(update={"pipeline_file": pipeline_file})
    spec = pipeline(pipeline_file)
    for change in apply_topics(s, list(spec.topics.values())):
        if change.action != "unchanged":
            typer.echo(str(change))
    if count:
        raw = spec.topic("orders_raw")
        summary = produce_orders(
            s,
            raw,
            value_serializer(s, raw),
            spec.aggregation().window,
            count=count,
            seed=seed,
            late_fraction=0.01,
            poison_fraction=0.005,
        )
        typer.echo(summary.lines()[0])
    sup = Supervisor(s, spec)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    board = None
    try:
        for st in sup.up():
            typer.echo(f"{st.name:<17} pid {st.pid:<7} {st.url}")
        if dashboard:
            board = start_dashboard(s, Path(spec.path), dashboard_port)
            typer.echo(f"{'dashboard':<17} pid {board.pid:<7} http://127.0.0.1:{dashboard_port}")
        _run_live(sup, s, rate, seed, duration, stop)
    finally:
        typer.echo("stopping the pipeline ...")
        if board is not None:
            typer.echo(f"  {'dashboard':<17} {stop_dashboard(board)}")
        for name, outcome in sup.down().items():
            typer.echo(f"  {name:<17} {outcome}")
        signal.signal(signal.SIGINT, previous)


def start_dashboard(s, pipeline_path: Path, port: int, timeout: float = 60.0) -> subprocess.Popen:
    """`kstream-lab dashboard` as a child with its log under the data dir; wait until it is healthy."""
    log_dir = s.data_dir / "pipeline" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "kstream_lab",
        "dashboard",
        "--port",
        str(port),
        "--pipeline",
        str(pipeline_path.resolve()),
    ]
    with (log_dir / "dashboard.log").open("ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise KStreamLabError(
                f"the dashboard exited with code {proc.returncode}",
                hint=f"see {log_dir / 'dashboard.log'}; --no-dashboard skips it",
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise KStreamLabError(
        f"the dashboard did not answer on port {port} within {timeout:.0f}s",
        hint="--dashboard-port picks another port; --no-dashboard skips it",
    )


def stop_dashboard(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    proc.terminate()
    try:
        proc.wait(timeout)
        return "stopped"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return "killed"


def _run_live(sup: Supervisor, s, rate: float, seed: int, duration: float | None, stop: threading.Event) -> None:
    cfg = sup.config.order_service
    poster = OrderPoster(f"http://{cfg.host}:{cfg.port}/orders", rate, seed=seed, stop=stop)
    sink = open_sink(sup.config.sink.target, s)
    t0 = time.monotonic()
    poster.start()
    typer.echo(f"posting {rate:g} orders/s to the order service; Ctrl-C stops")
    while not stop.wait(3.0):
        elapsed = time.monotonic() - t0
        typer.echo("\n".join(summary_lines(sup, poster, sink, elapsed)))
        if duration is not None and elapsed >= duration:
            break
    stop.set()
    poster.join(15)
    if not drain(sup, poster.outcomes.get("202", 0)):
        typer.echo("(the pipeline did not drain within 15 s)")
    typer.echo("\n".join(summary_lines(sup, poster, sink, time.monotonic() - t0)))
