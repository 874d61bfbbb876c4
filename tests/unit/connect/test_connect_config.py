"""Kafka Connect without a worker: the sink connector's config, the worker's properties, connector files,
the REST client's idempotent apply, Connect's dead-letter headers read back as ours."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import SecretStr

from kstream_lab.cli.connect import connector_file
from kstream_lab.connect import LocalConnect
from kstream_lab.connect.rest import ConnectClient
from kstream_lab.connect.sink import AVRO_CONVERTER, DRIVER_MANAGER, jdbc_target, redacted, sink_connector
from kstream_lab.connect.worker import java_security
from kstream_lab.errors import ConfigError, ConnectError
from kstream_lab.pipeline_spec import SinkConfig, load_pipeline
from kstream_lab.settings import Settings
from kstream_lab.workers.dlq import DeadLetter
from kstream_lab.workers.supervisor import Supervisor
from tests.support.paths import ROOT


def settings(tmp_path: Path, **kw) -> Settings:
    return Settings(data_dir=tmp_path, registry_port=18081, connect_port=18083, **kw)


def test_jdbc_target_from_a_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    assert jdbc_target("postgresql://app:p%40ss@db.example:6543/sales?sslmode=require") == {
        "connection.url": "jdbc:postgresql://db.example:6543/sales?sslmode=require",
        "connection.username": "app",
        "connection.password": "p@ss",
    }
    assert jdbc_target("postgres://postgres@[::1]/x") == {
        "connection.url": "jdbc:postgresql://[::1]:5432/x",
        "connection.username": "postgres",
    }
    with pytest.raises(ConfigError, match="not a PostgreSQL DSN with a database"):
        jdbc_target("postgresql://host:5432")


def test_a_dsn_without_a_password_takes_libpqs_pgpassword(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart keeps the password in a Secret (PGPASSWORD), out of the pipeline file."""
    monkeypatch.setenv("PGPASSWORD", "from-secret")
    assert jdbc_target("postgresql://sink@db:5432/sales")["connection.password"] == "from-secret"
    assert jdbc_target("postgresql://sink:inline@db:5432/sales")["connection.password"] == "inline"


def test_sink_connector_config(tmp_path: Path) -> None:
    s = settings(tmp_path, schema_registry_user="sink", schema_registry_password=SecretStr("pw"))
    sink = SinkConfig(kind="connect", input="aggs", dlq="dead", target="postgresql://u:s@h:1/d", batch_size=77)
    config = sink_connector(s, sink)
    assert config == {
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": "1",
        "topics": "aggs",
        "connection.url": "jdbc:postgresql://h:1/d",
        "connection.username": "u",
        "connection.password": "s",
        "connection.provider": DRIVER_MANAGER,
        "hibernate.connection.provider_class": DRIVER_MANAGER,
        "insert.mode": "upsert",
        "primary.key.mode": "record_value",
        "primary.key.fields": "window_start,tier,source_partition",
        "delete.enabled": "false",
        "schema.evolution": "none",
        "collection.name.format": "sales_aggregates",
        "batch.size": "77",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": AVRO_CONVERTER,
        "value.converter.schema.registry.url": "http://127.0.0.1:18081",
        "value.converter.basic.auth.credentials.source": "USER_INFO",
        "value.converter.basic.auth.user.info": "sink:pw",
        "transforms": "ts_window_start,ts_window_end",
        "transforms.ts_window_start.type": "org.apache.kafka.connect.transforms.TimestampConverter$Value",
        "transforms.ts_window_start.field": "window_start",
        "transforms.ts_window_start.target.type": "unix",
        "transforms.ts_window_start.unix.precision": "milliseconds",
        "transforms.ts_window_end.type": "org.apache.kafka.connect.transforms.TimestampConverter$Value",
        "transforms.ts_window_end.field": "window_end",
        "transforms.ts_window_end.target.type": "unix",
        "transforms.ts_window_end.unix.precision": "milliseconds",
        "consumer.override.isolation.level": "read_committed",
        "consumer.override.auto.offset.reset": "earliest",
        "errors.tolerance": "all",
        "errors.retry.timeout": "-1",
        "errors.retry.delay.max.ms": "30000",
        "errors.log.enable": "true",
        "errors.deadletterqueue.topic.name": "dead",
        "errors.deadletterqueue.topic.replication.factor": "1",
        "errors.deadletterqueue.context.headers.enable": "true",
    }
    shown = redacted(config)
    assert shown["connection.password"] == shown["value.converter.basic.auth.user.info"] == "<hidden>"
    # Confluent's converter replaces ours by configuration alone: same value.converter.* keys
    confluent = SinkConfig(
        kind="connect",
        target="postgresql://u@h/d",
        connector_config={"value.converter": "io.confluent.connect.avro.AvroConverter"},
    )
    swapped = sink_connector(settings(tmp_path), confluent)
    assert swapped["value.converter"] == "io.confluent.connect.avro.AvroConverter"
    assert swapped["value.converter.schema.registry.url"] == "http://127.0.0.1:18081"


