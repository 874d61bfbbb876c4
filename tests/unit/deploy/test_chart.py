"""The Helm chart's promises, read from what `helm template` renders (helm: `make setup`)."""

from __future__ import annotations

import pytest
import yaml

from kstream_lab.durations import parse_duration_ms
from kstream_lab.pipeline_spec import load_pipeline
from kstream_lab.workers.components import COMPONENTS
from tests.support import chart
from tests.support.paths import ROOT

try:
    chart.helm()
except FileNotFoundError as exc:  # pragma: no cover - make setup installs it
    pytest.skip(str(exc), allow_module_level=True)

SPEC = load_pipeline(ROOT / "pipelines" / "orders.yaml")


@pytest.fixture(scope="module")
def default() -> list[dict]:
    return chart.render()


@pytest.fixture(scope="module")
def production() -> list[dict]:
    return chart.render([str(chart.PRODUCTION)])


def kinds(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"].removeprefix("orders-kstream-lab-"): d for d in docs if d["kind"] == kind}


def container(deployment: dict) -> dict:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def test_the_chart_copies_of_the_pipeline_and_schedules_are_the_repositorys() -> None:
    for name in ("orders.yaml", "schedules.yaml"):
        assert (chart.CHART / "files" / name).read_text() == (ROOT / "pipelines" / name).read_text(), name


def test_one_deployment_per_component_of_the_registry(default: list[dict]) -> None:
    values = yaml.safe_load((chart.CHART / "values.yaml").read_text())
    assert {n: c["kind"] for n, c in values["components"].items()} == {c.name: c.kind for c in COMPONENTS}
    assert set(kinds(default, "Deployment")) == {c.name for c in COMPONENTS}
    assert set(kinds(default, "PodDisruptionBudget")) == {c.name for c in COMPONENTS}
    assert set(kinds(default, "Service")) == {"customer-service", "order-service"}


def test_probes_ports_and_scrape_annotations_follow_the_pipeline_file(default: list[dict]) -> None:
    rendered = yaml.safe_load(chart.pipeline_file(default))["workers"]
    for c in COMPONENTS:
        dep = kinds(default, "Deployment")[c.name]
        box, pod = container(dep), dep["spec"]["template"]
        port = c.port(SPEC.workers)
        path = "/healthz" if c.kind == "app" else "/metrics"
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert box[probe]["httpGet"] == {"path": path, "port": port}, (c.name, probe)
        assert [p["containerPort"] for p in box["ports"]] == [port]
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        host = rendered[c.config_key]["host" if c.kind == "app" else "metrics_host"]
        assert host == "0.0.0.0"  # the kubelet and Prometheus dial the pod's IP
        assert box["args"][0] == c.name and box.get("command") is None  # the image's ENTRYPOINT
        assert ("--instance-name=$(POD_NAME)" in box["args"]) == (c.kind == "worker")
    assert rendered["enricher"]["customer_service_url"] == "http://orders-kstream-lab-customer-service:8601"


def test_termination_grace_exceeds_the_graceful_shutdown(default: list[dict]) -> None:
    values = yaml.safe_load((chart.CHART / "values.yaml").read_text())
    for dep in kinds(default, "Deployment").values():
        grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace == values["terminationGracePeriodSeconds"] > values["gracefulShutdownSeconds"]
    with pytest.raises(AssertionError, match="must exceed gracefulShutdownSeconds"):
        chart.render(sets=["terminationGracePeriodSeconds=40"])


def test_a_cronjob_per_scheduled_job_without_overlap(default: list[dict]) -> None:
    jobs = yaml.safe_load((ROOT / "pipelines" / "schedules.yaml").read_text())["jobs"]
    crons = {d["metadata"]["labels"]["kstream-lab/job"]: d for d in default if d["kind"] == "CronJob"}
    assert set(crons) == set(jobs)
    for name, job in jobs.items():
        spec = crons[name]["spec"]
        assert spec["schedule"] == job["cron"] and spec["concurrencyPolicy"] == "Forbid"
        assert spec["timeZone"] == "Etc/UTC"
        assert spec["startingDeadlineSeconds"] == parse_duration_ms(job["misfire_grace"]) // 1000
        (box,) = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert box["command"] == ["kstream-lab", "schedule", "once", name]


def test_secrets_are_mounted_files_named_by_the_file_settings(production: list[dict]) -> None:
    for name, dep in kinds(production, "Deployment").items():
        box, pod = container(dep), dep["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in box["env"]}
        mounts = {m["mountPath"]: m["name"] for m in box["volumeMounts"]}
        secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
        files = {k: v for k, v in env.items() if k.endswith("_FILE") or k.endswith("_LOCATION")}
        for setting, path in files.items():
            directory, _, key = path.rpartition("/")
            volume = secrets[mounts[directory]]
            assert [i["path"] for i in volume["items"]] == [key], setting
        assert {e["name"] for e in box["env"] if "secretKeyRef" in e.get("valueFrom", {})} <= {"PGPASSWORD"}
        if name == "customer-service":  # no Kafka principal: no SASL login
            assert "KSTREAM_SASL_PASSWORD_FILE" not in env
            continue
        principal = SPEC.workers.model_dump()[name.replace("-", "_")]["principal"]
        assert env["KSTREAM_SASL_USERNAME"] == principal.removeprefix("User:")
        (sasl,) = [v for v in pod["volumes"] if v["name"] == "sasl"]
        assert sasl["secret"] == {
            "secretName": "kstream-lab-sasl",
            "defaultMode": 0o440,
            "items": [{"key": env["KSTREAM_SASL_USERNAME"], "path": "password"}],
        }
        assert {"KSTREAM_SSL_CA_LOCATION", "KSTREAM_SCHEMA_REGISTRY_PASSWORD_FILE"} <= set(files)


def test_tracing_exports_over_otlp_when_asked(default: list[dict], production: list[dict]) -> None:
    for docs, want in ((default, None), (production, "otlp")):
        for dep in kinds(docs, "Deployment").values():
            env = {e["name"]: e.get("value") for e in container(dep)["env"]}
            assert env.get("OTEL_TRACES_EXPORTER") == want
    prod = {e["name"]: e.get("value") for e in container(kinds(production, "Deployment")["sink"])["env"]}
    assert prod["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability.svc:4318"


def test_lag_autoscaling_is_capped_at_the_partition_count(production: list[dict]) -> None:
    hpa = chart.render([str(chart.PRODUCTION)], ["autoscaling.mode=hpa"])
    for name in ("enricher", "aggregator"):
        partitions = SPEC.topic(SPEC.workers.model_dump()[name]["input"]).partitions
        scaled = kinds(production, "ScaledObject")[name]["spec"]
        assert scaled["maxReplicaCount"] == partitions == 6  # production asks the enricher for 12
        (trigger,) = scaled["triggers"]
        assert trigger["type"] == "kafka" and trigger["metadata"]["consumerGroup"] == f"order-{name}"
        assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"
        auth = kinds(production, "TriggerAuthentication")[f"{name}-kafka"]["spec"]
        assert {r["parameter"] for r in auth["secretTargetRef"]} == {"password", "ca"}
        # KEDA's Kafka scaler reads username/password/ca only from the TriggerAuthentication and refuses
        # sasl or tls set in both places (pkg/scalers/kafka_scaler.go, parseKafkaAuthParams)
        assert [(e["parameter"], e["name"]) for e in auth["env"]] == [("username", "KSTREAM_SASL_USERNAME")]
        assert not {"username", "password", "ca"} & set(trigger["metadata"])
        assert "replicas" not in kinds(production, "Deployment")[name]["spec"]  # the autoscaler owns it
        h = kinds(hpa, "HorizontalPodAutoscaler")[name]["spec"]
        assert (
            h["maxReplicas"] == partitions and h["metrics"][0]["external"]["metric"]["name"] == "kstream_consumer_lag"
        )
    assert kinds(hpa, "ScaledObject") == {} and set(kinds(production, "HorizontalPodAutoscaler")) == set()
    assert kinds(production, "Deployment")["sink"]["spec"]["replicas"] == 2


def test_the_hook_applies_topics_and_acls_before_install_and_upgrade(
    default: list[dict], production: list[dict]
) -> None:
    for docs, acls in ((default, False), (production, True)):
        (job,) = [d for d in docs if d["kind"] == "Job"]
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        (box,) = job["spec"]["template"]["spec"]["containers"]
        script = box["args"][0]
        assert "kstream-lab topics apply pipelines/orders.yaml" in script
        assert ("kstream-lab acls apply pipelines/orders.yaml" in script) == acls
        volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
        assert volumes["pipeline"]["configMap"]["name"] == "orders-kstream-lab-hook-pipeline"  # precedes the release's
        assert "serviceAccountName" not in job["spec"]["template"]["spec"]


def test_with_the_connect_sink_the_hook_applies_the_connector_and_no_sink_pod_runs() -> None:
    docs = chart.render(*chart.VARIANTS["connect-sink"])  # make lint checks every manifest of it
    assert "sink" not in kinds(docs, "Deployment") and "sink" not in kinds(docs, "PodDisruptionBudget")
    assert {"enricher", "aggregator", "order-service"} <= set(kinds(docs, "Deployment"))
    (job,) = [d for d in docs if d["kind"] == "Job"]
    (box,) = job["spec"]["template"]["spec"]["containers"]
    lines = [line.strip() for line in box["args"][0].splitlines() if line.strip()]
    assert lines[-1] == "kstream-lab connect apply pipelines/orders.yaml"  # after the topics and ACLs
    env = {e["name"]: e for e in box["env"]}
    assert env["KSTREAM_CONNECT_URL"]["value"] == "http://connect-api:8083"
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "password"}
    assert "kind: connect" in chart.pipeline_file(docs)


def test_the_connect_sink_without_a_connect_url_is_refused_naming_the_value() -> None:
    with pytest.raises(AssertionError, match="set connect.url to your Kafka Connect cluster's REST URL"):
        chart.render([], ("pipeline.overrides.workers.sink.kind=connect",))


def test_every_rendered_manifest_validates() -> None:
    for values, sets in chart.VARIANTS.values():
        docs = chart.render(values, sets)
        assert [p for d in docs for p in chart.problems(d)] == []
        chart.check_pipeline_loads(chart.pipeline_file(docs))
