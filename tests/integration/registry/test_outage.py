"""A schema registry outage is not a record error: the aggregator's batch decoder retries the batch
(RetryBatch -> abort, rewind, back off) while the registry cannot be reached, and decodes the very
same bytes exactly once it answers again -- against a real registry process, stopped and started."""

from __future__ import annotations

import pytest

from kstream_lab.kafka.transactional import RetryBatch
from kstream_lab.local_registry import LocalRegistry
from kstream_lab.pipeline_spec import TopicSpec
from kstream_lab.schemas.serde import SerdeContext, value_serializer
from kstream_lab.workers.codec import column_decoder
from tests.support.paths import free_port


def test_the_batch_decoder_retries_during_an_outage_and_decodes_after(kafka_settings, tmp_path):
    spec = TopicSpec(name="outage-orders", partitions=1, value_format="avro", schema="EnrichedOrder")
    serialize = value_serializer(kafka_settings, spec)  # registered through the session's registry
    orders = [
        {
            "order_id": f"o{i}",
            "customer_id": "c1",
            "total_cents": 1000 + i,
            "currency": "EUR",
            "item_count": 1,
            "timestamp": 1_700_000_000_000 + i,
            "loyalty_tier": "gold",
        }
        for i in range(3)
    ]
    values = [serialize(o, SerdeContext(spec.name)) for o in orders]

    port = free_port()  # a second registry over the same _schemas topic, not running yet
    settings = kafka_settings.model_copy(
        update={"registry_port": port, "schema_registry_url": None, "data_dir": tmp_path}
    )
    decode = column_decoder(settings, spec, ints=["timestamp", "total_cents"], others=["loyalty_tier"])
    with pytest.raises(RetryBatch, match="registry unavailable"):
        decode(values, spec.name, [0, 0, 0], [10, 11, 12])

    registry = LocalRegistry(settings)
    registry.up(timeout=60)
    try:
        cols = decode(values, spec.name, [0, 0, 0], [10, 11, 12])
    finally:
        registry.down()
    assert cols.errors == {} and cols.rows == [0, 1, 2]
    assert cols.columns == {
        "timestamp": [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002],
        "total_cents": [1000, 1001, 1002],
        "loyalty_tier": ["gold", "gold", "gold"],
    }


def test_a_worker_started_before_the_registry_waits_for_it(kafka_settings, tmp_path, monkeypatch, caplog):
    """Building the aggregator registers its output schema; with the registry not up yet the worker
    used to exit. It now retries (logging each attempt) and builds once the registry answers."""
    import threading
    import time

    from kstream_lab.pipeline_spec import load_pipeline
    from kstream_lab.workers import runner

    monkeypatch.setattr(runner, "START_RETRY_S", 0.2)
    monkeypatch.setattr(runner, "START_RETRY_MAX_S", 0.5)
    port = free_port()
    settings = kafka_settings.model_copy(
        update={"registry_port": port, "schema_registry_url": None, "data_dir": tmp_path}
    )
    spec = load_pipeline("pipelines/orders.yaml")
    built: list = []
    stop = threading.Event()
    thread = threading.Thread(
        target=lambda: built.append(
            runner.build_when_dependencies_answer(
                lambda s, sp, st, i: runner.aggregator_processor(s, sp), settings, spec, stop, 0
            )
        )
    )
    registry = LocalRegistry(settings)
    with caplog.at_level("WARNING", logger="kstream_lab.workers.runner"):
        thread.start()
        try:  # the registry comes up only after the worker has failed to reach it and said so
            deadline = time.monotonic() + 60
            while "schema registry unavailable at start" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "schema registry unavailable at start" in caplog.text and not built
            registry.up(timeout=60)
            thread.join(30)
        finally:
            stop.set()
            registry.down()
    assert not thread.is_alive() and isinstance(built[0], runner.AggregatorProcessor)


def test_the_order_service_answers_503_until_the_registry_is_up(kafka_settings, tmp_path):
    """Started while the registry is down, the order service stays up: orders get a 503 naming the
    registry, and once it answers the next order is accepted (202) and on the topic."""
    import time

    from fastapi.testclient import TestClient

    from kstream_lab.kafka.topics import apply_topics, delete_topics
    from kstream_lab.pipeline_spec import load_pipeline
    from kstream_lab.services.order_service import create_app
    from tests.support.pipeline import write_pipeline

    port = free_port()
    settings = kafka_settings.model_copy(
        update={"registry_port": port, "schema_registry_url": None, "data_dir": tmp_path}
    )
    spec = load_pipeline(write_pipeline(tmp_path))  # topics renamed for this test
    topic = spec.topic(spec.workers.order_service.output)
    apply_topics(settings, [topic])
    order = {"customer_id": "c1", "total_cents": 1234}
    registry = LocalRegistry(settings)
    try:
        with TestClient(create_app(settings, spec)) as client:
            refused = client.post("/orders", json=order)
            assert refused.status_code == 503 and "schema registry" in refused.json()["detail"]
            assert refused.headers["retry-after"] == "2"  # its next registration attempt
            assert client.get("/healthz").status_code == 200  # the service itself is up
            registry.up(timeout=60)
            deadline = time.monotonic() + 30  # attempts are throttled: the next one may be 2 s away
            while (accepted := client.post("/orders", json=order)).status_code == 503 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert accepted.status_code == 202, accepted.text
    finally:
        registry.down()
        delete_topics(settings, [topic.name])
    assert accepted.json()["offset"] >= 0
