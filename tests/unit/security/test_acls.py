"""The ACLs the repo's pipeline file declares, derived without a broker, and denial lines."""

from __future__ import annotations

import pytest
import yaml
from confluent_kafka import KafkaError

from kstream_lab.acls import AclBinding, derive_acls, principals
from kstream_lab.errors import ConfigError
from kstream_lab.kafka.denials import denied
from kstream_lab.pipeline_spec import load_pipeline
from kstream_lab.settings import Settings
from tests.support.paths import ROOT

EXPECTED = [
    ("User:analyst", "GROUP", "kstream-lab-read-", "PREFIXED", "READ"),
    ("User:analyst", "GROUP", "order-aggregator", "LITERAL", "DESCRIBE"),
    ("User:analyst", "TOPIC", "order-aggregator-changelog", "LITERAL", "DESCRIBE_CONFIGS"),
    ("User:analyst", "TOPIC", "order-aggregator-changelog", "LITERAL", "READ"),
    ("User:analyst", "TOPIC", "orders_dlq", "LITERAL", "DESCRIBE_CONFIGS"),
    ("User:analyst", "TOPIC", "orders_dlq", "LITERAL", "READ"),
    ("User:analyst", "TOPIC", "orders_dlq_redriven", "LITERAL", "DESCRIBE_CONFIGS"),
    ("User:analyst", "TOPIC", "orders_dlq_redriven", "LITERAL", "READ"),
    ("User:analyst", "TOPIC", "orders_enriched", "LITERAL", "DESCRIBE_CONFIGS"),
    ("User:analyst", "TOPIC", "orders_enriched", "LITERAL", "READ"),
    ("User:analyst", "TOPIC", "orders_late", "LITERAL", "DESCRIBE_CONFIGS"),
    ("User:analyst", "TOPIC", "orders_late", "LITERAL", "READ"),
    ("User:analyst", "TOPIC", "orders_raw", "LITERAL", "DESCRIBE_CONFIGS"),
    ("User:analyst", "TOPIC", "orders_raw", "LITERAL", "READ"),
    ("User:analyst", "TOPIC", "sales_aggregates", "LITERAL", "DESCRIBE_CONFIGS"),
    ("User:analyst", "TOPIC", "sales_aggregates", "LITERAL", "READ"),
    ("User:order-aggregator", "GROUP", "kstream-lab-read-", "PREFIXED", "DESCRIBE"),  # its changelog restore
    ("User:order-aggregator", "GROUP", "order-aggregator", "LITERAL", "READ"),
    ("User:order-aggregator", "TOPIC", "order-aggregator-changelog", "LITERAL", "READ"),
    ("User:order-aggregator", "TOPIC", "order-aggregator-changelog", "LITERAL", "WRITE"),
    ("User:order-aggregator", "TOPIC", "orders_dlq", "LITERAL", "WRITE"),
    ("User:order-aggregator", "TOPIC", "orders_enriched", "LITERAL", "READ"),
    ("User:order-aggregator", "TOPIC", "orders_late", "LITERAL", "WRITE"),
    ("User:order-aggregator", "TOPIC", "sales_aggregates", "LITERAL", "WRITE"),
    ("User:order-aggregator", "TRANSACTIONAL_ID", "order-aggregator-", "PREFIXED", "WRITE"),
    ("User:order-enricher", "GROUP", "order-enricher", "LITERAL", "READ"),
    ("User:order-enricher", "TOPIC", "orders_dlq", "LITERAL", "WRITE"),
    ("User:order-enricher", "TOPIC", "orders_enriched", "LITERAL", "WRITE"),
    ("User:order-enricher", "TOPIC", "orders_raw", "LITERAL", "READ"),
    ("User:order-enricher", "TRANSACTIONAL_ID", "order-enricher-", "PREFIXED", "WRITE"),
    ("User:order-service", "TOPIC", "orders_raw", "LITERAL", "WRITE"),
    ("User:order-sink", "GROUP", "order-sink", "LITERAL", "READ"),
    ("User:order-sink", "TOPIC", "orders_dlq", "LITERAL", "WRITE"),
    ("User:order-sink", "TOPIC", "sales_aggregates", "LITERAL", "READ"),
]


def test_repo_pipeline_declares_exactly_these_bindings():
    spec = load_pipeline(ROOT / "pipelines/orders.yaml")
    assert derive_acls(spec) == [AclBinding(*row) for row in EXPECTED]
    assert principals(spec) == [
        "User:analyst",
        "User:order-aggregator",
        "User:order-enricher",
        "User:order-service",
        "User:order-sink",
    ]


def test_the_analyst_writes_nothing_and_nobody_else_touches_what_they_do_not_name():
    acls = derive_acls(load_pipeline(ROOT / "pipelines/orders.yaml"))
    assert not [b for b in acls if b.principal == "User:analyst" and b.operation == "WRITE"]
    writers_of_raw = {b.principal for b in acls if b.name == "orders_raw" and b.operation == "WRITE"}
    assert writers_of_raw == {"User:order-service"}


