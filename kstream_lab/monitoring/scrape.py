"""Reading the workers' Prometheus endpoints: DLQ/late counters, consumer lag and circuit-breaker state.

Every worker (:mod:`kstream_lab.workers.components`) serves the metric names of
:mod:`kstream_lab.observability.metrics` on its own port (``workers.<name>.metrics_port`` in the
pipeline file). The dashboard asks each one directly, with a short timeout, instead of needing a
Prometheus server: a worker that is down shows as unreachable and the others still report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kstream_lab.pipeline_spec import PipelineSpec
from kstream_lab.workers.components import COMPONENTS

BREAKER_NAMES = {0: "closed", 1: "half-open", 2: "open"}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class WorkerMetrics:
    """What one worker's /metrics said, or why it could not be read."""

    service: str
    url: str
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    @property
    def up(self) -> bool:
        return self.error is None

    def total(self, name: str, **labels: str) -> int:
        """Sum of a counter's samples matching ``labels`` (0 when absent)."""
        return int(sum(s.value for s in self.samples if s.name == name and _match(s.labels, labels)))

    def series(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]

    def breakers(self) -> dict[str, str]:
        """Breaker name -> closed / half-open / open."""
        return {
            s.labels.get("breaker", "?"): BREAKER_NAMES.get(int(s.value), f"unknown ({s.value:g})")
            for s in self.series("kstream_breaker_state")
        }


def _match(have: dict[str, str], want: dict[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


def parse_metrics(text: str) -> list[Sample]:
    """Prometheus text exposition -> samples (counters keep their ``_total`` names)."""
    out: list[Sample] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append(Sample(s.name, dict(s.labels), float(s.value)))
    return out


def metrics_endpoints(spec: PipelineSpec, host: str = "127.0.0.1") -> dict[str, str]:
    """Worker name -> metrics URL, from the pipeline file (workers without a port are left out)."""
    wc = spec.workers
    out = {}
    for c in COMPONENTS:
        if c.kind == "worker" and (port := c.port(wc)):
            out[c.name] = f"http://{host}:{port}/metrics"
    return out


def scrape(endpoints: dict[str, str], timeout_s: float = 1.0) -> list[WorkerMetrics]:
    """Scrape every endpoint once; unreachable ones come back with ``error`` set, never raise."""
    out = []
    with httpx.Client(timeout=timeout_s) as client:
        for service, url in endpoints.items():
            try:
                resp = client.get(url)
                resp.raise_for_status()
                out.append(WorkerMetrics(service, url, parse_metrics(resp.text)))
            except httpx.HTTPError as exc:
                out.append(WorkerMetrics(service, url, error=_reason(exc)))
            except ValueError as exc:
                out.append(WorkerMetrics(service, url, error=f"unparseable metrics: {exc}"))
    return out


def _reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "not running (connection refused)"
    if isinstance(exc, httpx.TimeoutException):
        return "no answer (timeout)"
    return str(exc) or type(exc).__name__


def counters_table(workers: Iterable[WorkerMetrics]) -> list[dict]:
    """One row per worker: up/down, consumed, produced, errors, DLQ, late and breaker states."""
    rows: list[dict[str, object]] = []
    for w in workers:
        if not w.up:
            rows.append(
                {
                    "worker": w.service,
                    "status": w.error,
                    "consumed": None,
                    "produced": None,
                    "errors": None,
                    "dlq": None,
                    "late": None,
                    "breakers": "—",
                }
            )
            continue
        breakers = ", ".join(f"{k}: {v}" for k, v in sorted(w.breakers().items()))
        rows.append(
            {
                "worker": w.service,
                "status": "up",
                "consumed": w.total("kstream_consumed_total"),
                "produced": w.total("kstream_produced_total"),
                "errors": w.total("kstream_errors_total"),
                "dlq": w.total("kstream_dlq_total"),
                "late": w.total("kstream_late_total"),
                "breakers": breakers or "none",
            }
        )
    return rows
