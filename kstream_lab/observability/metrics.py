"""Prometheus metrics, one set per process, labelled by service.

The names are shared by all workers and apps so one dashboard query covers the pipeline
(``sum by (service) (rate(kstream_consumed_total[1m]))``). Each process serves them on its own port.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram, start_http_server


@dataclass(frozen=True)
class PipelineMetrics:
    consumed: Counter
    produced: Counter
    errors: Counter
    dlq: Counter
    late: Counter
    latency: Histogram
    end_to_end: Histogram
    lag: Gauge
    breaker_state: Gauge
    transactions: Counter
    http_requests: Counter


METRICS = PipelineMetrics(
    consumed=Counter("kstream_consumed", "Records consumed", ["service", "topic"]),
    produced=Counter("kstream_produced", "Records produced", ["service", "topic"]),
    errors=Counter("kstream_errors", "Errors by kind", ["service", "kind"]),
    dlq=Counter("kstream_dlq", "Records sent to the dead-letter topic", ["service"]),
    late=Counter("kstream_late", "Records past the window grace (to orders_late)", ["service"]),
    latency=Histogram(
        "kstream_processing_seconds",
        "Processing time of one batch (or request)",
        ["service"],
        buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    ),
    end_to_end=Histogram(
        "kstream_end_to_end_seconds",
        "From an order's POST to the sink's commit of the aggregate update it triggered",
        ["service"],
        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    ),
    lag=Gauge(
        "kstream_consumer_lag",
        "Records between the committed position and the high watermark",
        ["service", "topic", "partition"],
    ),
    breaker_state=Gauge(
        "kstream_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", ["service", "breaker"]
    ),
    transactions=Counter("kstream_transactions", "Kafka transactions by outcome", ["service", "outcome"]),
    http_requests=Counter("kstream_http_requests", "HTTP requests by route and status", ["service", "route", "status"]),
)

BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


def start_metrics_server(port: int | None, host: str = "127.0.0.1") -> int | None:
    """Serve /metrics on ``host:port`` (0 picks a free one); returns the bound port, None when disabled."""
    if port is None:
        return None
    server, _thread = start_http_server(port, addr=host)
    return server.server_address[1]