def test_bindings_follow_the_workers_config_not_fixed_names(tmp_path):
    data = yaml.safe_load((ROOT / "pipelines/orders.yaml").read_text())
    data["workers"]["sink"].update(input="aggs-x", group_id="sink-x", dlq="dlq-x", principal="sink-user")
    data["readers"]["analyst"].update(topics=["orders_raw"], describe_groups=[])
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    acls = derive_acls(load_pipeline(path))
    assert [b for b in acls if b.principal in ("User:sink-user", "User:analyst")] == [
        AclBinding("User:analyst", "GROUP", "kstream-lab-read-", "PREFIXED", "READ"),
        AclBinding("User:analyst", "TOPIC", "orders_raw", "LITERAL", "DESCRIBE_CONFIGS"),
        AclBinding("User:analyst", "TOPIC", "orders_raw", "LITERAL", "READ"),
        AclBinding("User:sink-user", "GROUP", "sink-x", "LITERAL", "READ"),
        AclBinding("User:sink-user", "TOPIC", "aggs-x", "LITERAL", "READ"),
        AclBinding("User:sink-user", "TOPIC", "dlq-x", "LITERAL", "WRITE"),
    ]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["readers"]["analyst"].update(topics=["nope"]),
            r":\d+: readers.analyst.topics.0: no topic named 'nope'",
        ),
        (lambda d: d["readers"]["analyst"].update(writes=["x"]), r":\d+: readers.analyst.writes: unknown key"),
        (lambda d: d["workers"]["enricher"].update(principal="User:a:b"), r":\d+: workers.enricher.principal: String"),
        (
            lambda d: d["readers"]["analyst"].update(describe_groups=["dashboard"]),
            r":\d+: readers.analyst.describe_groups.0: Input should be 'enricher', 'aggregator' or 'sink'",
        ),
    ],
)
def test_bad_access_keys_fail_load_with_file_line_and_key(tmp_path, edit, message):
    data = yaml.safe_load((ROOT / "pipelines/orders.yaml").read_text())
    edit(data)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=rf"p.yaml{message}"):
        load_pipeline(path)


def test_denial_names_principal_operation_and_resource():
    s = Settings(sasl_username="analyst", bootstrap_servers="127.0.0.1:19093")
    err = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    assert denied(s, err, "WRITE", "orders_raw").message.startswith(
        "User:analyst may not WRITE topic orders_raw on 127.0.0.1:19093 ("
    )
    txn = KafkaError(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    assert denied(s, txn, "WRITE", "order-enricher-0").message.startswith(
        "User:analyst may not WRITE transactional-id order-enricher-0 on"
    )
    assert str(AclBinding("User:a", "TRANSACTIONAL_ID", "t-", "PREFIXED", "WRITE")) == (
        "User:a may WRITE transactional-id t- (prefix)"
    )


def test_a_producer_denied_a_topic_raises_the_denial_at_once():
    from kstream_lab.errors import AuthorizationError
    from kstream_lab.kafka.producing import BatchProducer

    class FakeMsg:
        def topic(self) -> str:
            return "orders_raw"

    producer = BatchProducer(Settings(sasl_username="analyst", bootstrap_servers="127.0.0.1:1"))
    producer._on_delivery(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), FakeMsg())
    with pytest.raises(AuthorizationError, match=r"^User:analyst may not WRITE topic orders_raw on 127.0.0.1:1"):
        producer.flush(0.1)


def test_every_declared_operation_survives_the_round_trip_through_the_broker_binding():
    """A binding the broker lists must read back as the one we declared, or a second apply
    creates it again (CI: the DESCRIBE_CONFIGS grants were re-created on every apply)."""
    from typing import get_args

    from kstream_lab.acls import AclBinding, Operation
    from kstream_lab.kafka.acls import _from_kafka, _to_kafka

    for op in get_args(Operation):
        declared = AclBinding("User:analyst", "TOPIC", "orders_raw", "LITERAL", op)
        assert _from_kafka(_to_kafka(declared)) == declared


def test_a_connect_sink_grants_the_worker_its_group_internal_topics_and_the_connector_group(tmp_path):
    """kind: connect: the Connect worker logs in as the sink's principal; it needs the connector's
    consumer group (connect-<name>), its own group and its three internal topics, and nothing the
    Python sink's group had."""
    data = yaml.safe_load((ROOT / "pipelines/orders.yaml").read_text())
    data["workers"]["sink"].update(
        kind="connect", target="postgresql://u@h:5432/db", connector_name="jdbc-x", principal="sink-user"
    )
    data["readers"]["analyst"].update(topics=["orders_raw"], describe_groups=["sink"])
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    acls = derive_acls(load_pipeline(path), connect_group="cg")
    internal = ("cg-configs", "cg-offsets", "cg-status")
    assert [b for b in acls if b.principal == "User:sink-user"] == sorted(
        [
            AclBinding("User:sink-user", "GROUP", "cg", "LITERAL", "READ"),
            AclBinding("User:sink-user", "GROUP", "connect-jdbc-x", "LITERAL", "READ"),
            AclBinding("User:sink-user", "TOPIC", "orders_dlq", "LITERAL", "WRITE"),
            AclBinding("User:sink-user", "TOPIC", "sales_aggregates", "LITERAL", "READ"),
            *[AclBinding("User:sink-user", "TOPIC", t, "LITERAL", op) for t in internal for op in (
                "CREATE", "DESCRIBE_CONFIGS", "READ", "WRITE"
            )],
        ]
    )  # fmt: skip
    assert AclBinding("User:analyst", "GROUP", "connect-jdbc-x", "LITERAL", "DESCRIBE") in acls
    assert derive_acls(load_pipeline(path)) != acls  # the default group: kstream-lab-connect-*
    assert AclBinding("User:sink-user", "TOPIC", "kstream-lab-connect-status", "LITERAL", "WRITE") in derive_acls(
        load_pipeline(path)
    )
