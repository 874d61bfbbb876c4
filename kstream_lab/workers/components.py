"""The pipeline's processes, defined once: name, kind, what runs it and where it answers.

`kstream-lab worker NAME` runs one of these, the supervisor (`pipeline up|down|status|watch`, the
demo) starts them in this order and stops them in reverse, and the metrics scraper, the demo summary
and the dashboard read the workers' /metrics from here. Ports come from the typed ``workers:``
section of the pipeline file (:mod:`kstream_lab.pipeline_spec`). Entries are import strings, so
reading this list imports neither FastAPI nor a Kafka client.

Apps come first: the enricher looks tiers up in the customer service, and the order service is
where orders enter.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, Literal

from kstream_lab.errors import ConfigError
from kstream_lab.pipeline_spec import WorkersConfig

Kind = Literal["app", "worker"]


@dataclass(frozen=True)
class Component:
    """``entry`` is "module:function": an app's ``serve(settings, spec)``, a worker's
    ``build(settings, spec, stop, instance)`` (run by :func:`kstream_lab.workers.runner.run_worker`)."""

    name: str
    kind: Kind
    entry: str

    @property
    def config_key(self) -> str:
        """Its key in the pipeline file's ``workers:`` section."""
        return self.name.replace("-", "_")

    def load(self) -> Callable[..., Any]:
        module, function = self.entry.split(":")
        return getattr(import_module(module), function)

    def config(self, workers: WorkersConfig) -> Any:
        return getattr(workers, self.config_key)

    def port(self, workers: WorkersConfig, instance: int = 0) -> int | None:
        """An app's HTTP port, or a worker's metrics port (instance n: port + n; None: no metrics,
        0: any free port)."""
        cfg = self.config(workers)
        if self.kind == "app":
            return cfg.port
        return None if cfg.metrics_port is None else cfg.metrics_port + instance

    def metrics_url(self, workers: WorkersConfig) -> str | None:
        """Where its /metrics is (None when it has none, or it picks a free port at start)."""
        port = self.port(workers)
        if not port:
            return None
        cfg = self.config(workers)
        host = cfg.host if self.kind == "app" else cfg.metrics_host
        if host in ("0.0.0.0", "::", ""):  # bound to every address: dial loopback
            host = "127.0.0.1"
        return f"http://{host}:{port}/metrics"

    def health_url(self, workers: WorkersConfig) -> str | None:
        """What answers 200 once it runs: an app's /healthz, a worker's /metrics (None: nothing)."""
        if self.kind == "app":
            cfg = self.config(workers)
            return f"http://{cfg.host}:{cfg.port}/healthz"
        return self.metrics_url(workers)


COMPONENTS: tuple[Component, ...] = (
    Component("customer-service", "app", "kstream_lab.services.customer_service:serve"),
    Component("order-service", "app", "kstream_lab.services.order_service:serve"),
    Component("enricher", "worker", "kstream_lab.workers.runner:build_enricher"),
    Component("aggregator", "worker", "kstream_lab.workers.runner:build_aggregator"),
    Component("sink", "worker", "kstream_lab.workers.runner:build_sink"),
)


def names(kind: Kind | None = None) -> tuple[str, ...]:
    """Component names in start order, optionally of one kind."""
    return tuple(c.name for c in COMPONENTS if kind is None or c.kind == kind)


def component(name: str, kind: Kind | None = None) -> Component:
    for c in COMPONENTS:
        if c.name == name and (kind is None or c.kind == kind):
            return c
    what = kind or "worker"
    raise ConfigError(f"unknown {what} {name!r}", hint=f"one of: {', '.join(names(kind))}")


def worker_command(name: str, pipeline_file: str | Path, *extra: str) -> list[str]:
    """The command line that runs component ``name`` in the foreground (``kstream-lab worker NAME``)."""
    return [sys.executable, "-m", "kstream_lab", "worker", name, "--pipeline", str(pipeline_file), *extra]