def test_connect_sink_needs_a_postgres_target(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "pipelines" / "orders.yaml").read_text())
    data["workers"]["sink"].update(kind="connect")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="kind: connect writes PostgreSQL"):
        load_pipeline(path)
    data["workers"]["sink"].update(target="postgresql://u@h/d")
    path.write_text(yaml.safe_dump(data))
    assert load_pipeline(path).workers.sink.kind == "connect"


def test_java_security_maps_librdkafka_settings(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    s = settings(
        tmp_path,
        bootstrap_servers="b:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="connect",
        sasl_password=SecretStr('p"w'),
        ssl_ca_location=ca,
    )
    assert java_security(s) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required username="connect" '
        'password="p\\"w";',
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca.resolve()),
    }
    with pytest.raises(ConnectError, match="socket.keepalive.enable have no Kafka Connect"):
        java_security(settings(tmp_path, bootstrap_servers="b:1", client_config={"socket.keepalive.enable": "true"}))


def test_worker_properties(tmp_path: Path) -> None:
    s = settings(tmp_path, broker_port=19092, connect_group_id="g1", kafka_cache_dir=tmp_path / "cache")
    props = LocalConnect(s).write_properties()
    lines = dict(line.split("=", 1) for line in props.read_text().splitlines())
    assert stat.S_IMODE(props.stat().st_mode) == 0o600
    assert lines["bootstrap.servers"] == "127.0.0.1:19092"
    assert (lines["group.id"], lines["config.storage.topic"], lines["offset.storage.topic"]) == (
        "g1",
        "g1-configs",
        "g1-offsets",
    )
    assert lines["status.storage.topic"] == "g1-status"
    assert lines["listeners"] == "http://127.0.0.1:18083"
    assert lines["plugin.path"] == str(tmp_path / "cache" / "connect" / "plugins")
    assert lines["connector.client.config.override.policy"] == "All"
    assert "security.protocol" not in lines


def test_connector_files(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"name": "a", "config": {"connector.class": "X", "tasks.max": 2, "flag": True}}))
    assert connector_file(one) == {"a": {"connector.class": "X", "tasks.max": "2", "flag": "true"}}
    many = tmp_path / "many.yaml"
    many.write_text("connectors:\n  a: {connector.class: X}\n  b: {connector.class: Y}\n")
    assert connector_file(many) == {"a": {"connector.class": "X"}, "b": {"connector.class": "Y"}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "a", "config": {"tasks.max": "1"}}]))
    with pytest.raises(ConfigError, match="connector 'a' has no connector.class"):
        connector_file(bad)
    bad.write_text(json.dumps({"name": "a"}))
    with pytest.raises(ConfigError, match="connector 1 must be"):
        connector_file(bad)


