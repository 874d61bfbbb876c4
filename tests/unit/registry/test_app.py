"""The registry's REST layer without a broker: an in-memory stand-in for the `_schemas` log.

The real log (a compacted topic) is exercised in tests/integration/test_registry.py; here the HTTP
contract (paths, bodies, codes) and the write-then-apply rule are checked quickly.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from kstream_lab.errors import BrokerError
from kstream_lab.local_registry.app import RegistryService, create_app
from kstream_lab.settings import Settings
from tests.support.avro import ORDER, with_field

CT = "application/vnd.schemaregistry.v1+json"


class MemoryLog:
    topic = "_schemas"

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []
        self.down = False

    def ensure_topic(self) -> None:
        pass

    def read_all(self) -> list[tuple[bytes, bytes | None]]:
        return list(self.records)

    def append(self, key: bytes, value: bytes | None) -> None:
        if self.down:
            raise BrokerError("writing to _schemas failed: Local: Message timed out")
        self.records.append((key, value))


@pytest.fixture
def log() -> MemoryLog:
    return MemoryLog()


def client_for(log: MemoryLog) -> TestClient:
    service = RegistryService(Settings(), log=log)
    service.restore()
    return TestClient(create_app(service))


def register(client: TestClient, subject: str, schema: str):
    return client.post(
        f"/subjects/{subject}/versions", content=json.dumps({"schema": schema}), headers={"Content-Type": CT}
    )


def test_register_writes_before_answering_and_a_restart_replays_the_log(log):
    client = client_for(log)
    assert register(client, "s-value", ORDER).json() == {"id": 1, "version": 1, "subject": "s-value"}
    assert register(client, "s-value", ORDER).json()["id"] == 1
    assert len(log.records) == 1
    assert json.loads(log.records[0][0]) == {"keytype": "SCHEMA", "subject": "s-value", "version": 1, "magic": 1}
    assert client.put("/config", json={"compatibility": "FULL"}).json() == {"compatibility": "FULL"}

    restarted = client_for(log)
    assert restarted.get("/subjects").json() == ["s-value"]
    assert restarted.get("/subjects/s-value/versions/1").json() == {
        "subject": "s-value",
        "version": 1,
        "id": 1,
        "schema": ORDER,
    }
    assert restarted.get("/config").json() == {"compatibilityLevel": "FULL"}
    assert restarted.get("/schemas/ids/1/schema").text == ORDER


def test_a_failed_write_changes_nothing(log):
    client = client_for(log)
    log.down = True
    res = register(client, "s-value", ORDER)
    assert res.status_code == 500 and res.json()["error_code"] == 50001
    assert "Message timed out" in res.json()["message"]
    assert client.get("/subjects").json() == []
    log.down = False
    assert register(client, "s-value", ORDER).json()["id"] == 1


def test_errors_have_confluent_shape_and_content_type(log):
    client = client_for(log)
    register(client, "s-value", ORDER)
    cases = {
        "/subjects/x/versions": (404, 40401),
        "/subjects/s-value/versions/3": (404, 40402),
        "/subjects/s-value/versions/abc": (422, 42202),
        "/schemas/ids/5": (404, 40403),
        "/config/s-value": (404, 40408),
        "/subjects/s-value/metadata": (404, 404),
    }
    for path, (status, code) in cases.items():
        res = client.get(path)
        assert (res.status_code, res.json()["error_code"]) == (status, code), path
        assert res.headers["content-type"] == CT
    bad = register(client, "s-value", with_field(ORDER, name="n", type="long"))
    assert bad.status_code == 409 and "field 'n'" in bad.json()["message"]
    assert register(client, "s-value", "[").json()["error_code"] == 42201


def test_soft_then_permanent_delete(log):
    client = client_for(log)
    register(client, "s-value", ORDER)
    register(client, "s-value", with_field(ORDER, name="n", type="long", default=0))
    assert client.delete("/subjects/s-value/versions/1?permanent=true").json()["error_code"] == 40407
    assert client.delete("/subjects/s-value/versions/1").json() == 1
    assert client.get("/subjects/s-value/versions").json() == [2]
    assert client.get("/subjects/s-value/versions?deleted=true").json() == [1, 2]
    assert client.delete("/subjects/s-value").json() == [2]
    assert client.get("/subjects").json() == []
    assert client.delete("/subjects/s-value?permanent=true").json() == [1, 2]
    assert client_for(log).get("/subjects?deleted=true").json() == []
    assert register(client, "s-value", ORDER).json() == {"id": 1, "version": 1, "subject": "s-value"}
