"""Prometheus' scrape configs, the alert rules and the Grafana dashboard name what exists: the
components and their ports (kstream_lab/workers/components.py), the metrics
(kstream_lab/observability/metrics.py). No Grafana server can be had here, so the dashboard is checked
structurally and its queries are parsed by promtool (as recording rules)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kstream_lab.observability.metrics import METRICS
from kstream_lab.pipeline_spec import load_pipeline
from kstream_lab.workers.components import COMPONENTS
from tests.support.paths import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "kstream-lab.json"
SPEC = load_pipeline(ROOT / "pipelines" / "orders.yaml")
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def exported_names() -> set[str]:
    """The series names the metrics expose, with Prometheus' suffixes per type."""
    out = {"up"}
    for f in dataclasses.fields(METRICS):
        metric = getattr(METRICS, f.name)
        out |= {metric._name + suffix for suffix in SUFFIXES[metric._type]}
    return out


def named_metrics(expr: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    return set(re.findall(r"\b(kstream_\w+|up)\b", without_labels))


def dashboard_queries() -> list[str]:
    return [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]


def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]]


def test_every_component_is_scraped_at_its_port_as_its_own_job() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    want = {c.name: [c.metrics_url(SPEC.workers).split("/")[2]] for c in COMPONENTS}  # type: ignore[union-attr]
    assert jobs == want
    k8s = yaml.safe_load((PROMETHEUS / "kubernetes.yml").read_text())
    (pods,) = k8s["scrape_configs"]
    relabel = {r.get("target_label"): r["source_labels"] for r in pods["relabel_configs"]}
    assert relabel["job"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_component"]  # the chart's label
    assert k8s["rule_files"] == config["rule_files"] == ["alerts.yml"]


def test_the_alerts_the_issue_lists_exist_and_name_existing_metrics() -> None:
    rules = alert_rules()
    assert [r["alert"] for r in rules] == [
        "KStreamConsumerLagHigh",
        "KStreamDeadLettersHigh",
        "KStreamCircuitBreakerOpen",
        "KStreamAggregatorNotCommitting",
        "KStreamNoOrdersAccepted",
        "KStreamLatencyP99High",
        "KStreamEndToEndP99High",
    ]
    names = exported_names()
    for r in rules:
        used = named_metrics(r["expr"])
        assert used and used <= names, (r["alert"], used - names)
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    fired = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t["exp_alerts"]}
    quiet = {t["alertname"] for case in tests for t in case["alert_rule_test"] if not t["exp_alerts"]}
    assert fired == quiet == {r["alert"] for r in rules}  # each alert once firing and once not


def test_the_dashboard_is_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert variables == {"datasource", "service"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, f"{p['title']} overlaps another panel"
        cells |= area
        assert p["type"] in {"timeseries", "stat", "state-timeline", "gauge", "table"}
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        used = {v for t in p["targets"] for v in re.findall(r"\$(\w+)", t["expr"])}
        assert used <= variables | {"__rate_interval"}, p["title"]


def test_every_dashboard_query_names_existing_metrics_and_covers_the_pipeline() -> None:
    names, queries = exported_names(), dashboard_queries()
    for q in queries:
        used = named_metrics(q)
        assert used and used <= names, (q, used - names)
    covered = set().union(*map(named_metrics, queries))
    assert {"kstream_consumer_lag", "kstream_consumed_total", "kstream_errors_total", "kstream_dlq_total"} <= covered
    assert {"kstream_breaker_state", "kstream_http_requests_total", "kstream_transactions_total"} <= covered


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool: make setup installs prometheus")
def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    exprs = [q.replace("$__rate_interval", "5m").replace("$service", ".*") for q in dashboard_queries()]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"q{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        ["promtool", "check", "rules", str(tmp_path / "dashboard.yml")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout
