"""`kstream-lab worker NAME`: run one pipeline process in the foreground (workers and the two apps).

The names and what runs each are :mod:`kstream_lab.workers.components`; the apps' code is in
:mod:`kstream_lab.services`, so this works from an installed wheel too.
"""

from __future__ import annotations

from pathlib import Path

import typer

from kstream_lab.cli.common import pipeline, settings
from kstream_lab.observability.tracing import configure_tracing
from kstream_lab.workers.components import component, names


def worker_cmd(
    name: str = typer.Argument(..., help=f"one of: {', '.join(names())}"),
    pipeline_file: Path | None = typer.Option(None, "--pipeline", "-P"),
    instance: int = typer.Option(0, "--instance", min=0, help="instance number (transactional id suffix)"),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="override the configured port"),
    instance_name: str | None = typer.Option(
        None,
        "--instance-name",
        help="transactional id suffix instead of the number, unique among live instances (a pod's name)",
    ),
) -> None:
    """Run a worker (enricher, aggregator, sink) or app (customer-service, order-service) until SIGTERM."""
    spec = pipeline(pipeline_file)
    s = settings()
    if pipeline_file is not None:  # Avro schemas are read next to the pipeline file
        s = s.model_copy(update={"pipeline_file": pipeline_file})
    target = component(name)
    configure_tracing(name, s)  # OTEL_TRACES_EXPORTER set: this process records spans
    if target.kind == "app":
        target.load()(s, spec)
        return
    from kstream_lab.workers.runner import run_worker  # the Kafka loop, only for workers

    raise typer.Exit(
        run_worker(name, s, spec, instance=instance, metrics_port=metrics_port, instance_name=instance_name)
    )
