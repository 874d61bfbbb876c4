"""The real registry process with basic auth on the session broker: 401 and 403 as Confluent answers
them, the CLI's one-line refusal naming user and registry (never the password), and a read-only user
that cannot register a schema while a read-write one can."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
import pytest
from pydantic import SecretStr

from kstream_lab.kafka.schema_registry import RegistryError, SchemaRegistry
from kstream_lab.local_registry import LocalRegistry
from tests.support.avro import ORDER
from tests.support.paths import ROOT, free_port


def test_registry_process_with_basic_auth(kafka_settings, tmp_path):
    (tmp_path / "users.yaml").write_text(
        "ops: {role: write, password: ops-pw-4711}\nanalyst: {role: read, password: an-pw-0815}\n"
    )
    port = free_port()
    settings = kafka_settings.model_copy(
        update={
            "registry_port": port,
            "schema_registry_url": None,
            "data_dir": tmp_path,
            "registry_users_file": tmp_path / "users.yaml",
        }
    )
    registry = LocalRegistry(settings)
    url = registry.up(timeout=60)
    subject = f"auth-{uuid.uuid4().hex[:8]}-value"
    try:
        assert httpx.get(f"{url}/subjects").status_code == 401
        ops = SchemaRegistry(
            settings.model_copy(
                update={"schema_registry_user": "ops", "schema_registry_password": SecretStr("ops-pw-4711")}
            )
        )
        assert ops.register(subject, ORDER).version == 1
        assert registry.status().subjects == []  # status has no credentials here: it shows none, it does not fail
        schema = tmp_path / "order.avsc"
        schema.write_text(ORDER)
        env = {
            **os.environ,
            "KSTREAM_REGISTRY_PORT": str(port),
            "KSTREAM_SCHEMA_REGISTRY_URL": url,
            "KSTREAM_SCHEMA_REGISTRY_USER": "analyst",
            "KSTREAM_SCHEMA_REGISTRY_PASSWORD": "an-pw-0815",
        }
        run = [sys.executable, "-m", "kstream_lab", "schemas", "check", str(schema), "--subject", subject]
        ok = subprocess.run(run, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert ok.returncode == 0, ok.stderr
        denied = subprocess.run(
            [sys.executable, "-m", "kstream_lab", "schemas", "check", str(schema), "--subject", subject],
            capture_output=True,
            text=True,
            env={**env, "KSTREAM_SCHEMA_REGISTRY_PASSWORD": "wrong-pw-1234"},
            cwd=ROOT,
            timeout=120,
        )
        assert denied.returncode == 2
        assert f"schema registry at {url} refused user 'analyst': 401" in denied.stderr
        assert "wrong-pw-1234" not in denied.stderr + denied.stdout
        analyst = SchemaRegistry(
            settings.model_copy(
                update={"schema_registry_user": "analyst", "schema_registry_password": SecretStr("an-pw-0815")}
            )
        )
        with pytest.raises(RegistryError, match="refused user 'analyst': 403 User 'analyst' is read-only"):
            analyst.register(f"{subject}-2", ORDER)
        assert analyst.subjects().count(subject) == 1 and f"{subject}-2" not in analyst.subjects()
        log = registry.log_file.read_text()
        assert "basic auth on: 2 users (ops:write, analyst:read)" in log
        assert "pw-" not in log
    finally:
        registry.down()
