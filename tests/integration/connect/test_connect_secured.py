"""The Kafka Connect sink on the secured broker (SASL_SSL, SCRAM-SHA-512, StandardAuthorizer): the
Connect worker logs in as the sink's principal holding only the ACLs `derive_acls` gives a
``kind: connect`` sink, and the registry as its read-only user. It creates its internal topics,
writes the aggregates into PostgreSQL and dead-letters a bad record."""

from __future__ import annotations

from pathlib import Path

from kstream_lab.acls import derive_acls
from kstream_lab.connect import LocalConnect
from kstream_lab.connect.sink import apply_sink
from kstream_lab.kafka.acls import apply_acls
from kstream_lab.kafka.producing import BatchProducer
from kstream_lab.schemas.serde import SerdeContext, value_serializer
from kstream_lab.workers.dlq import DeadLetter
from tests.integration.connect.test_connect_sink import new_database, rows
from tests.support.paths import free_port
from tests.support.pipeline import Pipeline, write_pipeline
from tests.support.secure import REGISTRY_READER, SecureKafka


def test_the_connect_sink_runs_on_the_secured_broker_with_only_its_derived_acls(
    secure_kafka: SecureKafka, postgres_dsn: str, tmp_path: Path
) -> None:
    pipe = Pipeline(secure_kafka.settings, write_pipeline(tmp_path), tmp_path)
    pipe.create_topics()  # as admin, like the chart's pre-install hook
    suffix = pipe.topic("orders_raw").rsplit("-", 1)[1]
    user, group = f"connect-{suffix}", f"secure-connect-{suffix}"
    dsn = new_database(postgres_dsn, f"secure_{suffix}")
    pipe.set_worker("sink", kind="connect", target=dsn, connector_name=f"sec-{suffix}", principal=f"User:{user}")
    password = secure_kafka.set_password(user)
    granted = [b for b in derive_acls(pipe.spec, group) if b.principal == f"User:{user}"]
    apply_acls(secure_kafka.settings, granted)

    topic = pipe.topic("sales_aggregates")
    serialize = value_serializer(secure_kafka.settings, pipe.spec.topic(topic))
    ws = 1_700_000_000_000
    row = {"window_start": ws, "window_end": ws + 60_000, "source_partition": 0}
    gold = {**row, "tier": "gold", "total_cents": 250, "count": 2, "final": True}
    silver = {**row, "tier": "silver", "total_cents": 999, "count": 3, "final": False}
    records = [
        (f"{ws}:gold:0", serialize(gold, SerdeContext(topic))),
        (f"{ws}:silver:0", b"\x07not avro at all"),
        (f"{ws}:silver:0", serialize(silver, SerdeContext(topic))),
    ]
    with BatchProducer(secure_kafka.settings) as producer:
        for key, value in records:
            producer.produce(topic, key=key.encode(), value=value, partition=0)

    login = secure_kafka.as_user(user, password, registry_user=REGISTRY_READER)
    worker = LocalConnect(
        login.model_copy(update={"connect_port": free_port(), "connect_group_id": group}), home=tmp_path / "connect"
    )
    worker.up(timeout=240)
    try:
        assert apply_sink(worker.settings, pipe.spec, worker.client) == "created"
        pipe.wait_for(lambda: len(rows(dsn)) == 2, timeout=180, what="the two good rows in PostgreSQL")
        assert rows(dsn) == {
            (ws, "gold", 0): {"total_cents": 250, "count": 2, "final": True},
            (ws, "silver", 0): {"total_cents": 999, "count": 3, "final": False},
        }
        dlq = pipe.read("orders_dlq")
        assert [(r.key, r.value) for r in dlq] == [(f"{ws}:silver:0".encode(), b"\x07not avro at all")]
        letter = DeadLetter.from_record(dlq[0].key, dlq[0].value, dlq[0].headers)
        assert (letter.source_topic, letter.source_offset, letter.error_reason) == (topic, 1, "connect_value_converter")
        assert worker.client.states()[pipe.workers.sink.connector_name] == "RUNNING"
        log = worker.log_file.read_text(errors="replace")
        assert "TopicAuthorizationException" not in log and "GroupAuthorizationException" not in log
        assert password not in log
    finally:
        worker.down(timeout=30)
        pipe.delete_topics()
