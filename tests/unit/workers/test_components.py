"""The component list defined once: names, kinds, entries and ports, and everything that derives from it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from kstream_lab.errors import ConfigError
from kstream_lab.monitoring.scrape import metrics_endpoints
from kstream_lab.pipeline_spec import load_pipeline
from kstream_lab.settings import Settings
from kstream_lab.workers import components as c
from kstream_lab.workers.supervisor import COMPONENTS, Supervisor
from tests.support.paths import ROOT

SPEC = load_pipeline(ROOT / "pipelines" / "orders.yaml")
WC = SPEC.workers


def test_names_kinds_and_start_order() -> None:
    assert c.names() == ("customer-service", "order-service", "enricher", "aggregator", "sink")
    assert c.names("app") == ("customer-service", "order-service")
    assert c.names("worker") == ("enricher", "aggregator", "sink")
    assert c.names() == COMPONENTS  # the supervisor starts (and stops, reversed) exactly these


def test_every_entry_loads_what_runs_it() -> None:
    from kstream_lab.services import customer_service, order_service
    from kstream_lab.workers import runner

    assert [x.load() for x in c.COMPONENTS] == [
        customer_service.serve,
        order_service.serve,
        runner.build_enricher,
        runner.build_aggregator,
        runner.build_sink,
    ]


def test_ports_and_urls_come_from_the_workers_config(tmp_path) -> None:
    order, enricher = c.component("order-service"), c.component("enricher")
    assert order.port(WC) == 8600 and order.health_url(WC) == "http://127.0.0.1:8600/healthz"
    assert order.metrics_url(WC) == "http://127.0.0.1:8600/metrics"
    assert enricher.port(WC) == 9401 and enricher.port(WC, instance=2) == 9403
    assert enricher.health_url(WC) == enricher.metrics_url(WC) == "http://127.0.0.1:9401/metrics"
    data = yaml.safe_load(SPEC.path.read_text())
    data["workers"]["sink"]["metrics_port"] = None
    (tmp_path / "orders.yaml").write_text(yaml.safe_dump(data))
    no_metrics = load_pipeline(tmp_path / "orders.yaml").workers
    assert c.component("sink").port(no_metrics) is None and c.component("sink").health_url(no_metrics) is None


def test_a_worker_bound_to_every_address_is_dialled_on_loopback(tmp_path) -> None:
    """In a pod the chart sets metrics_host 0.0.0.0 (probes and Prometheus dial the pod's IP); the local
    scraper still dials 127.0.0.1, and a specific address is dialled as given."""
    data = yaml.safe_load(SPEC.path.read_text())
    data["workers"]["enricher"]["metrics_host"] = "0.0.0.0"
    data["workers"]["sink"]["metrics_host"] = "10.1.2.3"
    (tmp_path / "orders.yaml").write_text(yaml.safe_dump(data))
    wc = load_pipeline(tmp_path / "orders.yaml").workers
    assert wc.enricher.metrics_host == "0.0.0.0" and WC.enricher.metrics_host == "127.0.0.1"
    assert c.component("enricher").metrics_url(wc) == "http://127.0.0.1:9401/metrics"
    assert c.component("sink").metrics_url(wc) == "http://10.1.2.3:9403/metrics"


def test_supervisor_and_scraper_derive_from_the_list(tmp_path) -> None:
    sup = Supervisor(Settings(data_dir=tmp_path), SPEC)
    assert [st.name for st in sup.status()] == list(c.names())
    assert [sup.url(n) for n in c.names()] == [
        "http://127.0.0.1:8601/healthz",
        "http://127.0.0.1:8600/healthz",
        "http://127.0.0.1:9401/metrics",
        "http://127.0.0.1:9402/metrics",
        "http://127.0.0.1:9403/metrics",
    ]
    assert sup.process("sink").command[-4:] == ["worker", "sink", "--pipeline", str(SPEC.path.resolve())]
    assert list(metrics_endpoints(SPEC)) == list(c.names("worker"))


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        c.component("billing")
    assert str(err.value) == (
        "unknown worker 'billing' (one of: customer-service, order-service, enricher, aggregator, sink)"
    )
    with pytest.raises(ConfigError, match=r"^unknown worker 'order-service' \(one of: enricher, aggregator, sink\)$"):
        c.component("order-service", "worker")


def test_worker_cli_refuses_an_unknown_name_in_one_line() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kstream_lab",
            "worker",
            "billing",
            "--pipeline",
            str(ROOT / "pipelines" / "orders.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: unknown worker 'billing' (one of: customer-service, order-service, enricher, aggregator, sink)"
    ]
