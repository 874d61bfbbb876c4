"""The real Prometheus server (Debian's `prometheus`) scraping a running pipeline with
deploy/prometheus/prometheus.yml, its targets moved to this test's ports and its alert rules loaded:
through Prometheus' HTTP API, kstream_consumed_total per service equals the records each service
actually processed (every record of its input topic, read back read_committed), and the order
service's accepted-orders counter equals the orders posted to it."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from kstream_lab.kafka.admin import committed_offsets
from kstream_lab.workers.components import COMPONENTS, component
from tests.support.paths import ROOT, free_port
from tests.support.pipeline import Pipeline, produce_truth
from tests.support.processes import stop

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None, reason="make setup installs prometheus")

ORDERS, POSTED = 10_000, 7
CONSUMERS = {"enricher": "orders_raw", "aggregator": "orders_enriched", "sink": "sales_aggregates"}


def prometheus_config(pipe: Pipeline, dest: Path) -> Path:
    """deploy/prometheus/prometheus.yml with each job's target at this pipeline's port, scraping every second."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(ROOT / "deploy" / "prometheus" / f) for f in config["rule_files"]]
    for job in config["scrape_configs"]:
        url = component(job["job_name"]).metrics_url(pipe.workers)
        assert url is not None
        job["static_configs"] = [{"targets": [url.split("/")[2]]}]
    path = dest / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def rule_names() -> list[str]:
    """Every alert and recording rule the deployed rule files define."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    names = []
    for f in config["rule_files"]:
        for group in yaml.safe_load((ROOT / "deploy" / "prometheus" / f).read_text())["groups"]:
            names += [r.get("alert") or r["record"] for r in group["rules"]]
    assert len(names) >= 7, names
    return sorted(names)


def behind(pipe: Pipeline, name: str, role: str) -> dict[int, tuple[int | None, int]]:
    """Partitions of the input whose last record the service's group has not committed past:
    (committed, last record's offset + 1). Not the partition's end: a transactional input ends with
    a commit marker, which a consumer never commits past."""
    group = pipe.workers.model_dump()[name]["group_id"]
    topic = pipe.topic(role)
    after_last: dict[int, int] = {}
    for r in pipe.read(role):
        after_last[r.partition] = max(after_last.get(r.partition, 0), r.offset + 1)
    done = committed_offsets(pipe.settings, group, topic, sorted(after_last))
    return {p: (done.get(p), end) for p, end in after_last.items() if done.get(p, -1) < end}


def query(base: str, promql: str) -> dict[str, float]:
    """An instant query's result as {first label value: value}."""
    resp = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=10)
    resp.raise_for_status()
    return {next(iter(r["metric"].values()), ""): float(r["value"][1]) for r in resp.json()["data"]["result"]}


def test_prometheus_counts_what_each_service_processed(live_pipeline: Pipeline, tmp_path: Path) -> None:
    pipe = live_pipeline
    for c in COMPONENTS:
        pipe.start(c.name)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("wb")
    server = subprocess.Popen(
        ["prometheus", f"--config.file={prometheus_config(pipe, tmp_path)}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
        + [f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        pipe.wait_http(f"{base}/-/ready", timeout=60)
        orders = pipe.workers.order_service
        for i in range(POSTED):
            resp = httpx.post(
                f"http://127.0.0.1:{orders.port}/orders", json={"customer_id": f"C{i:07d}", "total_cents": 100 + i}
            )
            assert resp.status_code == 202, resp.text
        produce_truth(pipe, ORDERS)
        for name, role in CONSUMERS.items():
            try:
                pipe.wait_for(lambda n=name, r=role: not behind(pipe, n, r), timeout=180, what=f"{name} to catch up")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {behind(pipe, name, role)}\n{pipe.log(name)[-3000:]}") from None
        processed = {name: float(len(pipe.read(role))) for name, role in CONSUMERS.items()}
        assert processed["enricher"] == ORDERS + POSTED and processed["sink"] > 0

        def scraped() -> dict[str, float]:
            return query(base, "sum by (service) (kstream_consumed_total)")

        deadline = time.monotonic() + 30  # a few scrapes after the last commit
        while scraped() != processed and time.monotonic() < deadline:
            time.sleep(1)
        assert scraped() == processed
        accepted = 'sum(kstream_http_requests_total{service="order-service", route="/orders", status="202"})'
        assert query(base, accepted) == {"": float(POSTED)}
        assert query(base, "sum by (job) (up)") == {c.name: 1.0 for c in COMPONENTS}  # a job per component
        rules = httpx.get(f"{base}/api/v1/rules", timeout=10).json()["data"]["groups"]
        assert sorted(r["name"] for g in rules for r in g["rules"]) == rule_names()  # every rule loads
    finally:
        stop(server, timeout=15)
        log.close()
