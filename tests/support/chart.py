"""The Helm chart rendered and checked: `make lint` runs this module, the chart's unit tests import it.

``python -m tests.support.chart`` runs ``helm lint --strict`` and ``helm template`` with the default
values, the production values and the HPA alternative, then checks every rendered manifest: Kubernetes
kinds against the schemas kubernetes-validate ships (strict: an unknown field is an error), KEDA's
against the ScaledObject and TriggerAuthentication CRDs vendored under deploy/schemas/keda/ (made
strict the same way), and the pipeline file the pods get must load as the package loads it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.support.paths import ROOT

CHART = ROOT / "deploy" / "helm" / "kstream-lab"
KEDA_CRDS = ROOT / "deploy" / "schemas" / "keda"
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")  # the chart's kubeVersion floor, and the newest schemas
PRODUCTION = CHART / "values-production.yaml"
VARIANTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "default": ((), ()),
    "production": ((str(PRODUCTION),), ()),
    "hpa": ((str(PRODUCTION),), ("autoscaling.mode=hpa",)),
    "connect-sink": (
        (str(PRODUCTION),),
        (
            "pipeline.overrides.workers.sink.kind=connect",
            "connect.url=http://connect-api:8083",
            "sink.target=postgresql://sink@db:5432/sales",
            "sink.passwordSecret.name=pg",
        ),
    ),
}


def helm() -> str:
    """The pinned helm `make setup` installs into .venv/bin, else one on PATH (HELM overrides both)."""
    for candidate in (os.environ.get("HELM"), str(ROOT / ".venv" / "bin" / "helm"), shutil.which("helm")):
        if candidate and Path(candidate).exists():
            return candidate
    raise FileNotFoundError("helm not found: run `make setup` (installs helm into .venv/bin)")


def run_helm(*args: str) -> str:
    done = subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def render(values: Sequence[str] = (), sets: Sequence[str] = (), release: str = "orders") -> list[dict[str, Any]]:
    """Every manifest ``helm template`` renders (hooks included)."""
    args = ["template", release, str(CHART)]
    for v in values:
        args += ["-f", v]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(run_helm(*args)) if d]


def _strict(schema: Any) -> Any:
    """A CRD's schema as the API server with strict field validation reads it: unknown fields refused
    (object schemas that list properties and allow nothing else)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the vendored CRD's openAPIV3Schema, strict."""
    out = {}
    for path in sorted(KEDA_CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            out[key] = _strict(version["schema"]["openAPIV3Schema"])
    return out


def problems(doc: dict[str, Any]) -> Iterator[str]:
    """What is wrong with one manifest (nothing: it validates)."""
    import jsonschema
    import kubernetes_validate

    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if str(doc.get("apiVersion", "")).startswith("keda.sh/"):
        schema = crd_schemas().get((doc["apiVersion"], doc["kind"]))
        if schema is None:
            yield f"{name}: no vendored CRD for {doc['apiVersion']} {doc['kind']}"
            return
        for err in jsonschema.Draft7Validator(schema).iter_errors(doc):
            yield f"{name}: {'.'.join(map(str, err.absolute_path))}: {err.message}"
        return
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            yield f"{name} (Kubernetes {version}): {'.'.join(map(str, err.path))}: {err.message}"
        except kubernetes_validate.SchemaNotFoundError as err:
            yield f"{name}: {err.message}"


def pipeline_file(docs: list[dict[str, Any]]) -> str:
    """The pipeline file of the release's ConfigMap (what every pod mounts as pipelines/orders.yaml)."""
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-kstream-lab-pipeline")]
    return cm["data"]["orders.yaml"]


def check_pipeline_loads(text: str) -> None:
    """The rendered pipeline file loads as the workers load it (schemas beside it, as in the image)."""
    from kstream_lab.pipeline_spec import load_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "schemas").symlink_to(ROOT / "pipelines" / "schemas")
        (Path(tmp) / "orders.yaml").write_text(text)
        load_pipeline(Path(tmp) / "orders.yaml")


def main() -> int:
    failures: list[str] = []
    for variant, (values, sets) in VARIANTS.items():
        args = ["lint", "--strict", str(CHART)] + [a for v in values for a in ("-f", v)]
        args += [a for s in sets for a in ("--set", s)]
        run_helm(*args)
        docs = render(values, sets)
        failures += [f"{variant}: {p}" for d in docs for p in problems(d)]
        check_pipeline_loads(pipeline_file(docs))
        print(f"chart ({variant} values): helm lint ok, {len(docs)} manifests valid")
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
