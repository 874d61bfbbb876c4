"""Cert generation, secrets from *_FILE, the secured local broker's client defaults, redaction, error lines."""

from __future__ import annotations

import ipaddress
import os
import stat

import pytest
from confluent_kafka import KafkaError
from cryptography import x509
from pydantic import ValidationError

from kstream_lab.broker.secure import admin_password, scram_format_args, secure_listeners
from kstream_lab.broker.tls import BROKER_CN, ensure_tls
from kstream_lab.kafka.clients import client_config
from kstream_lab.kafka.failures import redacted, security_failure
from kstream_lab.settings import Settings, is_secret_setting


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_and_broker_cert_cover_loopback_and_keys_are_0600(tmp_path) -> None:
    files = ensure_tls(tmp_path / "secure")
    assert _mode(files.ca_key) == 0o600 and _mode(files.broker_keystore) == 0o600
    pem = files.broker_keystore.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    leaf, ca_in_chain = x509.load_pem_x509_certificates(pem[pem.index(b"-----BEGIN CERTIFICATE") :])
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    assert ca_in_chain == ca
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == BROKER_CN
    leaf.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    before = files.ca_cert.read_bytes()
    assert ensure_tls(tmp_path / "secure").ca_cert.read_bytes() == before  # idempotent: kept, not remade


def test_admin_password_is_generated_once_into_a_0600_file(tmp_path) -> None:
    first = admin_password(tmp_path)
    assert len(first) >= 24 and "," not in first
    assert admin_password(tmp_path) == first
    assert _mode(tmp_path / "secure" / "admin.password") == 0o600
    assert scram_format_args(first) == ["--add-scram", f"SCRAM-SHA-512=[name=admin,password={first}]"]
    block, _, password = secure_listeners(tmp_path, 1111, 2222)
    assert password == first
    assert "advertised.listeners=SASL_SSL://127.0.0.1:1111\n" in block
    assert "CONTROLLER://127.0.0.1:2222" in block and "CONTROLLER:SSL" in block
    assert "super.users=User:admin\n" in block and "allow.everyone.if.no.acl.found=false" in block


def test_secret_from_file_strips_one_trailing_newline(tmp_path, monkeypatch) -> None:
    (tmp_path / "pw").write_text("s3cr3t value \n")
    monkeypatch.setenv("KSTREAM_SASL_PASSWORD_FILE", str(tmp_path / "pw"))
    monkeypatch.delenv("KSTREAM_SASL_PASSWORD", raising=False)
    s = Settings()
    assert s.sasl_password is not None and s.sasl_password.get_secret_value() == "s3cr3t value "
    assert "s3cr3t" not in repr(s)


def test_secret_and_its_file_together_are_refused_without_echoing_either(tmp_path) -> None:
    (tmp_path / "pw").write_text("from-file")
    with pytest.raises(ValidationError) as info:
        Settings(sasl_password="inline-secret", sasl_password_file=tmp_path / "pw")
    assert "both KSTREAM_SASL_PASSWORD and KSTREAM_SASL_PASSWORD_FILE are set" in str(info.value)
    with pytest.raises(ValidationError, match="KSTREAM_SASL_PASSWORD_FILE: cannot read"):
        Settings(sasl_password_file=tmp_path / "missing")


def test_client_config_and_secrets_are_not_in_repr_and_are_redacted() -> None:
    s = Settings(sasl_password="pw-123", client_config={"sasl.oauthbearer.client.secret": "cs-456"})
    assert "pw-123" not in repr(s) and "cs-456" not in repr(s)
    conf = client_config(s)
    assert conf["sasl.password"] == "pw-123"
    shown = redacted(conf)
    assert shown["sasl.password"] == "<hidden>" and shown["sasl.oauthbearer.client.secret"] == "<hidden>"
    assert shown["bootstrap.servers"] == conf["bootstrap.servers"]
    assert is_secret_setting("sasl_password") and is_secret_setting("client_config")
    assert not is_secret_setting("sasl_username")


