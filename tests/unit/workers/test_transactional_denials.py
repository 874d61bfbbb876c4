"""ACL denials in the transactional loop: the batch is aborted (no input offset committed), and the
loop stops with one line naming principal, operation and resource instead of retrying forever."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, Message

from kstream_lab.errors import AuthorizationError
from tests.unit.workers.test_transactional_loop import BATCH, ScriptedProducer, loop


def denial(code: int, **flags) -> KafkaError:
    return KafkaError(code, "Broker: authorization failed", **flags)


def test_a_denied_write_at_commit_aborts_and_names_the_topics_written():
    producer = ScriptedProducer({"commit": [denial(KafkaError.TOPIC_AUTHORIZATION_FAILED, txn_requires_abort=True)]})
    lp = loop(producer)
    lp.settings = lp.settings.model_copy(update={"sasl_username": "order-enricher"})
    with pytest.raises(AuthorizationError) as info:
        lp._run_batch(BATCH)
    assert info.value.message.startswith("User:order-enricher may not WRITE topic out on 127.0.0.1:1 (")
    assert producer.calls == ["begin", "send_offsets", "commit", "abort"]  # offsets never committed
    assert lp.batches == 0 and not lp.in_transaction


def test_a_denied_transactional_id_and_group_name_the_ids():
    producer = ScriptedProducer(
        {"send_offsets": [denial(KafkaError.GROUP_AUTHORIZATION_FAILED, txn_requires_abort=True)]}
    )
    with pytest.raises(AuthorizationError, match=r"^User:ANONYMOUS may not READ group g on"):
        loop(producer)._run_batch(BATCH)
    assert producer.calls == ["begin", "send_offsets", "abort"]

    producer = ScriptedProducer({"begin": [denial(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, fatal=True)]})
    with pytest.raises(AuthorizationError, match=r"may not WRITE transactional-id t on"):
        loop(producer)._run_batch(BATCH)


def test_a_denied_read_of_the_input_stops_the_consume():
    lp = loop(ScriptedProducer())
    refused = Message(topic="in", partition=0, offset=0, error=denial(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    lp.consumer.consume = lambda n, t: [refused]
    with pytest.raises(AuthorizationError, match=r"^User:ANONYMOUS may not READ topic in on"):
        lp._consume()
