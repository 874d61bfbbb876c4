"""The secured local broker: clients of every kind work over SASL_SSL as admin and as a SCRAM user."""

from __future__ import annotations

import socket
import uuid

from kstream_lab.kafka.admin import ping
from kstream_lab.kafka.clients import make_consumer, make_producer
from kstream_lab.kafka.topics import apply_topics, delete_topics
from kstream_lab.pipeline_spec import TopicSpec
from tests.support.secure import SecureKafka


def test_admin_produces_and_consumes_over_sasl_ssl(secure_kafka: SecureKafka) -> None:
    s = secure_kafka.settings
    assert s.librdkafka_security()["security.protocol"] == "SASL_SSL"
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    apply_topics(s, [TopicSpec(name=topic, partitions=2)])
    try:
        producer = make_producer(s)
        for i in range(10):
            producer.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), partition=i % 2)
        assert producer.flush(15) == 0
        consumer = make_consumer(s, f"g-{uuid.uuid4().hex[:6]}")
        consumer.subscribe([topic])
        got: list[bytes] = []
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
            if len(got) == 10:
                break
        consumer.close()
        assert sorted(got) == sorted(f"v{i}".encode() for i in range(10))
        assert topic in ping(s)
    finally:
        delete_topics(s, [topic])


def test_controller_listener_is_not_advertised_and_needs_the_broker_key(secure_kafka: SecureKafka) -> None:
    s = secure_kafka.settings
    props = (s.local_broker_home / "server.properties").read_text()
    advertised = next(line for line in props.splitlines() if line.startswith("advertised.listeners="))
    assert advertised == f"advertised.listeners=SASL_SSL://127.0.0.1:{s.broker_port}"
    assert "CONTROLLER:SSL" in props and "listener.name.controller.ssl.client.auth=required" in props
    assert "super.users=User:admin\n" in props and "allow.everyone.if.no.acl.found=false" in props
    assert (s.local_broker_home / "server.properties").stat().st_mode & 0o777 == 0o600
    # A client trusting the CA but holding no client certificate is refused by the controller listener.
    import ssl

    ctx = ssl.create_default_context(cafile=secure_kafka.ca_file)
    with (
        socket.create_connection(("127.0.0.1", s.controller_port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.settimeout(5)
        try:
            tls.sendall(b"\x00\x00\x00\x00")
            assert tls.recv(1) == b""  # closed without an answer
        except (ssl.SSLError, ConnectionError):
            pass  # TLS 1.3 reports the missing certificate on the first read or write


def test_a_scram_user_authenticates_but_is_authorised_for_nothing(secure_kafka: SecureKafka) -> None:
    _, _, user = secure_kafka.make_user("nobody")
    assert ping(user) == []  # authenticated; without ACLs it sees no topic (allow.everyone=false)
