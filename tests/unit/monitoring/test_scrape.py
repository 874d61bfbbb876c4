"""Worker metrics: real Prometheus exposition from prometheus_client, served over HTTP on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server

from kstream_lab.monitoring.scrape import counters_table, metrics_endpoints, parse_metrics, scrape
from kstream_lab.pipeline_spec import WorkersConfig, load_pipeline
from tests.support.paths import ROOT, free_port


def worker_registry() -> CollectorRegistry:
    """The metric names the workers register (kstream_lab.observability.metrics), with known values."""
    reg = CollectorRegistry()
    consumed = Counter("kstream_consumed", "c", ["service", "topic"], registry=reg)
    produced = Counter("kstream_produced", "p", ["service", "topic"], registry=reg)
    dlq = Counter("kstream_dlq", "d", ["service"], registry=reg)
    late = Counter("kstream_late", "l", ["service"], registry=reg)
    errors = Counter("kstream_errors", "e", ["service", "kind"], registry=reg)
    breaker = Gauge("kstream_breaker_state", "b", ["service", "breaker"], registry=reg)
    consumed.labels("enricher", "orders_raw").inc(1200)
    produced.labels("enricher", "orders_enriched").inc(1190)
    produced.labels("enricher", "orders_dlq").inc(7)
    dlq.labels("enricher").inc(7)
    late.labels("enricher").inc(0)
    errors.labels("enricher", "retriable").inc(2)
    errors.labels("enricher", "consume").inc(1)
    breaker.labels("enricher", "customer-service").set(2)
    return reg


@pytest.fixture
def metrics_url() -> Iterator[str]:
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=worker_registry())
    yield f"http://127.0.0.1:{port}/metrics"
    server.shutdown()
    thread.join(5)


def test_parse_and_sum_counters() -> None:
    samples = parse_metrics(generate_latest(worker_registry()).decode())
    names = {s.name for s in samples}
    assert {"kstream_consumed_total", "kstream_dlq_total", "kstream_breaker_state"} <= names


def test_scrape_reads_counters_and_breaker_state(metrics_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    enricher, sink = scrape({"enricher": metrics_url, "sink": dead}, timeout_s=2)
    assert enricher.up and enricher.total("kstream_produced_total") == 1197
    assert enricher.total("kstream_produced_total", topic="orders_dlq") == 7
    assert enricher.breakers() == {"customer-service": "open"}
    assert not sink.up and sink.error == "not running (connection refused)"
    rows = counters_table([enricher, sink])
    assert rows[0] == {
        "worker": "enricher",
        "status": "up",
        "consumed": 1200,
        "produced": 1197,
        "errors": 3,
        "dlq": 7,
        "late": 0,
        "breakers": "customer-service: open",
    }
    assert rows[1]["worker"] == "sink" and rows[1]["status"] == "not running (connection refused)"
    assert rows[1]["dlq"] is None


def test_endpoints_come_from_the_pipeline_file() -> None:
    spec = load_pipeline(ROOT / "pipelines" / "orders.yaml")
    assert metrics_endpoints(spec) == {
        "enricher": "http://127.0.0.1:9401/metrics",
        "aggregator": "http://127.0.0.1:9402/metrics",
        "sink": "http://127.0.0.1:9403/metrics",
    }
    workers = WorkersConfig.model_validate({"sink": {"metrics_port": None}, "enricher": {"metrics_port": 1234}})
    off = spec.model_copy(update={"workers": workers})
    assert metrics_endpoints(off) == {
        "enricher": "http://127.0.0.1:1234/metrics",
        "aggregator": "http://127.0.0.1:9402/metrics",
    }