def test_apply_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    stored: dict[str, dict] = {}
    calls: list[tuple[str, str]] = []

    def fake(method: str, url: str, json=None, timeout=None) -> httpx.Response:
        path = url.removeprefix("http://c:8083")
        calls.append((method, path))
        name = path.split("/")[2]
        if method == "GET":
            return httpx.Response(200, json=stored[name]) if name in stored else httpx.Response(404, json={})
        created = name not in stored
        stored[name] = json
        return httpx.Response(201 if created else 200, json={"name": name})

    monkeypatch.setattr(httpx, "request", fake)
    client = ConnectClient("http://c:8083")
    assert client.apply("s", {"connector.class": "X", "tasks.max": 1}) == "created"
    assert client.apply("s", {"connector.class": "X", "tasks.max": "1"}) == "unchanged"
    assert client.apply("s", {"connector.class": "X", "tasks.max": "2"}) == "updated"
    assert [m for m, _ in calls] == ["GET", "PUT", "GET", "GET", "PUT"]
    assert stored["s"] == {"connector.class": "X", "tasks.max": "2", "name": "s"}


def test_connect_refusal_and_absence_are_connect_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(method: str, url: str, json=None, timeout=None) -> httpx.Response:
        return httpx.Response(400, json={"error_code": 400, "message": "Connector config is invalid"})

    monkeypatch.setattr(httpx, "request", refuse)
    with pytest.raises(ConnectError, match="HTTP 400: Connector config is invalid"):
        ConnectClient("http://c:1").connectors()

    def down(method: str, url: str, json=None, timeout=None) -> httpx.Response:
        raise httpx.ConnectError("refused")

    monkeypatch.setattr(httpx, "request", down)
    with pytest.raises(ConnectError, match="does not answer.*kstream-lab connect up"):
        ConnectClient("http://c:1").version()


def test_connect_dead_letters_read_back_like_ours() -> None:
    headers = [
        ("__connect.errors.topic", b"sales_aggregates"),
        ("__connect.errors.partition", b"2"),
        ("__connect.errors.offset", b"41"),
        ("__connect.errors.stage", b"VALUE_CONVERTER"),
        ("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException"),
        ("__connect.errors.exception.message", b"topic sales_aggregates: not Confluent-framed Avro"),
    ]
    letter = DeadLetter.from_record(b"k", b"v", headers)
    assert (letter.error_class, letter.error_reason) == ("DataException", "connect_value_converter")
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("sales_aggregates", 2, 41)
    assert letter.error_message == "topic sales_aggregates: not Confluent-framed Avro"
    assert (letter.key, letter.value, letter.attempts) == (b"k", b"v", 1)


def test_supervisor_runs_the_connect_worker_as_the_sink(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "pipelines" / "orders.yaml").read_text())
    data["workers"]["sink"].update(kind="connect", target="postgresql://u@h/d")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    sup = Supervisor(settings(tmp_path), load_pipeline(path))
    assert sup.url("sink") == "http://127.0.0.1:18083/connectors"
    process = sup.process("sink")
    assert (process.name, process.pid_file, process.log_file) == ("sink", sup.pid_file("sink"), sup.log_file("sink"))
    assert sup.process("aggregator").command[-2] == "--pipeline"


def test_cli_bad_connector_file_and_no_worker(tmp_path: Path) -> None:
    from tests.support.processes import run_cli

    bad = tmp_path / "c.yaml"
    bad.write_text("- just a string\n")
    env = {"KSTREAM_DATA_DIR": str(tmp_path), "KSTREAM_CONNECT_PORT": "1"}
    out = run_cli("connect", "apply", str(bad), env=env, inherit_kstream=False)
    assert out.returncode == 2 and "connector 1 must be {name: ..., config:" in out.stderr
    out = run_cli("connect", "apply", str(tmp_path / "missing.json"), env=env, inherit_kstream=False)
    assert out.returncode == 2 and "cannot read" in out.stderr
    good = tmp_path / "ok.json"
    good.write_text(json.dumps({"name": "a", "config": {"connector.class": "X"}}))
    out = run_cli("connect", "apply", str(good), env=env, inherit_kstream=False)
    assert out.returncode == 2 and "Kafka Connect at http://127.0.0.1:1 does not answer" in out.stderr
    out = run_cli("connect", "status", env=env, inherit_kstream=False)
    assert out.returncode == 1 and "running:    no" in out.stdout
