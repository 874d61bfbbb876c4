"""`kstream-lab worker NAME`: run one pipeline process in the foreground (workers and the two apps)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer

from kstream_lab.cli.common import pipeline, settings
from kstream_lab.errors import ConfigError
from kstream_lab.workers.runner import WORKERS, run_worker

APPS = {"customer-service": "customer_service.py", "order-service": "order_service.py"}
APPS_DIR = Path(__file__).resolve().parents[2] / "apps"


def load_app_module(name: str):
    """Import apps/<name>.py by path (the apps live beside the package, not inside it)."""
    path = APPS_DIR / APPS[name]
    if not path.exists():
        raise ConfigError(f"{path} not found", hint="run from a source checkout of kstream_lab")
    spec = importlib.util.spec_from_file_location(f"kstream_lab_apps_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def worker_cmd(
    name: str = typer.Argument(..., help=f"one of: {', '.join((*WORKERS, *APPS))}"),
    pipeline_file: Path | None = typer.Option(None, "--pipeline", "-P"),
    instance: int = typer.Option(0, "--instance", min=0, help="instance number (transactional id suffix)"),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="override the configured port"),
) -> None:
    """Run a worker (enricher, aggregator, sink) or app (customer-service, order-service) until SIGTERM."""
    spec = pipeline(pipeline_file)
    s = settings()
    if pipeline_file is not None:  # Avro schemas are read next to the pipeline file
        s = s.model_copy(update={"pipeline_file": pipeline_file})
    if name in APPS:
        load_app_module(name).serve(s, spec)
        return
    if name not in WORKERS:
        raise ConfigError(f"unknown worker {name!r}", hint=f"one of: {', '.join((*WORKERS, *APPS))}")
    code = run_worker(name, s, spec, instance=instance, metrics_port=metrics_port)
    raise typer.Exit(code)
