"""configure_tracing: the SDK only when OTEL_TRACES_EXPORTER names exporters, and a bad value is a
clear CLI error (exit 2). Each case runs in a fresh interpreter: a tracer provider is process-global."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kstream_lab.observability.tracing import configure_tracing, tracing_enabled
from kstream_lab.settings import Settings
from tests.support.paths import ROOT

PROBE = """
import json, sys
from opentelemetry import trace
from kstream_lab.observability.tracing import configure_tracing, child_trace_headers, new_trace_headers, trace_id_of
from kstream_lab.settings import Settings
print(configure_tracing("enricher", Settings()))
provider = trace.get_tracer_provider()
procs = provider._active_span_processor._span_processors
print(json.dumps([[type(p).__name__, type(p.span_exporter).__name__] for p in procs]))
print(provider.resource.attributes["service.name"])
root = new_trace_headers()
assert trace_id_of(child_trace_headers(root, "enrich")) == trace_id_of(root)
"""


def probe(env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, cwd=tmp, capture_output=True, text=True, timeout=60
    )


def test_nothing_is_configured_without_otel_traces_exporter(monkeypatch) -> None:
    for value in (None, "", "none"):
        if value is None:
            monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
        else:
            monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
        assert configure_tracing("enricher", Settings()) is False
    assert not tracing_enabled()


def test_otlp_batches_and_file_writes_each_span_as_one_json_line(tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    env = {"OTEL_TRACES_EXPORTER": "otlp,file", "KSTREAM_TRACES_FILE": str(spans)}
    done = probe(env | {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, tmp_path)
    assert done.returncode == 0, done.stderr
    enabled, processors, service = done.stdout.splitlines()[:3]
    assert enabled == "True" and service == "enricher"
    assert processors == '[["BatchSpanProcessor", "OTLPSpanExporter"], ["SimpleSpanProcessor", "ConsoleSpanExporter"]]'
    names = [line.split('"name": "')[1].split('"')[0] for line in spans.read_text().splitlines()]
    assert names == ["produce order", "enrich"]
    named = probe({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "enricher-eu"}, tmp_path)
    assert named.returncode == 0 and named.stdout.splitlines()[2] == "enricher-eu", named.stderr


def test_a_bad_exporter_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    cases = {
        "jaeger": "OTEL_TRACES_EXPORTER: unknown exporter 'jaeger'",
        "file": "OTEL_TRACES_EXPORTER=file needs a file",
    }
    for value, message in cases.items():
        env = {**clean, "OTEL_TRACES_EXPORTER": value, "KSTREAM_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
        env.pop("KSTREAM_TRACES_FILE", None)
        done = subprocess.run(
            [sys.executable, "-m", "kstream_lab", "worker", "enricher"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
