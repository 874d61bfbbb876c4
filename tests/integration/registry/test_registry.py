"""The local schema registry against the real broker: Confluent's REST contract, BACKWARD evolution,
confluent-kafka's own client and serdes, and persistence across restarts of registry and broker."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from kstream_lab.broker import LocalBroker
from kstream_lab.kafka.schema_registry import RegistryError, SchemaRegistry
from kstream_lab.local_registry import LocalRegistry
from kstream_lab.schemas.avro import AvroRecordDecoder
from kstream_lab.schemas.bulk import decode_avro_batch
from kstream_lab.settings import Settings
from tests.support.avro import ORDER, SAMPLE_ORDER
from tests.support.paths import ROOT, free_port
from tests.support.processes import run_cli

CT = "application/vnd.schemaregistry.v1+json"


def with_field(text: str, **field) -> str:
    schema = json.loads(text)
    schema["fields"].append(field)
    return json.dumps(schema)


def retyped(text: str, name: str, new_type) -> str:
    schema = json.loads(text)
    for f in schema["fields"]:
        if f["name"] == name:
            f["type"] = new_type
    return json.dumps(schema)


@pytest.fixture
def subject() -> str:
    return f"t-{uuid.uuid4().hex[:8]}-value"


def test_rest_contract_status_and_error_codes(kafka_settings, subject):
    url = kafka_settings.registry_url

    def post(path, body):
        return httpx.post(
            f"{url}{path}",
            content=json.dumps(body),
            headers={"Content-Type": CT},
        )

    first = post(f"/subjects/{subject}/versions", {"schema": ORDER})
    assert first.status_code == 200 and first.headers["content-type"] == CT
    sid = first.json()["id"]
    pretty = json.dumps(json.loads(ORDER), indent=2)
    assert post(f"/subjects/{subject}/versions", {"schema": pretty}).json()["id"] == sid
    other = subject.replace("-value", "-other-value")
    assert post(f"/subjects/{other}/versions", {"schema": ORDER}).json()["id"] == sid  # ids are global per schema
    assert post(f"/subjects/{subject}", {"schema": ORDER}).json() == {
        "subject": subject,
        "version": 1,
        "id": sid,
        "schema": ORDER,
    }
    assert httpx.get(f"{url}/schemas/ids/{sid}").json() == {"schema": ORDER}
    assert {"subject": subject, "version": 1} in httpx.get(f"{url}/schemas/ids/{sid}/versions").json()
    assert httpx.get(f"{url}/subjects/{subject}/versions").json() == [1]
    assert httpx.get(f"{url}/subjects/{subject}/versions/latest").json()["id"] == sid
    assert subject in httpx.get(f"{url}/subjects").json()

    errors = {
        "unknown subject": (httpx.get(f"{url}/subjects/nope-{subject}/versions"), 404, 40401),
        "unknown version": (httpx.get(f"{url}/subjects/{subject}/versions/42"), 404, 40402),
        "unknown id": (httpx.get(f"{url}/schemas/ids/987654"), 404, 40403),
        "malformed": (
            post(
                f"/subjects/{subject}/versions",
                {"schema": '{"type": "record", "name": "A", "fields": [{"name": "a", "type": "lng"}]}'},
            ),
            422,
            42201,
        ),
        "not json": (
            httpx.post(f"{url}/subjects/{subject}/versions", content=b"{oops", headers={"Content-Type": CT}),
            422,
            42201,
        ),
        "incompatible": (
            post(f"/subjects/{subject}/versions", {"schema": with_field(ORDER, name="x", type="int")}),
            409,
            409,
        ),
        "bad level": (httpx.put(f"{url}/config/{subject}", json={"compatibility": "SIDEWAYS"}), 422, 42203),
    }
    for what, (res, status, code) in errors.items():
        assert (res.status_code, res.json()["error_code"]) == (status, code), what
    assert "unknown type 'lng'" in errors["malformed"][0].json()["message"]
    assert "field 'x'" in errors["incompatible"][0].json()["message"]

    verdict = post(
        f"/compatibility/subjects/{subject}/versions/latest?verbose=true",
        {"schema": with_field(ORDER, name="x", type="int")},
    ).json()
    assert verdict["is_compatible"] is False and "field 'x'" in verdict["messages"][0]
    assert httpx.get(f"{url}/config").json() == {"compatibilityLevel": "BACKWARD"}
    assert httpx.put(f"{url}/config/{subject}", json={"compatibility": "none"}).json() == {"compatibility": "NONE"}
    assert httpx.get(f"{url}/config/{subject}").json() == {"compatibilityLevel": "NONE"}
    no_default = with_field(ORDER, name="x", type="int")
    assert post(f"/subjects/{subject}/versions", {"schema": no_default}).json()["version"] == 2


def test_evolution_under_backward(kafka_settings, subject):
    registry = SchemaRegistry(kafka_settings)
    topic = subject.removesuffix("-value")
    v1 = registry.register(subject, ORDER)
    v1_bytes = registry.avro_serializer(ORDER)(SAMPLE_ORDER, topic)

    v2_text = with_field(ORDER, name="channel", type="string", default="web", doc="where the order was placed")
    assert registry.check_compatibility(subject, v2_text) == []
    v2 = registry.register(subject, v2_text)
    assert (v1.version, v2.version) == (1, 2) and v2.schema_id != v1.schema_id
    assert registry.register(subject, v2_text) == v2  # idempotent

    # data written with v1 still decodes with v2 (per record and in bulk)
    assert AvroRecordDecoder(registry, reader_schema=v2_text)(v1_bytes) == {**SAMPLE_ORDER, "channel": "web"}
    via_confluent = registry.avro_deserializer(v2_text)(v1_bytes, topic)  # confluent-kafka's AvroDeserializer
    assert via_confluent.pop("timestamp").timestamp() * 1000 == SAMPLE_ORDER["timestamp"]
    assert via_confluent == {k: v for k, v in {**SAMPLE_ORDER, "channel": "web"}.items() if k != "timestamp"}
    v2_bytes = registry.avro_serializer(v2_text)({**SAMPLE_ORDER, "channel": "app"}, topic)
    bulk = decode_avro_batch([v1_bytes, v2_bytes], registry, reader_schema=v2_text)
    assert bulk.frame.to_dicts() == [{**SAMPLE_ORDER, "channel": "web"}, {**SAMPLE_ORDER, "channel": "app"}]

    v3 = with_field(v2_text, name="coupon", type="string")
    with pytest.raises(RegistryError, match="field 'coupon'") as info:
        registry.register(subject, v3)
    assert (info.value.status, info.value.code) == (409, 409)
    v3_prime = retyped(v2_text, "total_cents", "string")
    with pytest.raises(RegistryError, match="field 'total_cents': writer type long cannot be read as string") as info:
        registry.register(subject, v3_prime)
    assert info.value.status == 409
    assert registry.versions(subject) == [1, 2]


def test_confluent_kafka_client_and_serdes_work_against_the_local_registry(kafka_settings, subject):
    client = SchemaRegistryClient({"url": kafka_settings.registry_url})
    topic = subject.removesuffix("-value")
    serializer = AvroSerializer(client, ORDER)
    deserializer = AvroDeserializer(client)
    ctx = SerializationContext(topic, MessageField.VALUE)
    data = serializer(SAMPLE_ORDER, ctx)
    registered = client.get_latest_version(subject)
    assert data[:5] == b"\x00" + registered.schema_id.to_bytes(4, "big")
    out = deserializer(data, ctx)
    assert {**out, "timestamp": int(out["timestamp"].timestamp() * 1000)} == SAMPLE_ORDER

    assert client.get_subjects() == sorted(client.get_subjects()) and subject in client.get_subjects()
    assert client.get_versions(subject) == [1]
    assert client.lookup_schema(subject, Schema(ORDER, "AVRO")).version == 1
    assert client.get_schema(registered.schema_id).schema_str == ORDER
    v2 = with_field(ORDER, name="channel", type="string", default="web")
    assert client.test_compatibility(subject, Schema(v2, "AVRO")) is True
    assert client.test_compatibility(subject, Schema(with_field(ORDER, name="c", type="int"), "AVRO")) is False
    assert client.set_compatibility(subject, "FULL") == {"compatibility": "FULL"}
    assert client.get_compatibility(subject) == "FULL"
    with pytest.raises(SchemaRegistryError) as info:
        client.get_schema(987_654)
    assert (info.value.http_status_code, info.value.error_code) == (404, 40403)
    with pytest.raises(SchemaRegistryError) as info:
        client.get_latest_version(f"nope-{subject}")
    assert info.value.error_code == 40401
    assert client.delete_subject(subject) == [1]
    assert subject not in client.get_subjects()
    assert client.delete_subject(subject, permanent=True) == [1]


def test_subjects_versions_and_ids_survive_restarts_of_registry_and_broker(tmp_path):
    """A broker + registry of its own (restarting the session broker would disturb other tests)."""
    settings = Settings(
        data_dir=tmp_path,
        broker_port=free_port(),
        controller_port=free_port(),
        registry_port=free_port(),
        bootstrap_servers=None,
    )
    env = {
        "KSTREAM_DATA_DIR": str(tmp_path),
        "KSTREAM_BROKER_PORT": str(settings.broker_port),
        "KSTREAM_REGISTRY_PORT": str(settings.registry_port),
        "KSTREAM_PIPELINE_FILE": str(ROOT / "pipelines/orders.yaml"),
    }
    broker, registry = LocalBroker(settings), LocalRegistry(settings)
    broker.up(timeout=120)
    try:
        registry.up()
        reg = run_cli("schemas", "register", "--all", env=env)
        assert reg.returncode == 0 and reg.stdout.count("registered ") == 4, reg.stdout + reg.stderr
        listed = run_cli("schemas", "list", env=env).stdout
        assert listed.splitlines()[1:] == [
            f"{s:<40} {1:>7} {i:>5}"
            for s, i in (
                ("orders_enriched-value", 2),
                ("orders_late-value", 2),
                ("orders_raw-value", 1),
                ("sales_aggregates-value", 3),
            )
        ]

        assert registry.down() is True
        registry.up()
        assert run_cli("schemas", "list", env=env).stdout == listed

        registry.down()
        assert broker.down() is True
        refused = run_cli("registry", "up", env=env)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
        assert "did not answer" in refused.stderr
        broker.up(timeout=120)
        registry.up()
        assert run_cli("schemas", "list", env=env).stdout == listed

        v2 = tmp_path / "order_v2.avsc"
        v2.write_text(with_field(ORDER, name="channel", type="string", default="web"))
        ok = run_cli("schemas", "check", str(v2), "--subject", "orders_raw-value", env=env)
        assert ok.returncode == 0 and ok.stdout.startswith("compatible"), ok.stdout + ok.stderr
        bad = run_cli(
            "schemas",
            "check",
            str(ROOT / "pipelines/schemas/enriched_order.avsc"),
            "--subject",
            "orders_raw-value",
            env=env,
        )
        assert bad.returncode == 1 and "NAME_MISMATCH" in bad.stdout
    finally:
        registry.down()
        broker.down()


def test_registry_up_refuses_a_port_in_use(kafka_settings):
    res = run_cli("registry", "up")  # the session's registry already runs on KSTREAM_REGISTRY_PORT
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "already running" in res.stderr
    busy = run_cli(
        "registry",
        "up",
        env={
            "KSTREAM_REGISTRY_PORT": str(kafka_settings.broker_port),
            "KSTREAM_DATA_DIR": str(kafka_settings.data_dir / "other"),
        },
    )
    assert busy.returncode == 2 and f"port {kafka_settings.broker_port}" in busy.stderr


def test_an_unreachable_registry_is_a_one_line_error(kafka_settings):
    res = run_cli("schemas", "list", env={"KSTREAM_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{free_port()}"})
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "did not answer: ConnectError" in res.stderr and "kstream-lab registry up" in res.stderr
