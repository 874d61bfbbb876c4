"""Over SASL_SSL: replay parity with the plaintext broker, clear security errors, users, secrets.

Outputs captured here go to the leak check (test_zz_no_secret_leaks.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import polars as pl
import pytest

import kstream_lab
from kstream_lab.errors import SecurityError
from kstream_lab.kafka.admin import ping
from kstream_lab.kafka.producing import BatchProducer
from kstream_lab.kafka.topics import apply_topics, delete_topics
from kstream_lab.pipeline_spec import TopicSpec
from kstream_lab.settings import Settings
from tests.support.secure import CAPTURED, SecureKafka

CLI = str(Path(os.environ.get("VIRTUAL_ENV", "/work/main/.venv")) / "bin" / "kstream-lab")
T0 = (int(time.time()) - 3_600) * 1000


def cli(secure: SecureKafka, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KSTREAM_")}
    proc = subprocess.run(
        [CLI, *args],
        env={**base, **secure.env(), **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    CAPTURED.append(proc.stdout + proc.stderr)
    return proc


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def produce(settings: Settings, topic: str, n: int) -> None:
    apply_topics(settings, [TopicSpec(name=topic, partitions=3)])
    with BatchProducer(settings) as producer:
        for i in range(n):
            value = {"order_id": f"o{i}", "total_cents": 100 + i, "timestamp": T0 + i, "loyalty_tier": "gold"}
            producer.produce(
                topic,
                key=f"k{i}".encode(),
                value=json.dumps(value).encode(),
                partition=i % 3,
                timestamp=T0 + i,
                headers=[("h", str(i).encode())],
            )


@pytest.mark.parametrize("fetch", ["native", "python"])
def test_replay_over_sasl_ssl_equals_replay_on_plaintext(kafka_settings, secure_kafka, fetch) -> None:
    topic = f"parity-{uuid.uuid4().hex[:8]}"
    plain = kafka_settings.model_copy(update={"replay_fetch": fetch})
    secure = secure_kafka.settings.model_copy(update={"replay_fetch": fetch})
    produce(plain, topic, 3_000)
    produce(secure, topic, 3_000)
    try:
        a = kstream_lab.replay(topic, settings=plain)
        b = kstream_lab.replay(topic, settings=secure)
        assert len(b) == 3_000
        assert b.drop("kafka_timestamp").equals(a.drop("kafka_timestamp"))
        assert b["kafka_timestamp"].equals(a["kafka_timestamp"])  # producer-set timestamps: identical
        assert isinstance(b, pl.DataFrame)
    finally:
        delete_topics(plain, [topic])
        delete_topics(secure, [topic])


def test_wrong_password_is_one_line_naming_user_mechanism_broker(secure_kafka) -> None:
    name, _, _ = secure_kafka.make_user("wrongpw")
    t0 = time.monotonic()
    proc = cli(secure_kafka, "topics", "list", KSTREAM_SASL_USERNAME=name, KSTREAM_SASL_PASSWORD="not-the-password")
    elapsed = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1, lines
    assert f"authentication failed for user '{name}' (SCRAM-SHA-512) at {secure_kafka.settings.bootstrap}" in lines[0]
    assert "did not answer" not in lines[0]
    assert elapsed < 15, elapsed


def test_untrusted_ca_is_its_own_line(secure_kafka, tmp_path) -> None:
    from kstream_lab.broker.tls import make_ca

    other, _ = make_ca("some other CA")
    from cryptography.hazmat.primitives import serialization

    (tmp_path / "other.pem").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    proc = cli(secure_kafka, "topics", "list", KSTREAM_SSL_CA_LOCATION=str(tmp_path / "other.pem"))
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"error: TLS to {secure_kafka.settings.bootstrap}: the broker's certificate is not signed"
    )
    assert str(tmp_path / "other.pem") in lines[0]


def test_plaintext_client_on_the_tls_port_is_its_own_line(secure_kafka) -> None:
    t0 = time.monotonic()
    proc = cli(secure_kafka, "topics", "list", KSTREAM_SECURITY_PROTOCOL="PLAINTEXT")
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert lines == [
        f"error: {secure_kafka.settings.bootstrap} is a TLS listener but this client speaks PLAINTEXT "
        "(set KSTREAM_SECURITY_PROTOCOL=SASL_SSL (with KSTREAM_SASL_* and KSTREAM_SSL_CA_LOCATION))"
    ]
    assert time.monotonic() - t0 < 15


def test_wrong_password_fails_fast_in_library_clients(secure_kafka) -> None:
    name, _, _ = secure_kafka.make_user("fast")
    bad = secure_kafka.as_user(name, "nope")
    t0 = time.monotonic()
    with pytest.raises(SecurityError, match=f"user '{name}' \\(SCRAM-SHA-512\\)"):
        ping(bad, timeout=30)
    assert time.monotonic() - t0 < 5
    topic = f"fast-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    with pytest.raises(SecurityError), BatchProducer(bad) as producer:  # flush serves the error callback
        producer.produce(topic, key=None, value=b"x")
    assert time.monotonic() - t0 < 5


def test_users_add_rotate_remove_round_trip(secure_kafka, tmp_path) -> None:
    name = f"carol-{uuid.uuid4().hex[:6]}"
    first, second = "first-" + uuid.uuid4().hex, "second-" + uuid.uuid4().hex
    secure_kafka.passwords += [first, second]
    pw_file = tmp_path / "pw"
    pw_file.write_text(first + "\n")
    added = cli(secure_kafka, "users", "add", name, "--password-file", str(pw_file))
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"user {name} added (SCRAM-SHA-512)"
    listed = cli(secure_kafka, "users", "list")
    assert f"{name}\tSCRAM-SHA-512" in listed.stdout.splitlines()
    assert "admin\tSCRAM-SHA-512" in listed.stdout.splitlines()
    assert ping(secure_kafka.as_user(name, first)) == []
    again = cli(secure_kafka, "users", "add", name, "--password-file", str(pw_file))
    assert again.returncode == 2 and f"user '{name}' exists" in again.stderr

    rotated = cli(secure_kafka, "users", "rotate", name, "--password-stdin", stdin=second + "\n")
    assert rotated.returncode == 0, rotated.stderr
    assert ping(secure_kafka.as_user(name, second)) == []
    with pytest.raises(SecurityError):
        ping(secure_kafka.as_user(name, first), timeout=10)  # the old password stops working

    removed = cli(secure_kafka, "users", "remove", name)
    assert removed.returncode == 0 and removed.stdout.strip() == f"user {name} removed (SCRAM-SHA-512)"
    with pytest.raises(SecurityError):
        ping(secure_kafka.as_user(name, second), timeout=10)
    assert name not in cli(secure_kafka, "users", "list").stdout


def test_users_never_take_a_password_argument(secure_kafka) -> None:
    proc = cli(secure_kafka, "users", "add", "dave", "--password", "x")
    assert proc.returncode == 2 and "No such option: --password" in proc.stderr
    no_source = cli(secure_kafka, "users", "add", "dave", stdin="")
    assert no_source.returncode == 2
    assert error_lines(no_source) == ["error: no password given (use --password-file FILE or --password-stdin)"]


def test_secret_from_a_file_like_a_mounted_secret(secure_kafka, tmp_path) -> None:
    name, password, _ = secure_kafka.make_user("filed")
    (tmp_path / "sasl-password").write_text(password + "\n")  # as Kubernetes mounts it: trailing newline
    topic = f"filed-{uuid.uuid4().hex[:6]}"
    apply_topics(secure_kafka.settings, [TopicSpec(name=topic, partitions=1)])
    try:
        env = {"KSTREAM_SASL_USERNAME": name, "KSTREAM_SASL_PASSWORD_FILE": str(tmp_path / "sasl-password")}
        proc = cli(secure_kafka, "topics", "list", **env)
        assert proc.returncode == 0, proc.stderr  # authenticated (the user sees no topic without ACLs)
        assert topic not in proc.stdout
        admin = cli(secure_kafka, "topics", "list")
        assert topic in admin.stdout
    finally:
        delete_topics(secure_kafka.settings, [topic])


def test_broker_status_shows_security_but_no_password(secure_kafka) -> None:
    proc = cli(secure_kafka, "broker", "status")
    assert proc.returncode == 0, proc.stderr
    assert "security:  SASL_SSL (SCRAM-SHA-512, ACLs)" in proc.stdout
    assert f"CA file:   {secure_kafka.ca_file}" in proc.stdout
    assert "admin:     User:admin" in proc.stdout
    assert secure_kafka.admin_password not in proc.stdout
