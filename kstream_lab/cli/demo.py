"""`kstream-lab demo`: the live order pipeline, end to end, with a summary in the terminal.

Broker and registry (when local), topics, the two apps and three workers in the background, then
orders posted to the order service while the summary refreshes. The demo owns what it starts
(:class:`~kstream_lab.processes.ProcessOwner`): Ctrl-C, SIGTERM, SIGHUP (the terminal closed) and the
end of ``--duration`` all stop the poster, let the pipeline drain and stop every process the demo
started, last started first, exit code 0. A broker, registry or component that was already running
is used and left running; ``--keep-broker`` also leaves a broker and registry the demo started.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import typer

from kstream_lab.broker import LocalBroker
from kstream_lab.cli.common import ensure_local_registry, pipeline, settings
from kstream_lab.cli.dashboard import dashboard_process
from kstream_lab.generator.produce import produce_orders
from kstream_lab.kafka.topics import apply_topics
from kstream_lab.pipeline_spec import PipelineSpec
from kstream_lab.processes import ProcessOwner, say
from kstream_lab.schemas.serde import value_serializer
from kstream_lab.settings import Settings
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
    keep_broker: bool = typer.Option(
        False, "--keep-broker", help="leave the broker and registry running afterwards, also when the demo started them"
    ),
) -> None:
    """Run the live pipeline: apps, workers, the dashboard, orders posted over HTTP, a refreshing summary."""
    s = settings()
    with ProcessOwner(report=lambda name, outcome: say(f"  {name:<17} {outcome}")) as owner:
        try:
            _start_services(s, None if keep_broker else owner)
            if pipeline_file is not None:  # schemas are read next to the pipeline file
                s = s.model_copy(update={"pipeline_file": pipeline_file})
            spec = pipeline(pipeline_file)
            assert spec.path is not None  # set by load_pipeline
            _prepare_topics(s, spec, count, seed, owner)
            sup = Supervisor(s, spec)
            for st in sup.up(owner=owner):
                say(f"{st.name:<17} pid {st.pid:<7} {st.url}")
            if dashboard:
                board = dashboard_process(s, Path(spec.path).resolve(), dashboard_port)
                pid = board.up(60.0, owner=owner)
                say(f"{'dashboard':<17} pid {pid:<7} http://127.0.0.1:{dashboard_port}")
            _run_live(sup, s, rate, seed, duration, owner.stop)
        finally:
            say(f"stopping the pipeline{f' ({owner.signal})' if owner.signal else ''} ...")


def _start_services(s: Settings, owner: ProcessOwner | None) -> None:
    """The local broker and registry, when they are the configured ones and not running yet."""
    if s.uses_local_broker:
        broker = LocalBroker(s)
        if broker.pid() is None:
            say(f"kafka up at {broker.up(owner=owner)}")
    ensure_local_registry(s, owner=owner)


def _prepare_topics(s: Settings, spec: PipelineSpec, count: int, seed: int, owner: ProcessOwner) -> None:
    owner.check()
    for change in apply_topics(s, list(spec.topics.values())):
        if change.action != "unchanged":
            say(str(change))
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
        say(summary.lines()[0])
    owner.check()


def _run_live(sup: Supervisor, s, rate: float, seed: int, duration: float | None, stop: threading.Event) -> None:
    cfg = sup.config.order_service
    poster = OrderPoster(f"http://{cfg.host}:{cfg.port}/orders", rate, seed=seed, stop=stop)
    sink = open_sink(sup.config.sink.target, s)
    t0 = time.monotonic()
    poster.start()
    say(f"posting {rate:g} orders/s to the order service; Ctrl-C stops")
    while not stop.wait(3.0):
        elapsed = time.monotonic() - t0
        say("\n".join(summary_lines(sup, poster, sink, elapsed)))
        if duration is not None and elapsed >= duration:
            break
    stop.set()
    poster.join(15)
    if not drain(sup, poster.outcomes.get("202", 0)):
        say("(the pipeline did not drain within 15 s)")
    say("\n".join(summary_lines(sup, poster, sink, time.monotonic() - t0)))