def test_the_secured_local_broker_is_the_clients_default(tmp_path) -> None:
    admin_password(tmp_path / "broker")
    ensure_tls(tmp_path / "broker" / "secure")
    s = Settings(data_dir=tmp_path, bootstrap_servers=None, broker_port=1234)
    assert s.local_broker_secure  # the data dir was formatted secured
    sec = s.librdkafka_security()
    assert sec == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "admin",
        "sasl.password": (tmp_path / "broker" / "secure" / "admin.password").read_text(),
        "ssl.ca.location": str(tmp_path.resolve() / "broker" / "secure" / "ca.pem"),
    }
    alice = Settings(data_dir=tmp_path, bootstrap_servers=None, sasl_username="alice", sasl_password="a")
    assert alice.librdkafka_security()["sasl.username"] == "alice"
    assert alice.librdkafka_security()["sasl.password"] == "a"
    remote = Settings(data_dir=tmp_path, bootstrap_servers="kafka:9092")
    assert remote.librdkafka_security() == {"security.protocol": "PLAINTEXT"}


def test_security_failures_are_named() -> None:
    conf = {"bootstrap.servers": "b:9093", "sasl.username": "bob", "sasl.mechanisms": "SCRAM-SHA-512"}
    auth = security_failure(KafkaError(KafkaError._AUTHENTICATION, "sasl_ssl://b:9093/bootstrap: SASL ..."), conf)
    assert auth is not None and auth.message == (
        "authentication failed for user 'bob' (SCRAM-SHA-512) at b:9093: the broker refused the credentials"
    )
    text = "sasl_ssl://b:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed"
    ca = security_failure(KafkaError(KafkaError._SSL, text), {**conf, "ssl.ca.location": "/x/ca.pem"})
    assert ca is not None and ca.message.startswith("TLS to b:9093: the broker's certificate is not signed")
    assert "/x/ca.pem" in ca.message
    down = "sasl_ssl://b:9093/bootstrap: Connect to ipv4#1.2.3.4:9093 failed: Connection refused"
    assert security_failure(KafkaError(KafkaError._TRANSPORT, down), conf) is None


def test_kafka_env_hands_a_child_the_same_login(tmp_path, monkeypatch):
    """The local registry's process gets where Kafka is and how to log in, nothing else; a password
    file is passed as a path (never its content), and the local broker's defaults are re-derived."""
    for name in list(os.environ):
        if name.startswith("KSTREAM_"):
            monkeypatch.delenv(name)
    (tmp_path / "pw").write_text("s3cret\n")
    remote = Settings(
        bootstrap_servers="kafka-0:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="order-sink",
        sasl_password_file=tmp_path / "pw",
        data_dir=tmp_path,
    )
    env = remote.kafka_env()
    assert env == {
        "KSTREAM_DATA_DIR": str(tmp_path.resolve()),
        "KSTREAM_BOOTSTRAP_SERVERS": "kafka-0:9093",
        "KSTREAM_SECURITY_PROTOCOL": "SASL_SSL",
        "KSTREAM_SASL_MECHANISM": "SCRAM-SHA-512",
        "KSTREAM_SASL_USERNAME": "order-sink",
        "KSTREAM_SASL_PASSWORD_FILE": str((tmp_path / "pw").resolve()),
        "KSTREAM_SASL_PASSWORD": None,
    }
    child = Settings(**{k.removeprefix("KSTREAM_").lower(): v for k, v in env.items() if v is not None})
    assert child.librdkafka_security() == remote.librdkafka_security()

    local = Settings(broker_port=19092, data_dir=tmp_path).kafka_env()
    assert local["KSTREAM_BOOTSTRAP_SERVERS"] is None and local["KSTREAM_BROKER_PORT"] == "19092"
    assert local["KSTREAM_BROKER_SECURE"] is None  # not formatted secured: nothing to re-derive
