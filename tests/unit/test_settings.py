from kstream_lab.kafka import client_config
from kstream_lab.settings import Settings


def test_defaults_point_at_local_broker(monkeypatch):
    for var in (
        "KSTREAM_BOOTSTRAP_SERVERS",
        "KSTREAM_BROKER_PORT",
        "KSTREAM_SCHEMA_REGISTRY_URL",
        "KSTREAM_REGISTRY_PORT",
    ):
        monkeypatch.delenv(var, raising=False)
    s = Settings(_env_file=None)
    assert s.bootstrap == "127.0.0.1:9092" and s.uses_local_broker
    assert s.registry_url == "http://127.0.0.1:8081"


def test_env_points_everything_at_another_cluster(monkeypatch):
    monkeypatch.setenv("KSTREAM_BOOTSTRAP_SERVERS", "kafka-1:9093,kafka-2:9093")
    monkeypatch.setenv("KSTREAM_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KSTREAM_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("KSTREAM_SASL_USERNAME", "order-producer")
    monkeypatch.setenv("KSTREAM_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("KSTREAM_CLIENT_CONFIG", '{"client.id": "nb-1"}')
    s = Settings(_env_file=None)
    conf = client_config(s)
    assert conf["bootstrap.servers"] == "kafka-1:9093,kafka-2:9093"
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanisms"] == "SCRAM-SHA-256"
    assert conf["sasl.username"] == "order-producer" and conf["sasl.password"] == "s3cret"
    assert conf["client.id"] == "nb-1"
    assert "s3cret" not in repr(s)


def test_record_errors_say_where_only_as_far_as_known():
    from kstream_lab.errors import DeserializationError, SerializationError

    assert str(DeserializationError("bad", topic="t", partition=2, offset=7)) == "bad at t[2]@7"
    assert str(SerializationError("field 'x'", topic="orders_raw")) == "field 'x' at orders_raw"
    assert str(SerializationError("no topic")) == "no topic"


def test_copies_with_other_ports_point_at_the_new_ports() -> None:
    """Derived addresses are computed, not cached: a model_copy must not keep the old ones."""
    s = Settings(broker_port=19092, registry_port=18081, bootstrap_servers=None, schema_registry_url=None)
    assert (s.bootstrap, s.registry_url) == ("127.0.0.1:19092", "http://127.0.0.1:18081")
    t = s.model_copy(update={"broker_port": 29092, "registry_port": 28081})
    assert (t.bootstrap, t.registry_url) == ("127.0.0.1:29092", "http://127.0.0.1:28081")


def test_a_bad_setting_is_one_line_naming_the_variable_and_exit_2():
    import os
    import subprocess
    import sys

    env = {**os.environ, "KSTREAM_REPLAY_FETCH": "fast"}
    done = subprocess.run(
        [sys.executable, "-m", "kstream_lab", "replay", "orders", "--out", "/nonexistent"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "error: KSTREAM_REPLAY_FETCH='fast': Input should be 'auto', 'native' or 'python'"
