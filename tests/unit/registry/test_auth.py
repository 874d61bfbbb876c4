"""Registry basic auth without a broker: the policy over TestClient, and confluent-kafka's own client
(configured from Settings in one place) against the app served by uvicorn on a free port."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from kstream_lab.errors import AuthorizationError, ConfigError
from kstream_lab.kafka.schema_registry import RegistryError, SchemaRegistry, registry_client_config
from kstream_lab.local_registry.app import RegistryService, create_app
from kstream_lab.local_registry.auth import RegistryUsers
from kstream_lab.schemas.avro import fetch_writer_schema
from kstream_lab.settings import Settings
from tests.support.avro import ORDER
from tests.support.paths import free_port
from tests.unit.registry.test_app import CT, MemoryLog

WRITER_PW, ANALYST_PW = "w-s3cret-123", "a-s3cret-456"


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    (tmp_path / "writer.pw").write_text(WRITER_PW + "\n")
    path = tmp_path / "users.yaml"
    path.write_text(
        f"writer: {{role: write, password_file: {tmp_path / 'writer.pw'}}}\n"
        f"analyst: {{role: read, password: {ANALYST_PW}}}\n"
    )
    return path


@pytest.fixture
def client(users_file: Path) -> TestClient:
    service = RegistryService(Settings(), log=MemoryLog())
    service.restore()
    return TestClient(create_app(service, RegistryUsers.load(users_file)))


def post_schema(client: TestClient, auth: tuple[str, str] | None, subject: str = "s-value"):
    return client.post(
        f"/subjects/{subject}/versions",
        content=json.dumps({"schema": ORDER}),
        headers={"Content-Type": CT},
        auth=auth,
    )


def test_no_credentials_is_401_with_basic_challenge_and_confluents_body(client):
    res = client.get("/subjects")
    assert res.status_code == 401
    assert res.headers["www-authenticate"].startswith("Basic ")
    assert res.json() == {"error_code": 40101, "message": "Unauthorized: this registry needs HTTP basic authentication"}


def test_wrong_password_and_unknown_user_are_401_without_the_password(client):
    for auth in (("analyst", "nope"), ("nobody", ANALYST_PW)):
        res = client.get("/subjects", auth=auth)
        assert res.status_code == 401 and res.json()["error_code"] == 40101
        assert ANALYST_PW not in res.text and "nope" not in res.text


def test_read_only_user_reads_but_cannot_register_or_change_config(client):
    assert post_schema(client, ("writer", WRITER_PW)).json() == {"id": 1, "version": 1, "subject": "s-value"}
    assert client.get("/subjects", auth=("analyst", ANALYST_PW)).json() == ["s-value"]
    lookup = client.post(
        "/subjects/s-value",
        content=json.dumps({"schema": ORDER}),
        headers={"Content-Type": CT},
        auth=("analyst", ANALYST_PW),
    )
    assert lookup.status_code == 200 and lookup.json()["id"] == 1
    compat = client.post(
        "/compatibility/subjects/s-value/versions/latest",
        content=json.dumps({"schema": ORDER}),
        headers={"Content-Type": CT},
        auth=("analyst", ANALYST_PW),
    )
    assert compat.json() == {"is_compatible": True}
    denied = post_schema(client, ("analyst", ANALYST_PW), "t-value")
    assert denied.status_code == 403
    assert denied.json() == {
        "error_code": 40301,
        "message": "User 'analyst' is read-only and may not POST /subjects/t-value/versions",
    }
    assert client.put("/config", json={"compatibility": "NONE"}, auth=("analyst", ANALYST_PW)).status_code == 403
    assert client.delete("/subjects/s-value", auth=("analyst", ANALYST_PW)).status_code == 403
    assert client.get("/subjects", auth=("writer", WRITER_PW)).json() == ["s-value"]


def test_readiness_probe_is_open(client):
    assert client.get("/").status_code == 200


def test_bad_users_file_names_file_and_user(tmp_path):
    path = tmp_path / "u.yaml"
    path.write_text("bob: {role: admin, password: x}\n")
    with pytest.raises(ConfigError, match=r"u.yaml: user 'bob': role: Input should be 'read' or 'write'"):
        RegistryUsers.load(path)
    path.write_text("bob: {role: read}\n")
    with pytest.raises(ConfigError, match="user 'bob'.*exactly one of `password` and `password_file`"):
        RegistryUsers.load(path)


def test_client_config_is_built_from_settings_with_file_secret(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("from-file\n")
    monkeypatch.setenv("KSTREAM_SCHEMA_REGISTRY_PASSWORD_FILE", str(tmp_path / "pw"))
    s = Settings(
        schema_registry_user="analyst", schema_registry_url="https://reg:8081", schema_registry_ca_location="/ca.pem"
    )
    assert registry_client_config(s) == {
        "url": "https://reg:8081",
        "basic.auth.user.info": "analyst:from-file",
        "ssl.ca.location": "/ca.pem",
    }
    assert "from-file" not in repr(s) and "from-file" not in str(s.model_dump())


@pytest.fixture
def served(users_file: Path):
    """The app on a real port, so confluent-kafka's SchemaRegistryClient and httpx talk to it."""
    service = RegistryService(Settings(), log=MemoryLog())
    service.restore()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(service, RegistryUsers.load(users_file)), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def registry(url: str, user: str | None, password: str | None) -> SchemaRegistry:
    return SchemaRegistry(
        Settings(schema_registry_url=url, schema_registry_user=user, schema_registry_password=password)
    )


def test_real_client_writer_registers_and_analyst_is_refused_by_name(served):
    writer = registry(served, "writer", WRITER_PW)
    assert writer.register("orders-value", ORDER).schema_id == 1
    analyst = registry(served, "analyst", ANALYST_PW)
    assert analyst.subjects() == ["orders-value"]
    assert analyst.check_compatibility("orders-value", ORDER) == []
    with pytest.raises(RegistryError) as info:
        analyst.register("other-value", ORDER)
    assert info.value.status == 403 and info.value.code == 40301
    assert str(info.value).startswith(
        f"schema registry at {served} refused user 'analyst': 403 User 'analyst' is read-only"
    )
    assert ANALYST_PW not in str(info.value)
    with pytest.raises(RegistryError, match=r"refused user 'analyst': 403 .*\(registering the schema of other-value\)"):
        analyst.avro_serializer(ORDER)({"order_id": "o"}, "other")


def test_real_client_wrong_password_and_anonymous_are_401(served):
    wrong = registry(served, "analyst", "wrong-pw-789")
    with pytest.raises(RegistryError) as info:
        wrong.subjects()
    assert info.value.status == 401
    assert f"schema registry at {served} refused user 'analyst': 401 Unauthorized" in str(info.value)
    assert "wrong-pw-789" not in str(info.value)
    with pytest.raises(RegistryError, match="refused an anonymous request: 401.*KSTREAM_SCHEMA_REGISTRY_USER"):
        registry(served, None, None).check_compatibility("orders-value", ORDER)
    with pytest.raises(AuthorizationError, match="refused user 'analyst': 401"):
        fetch_writer_schema(wrong, 1)  # a worker stops on this: it is not the record's fault
