"""Fixtures for replay tests: producing JSON records with chosen partitions, timestamps and headers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import pytest

from kstream_lab.kafka.producing import BatchProducer
from kstream_lab.settings import Settings


@pytest.fixture
def produce_json(kafka_settings: Settings) -> Callable[..., int]:
    """produce_json(topic, [(partition, timestamp_ms, value_dict_or_bytes_or_None), ...], headers=None)."""

    def produce(
        topic: str,
        records: Iterable[tuple[int, int, object]],
        *,
        key_prefix: str = "k",
        headers: list[tuple[str, bytes]] | None = None,
    ) -> int:
        n = 0
        with BatchProducer(kafka_settings) as producer:
            for i, (partition, ts, value) in enumerate(records):
                raw = value if value is None or isinstance(value, bytes) else json.dumps(value).encode()
                producer.produce(
                    topic,
                    key=f"{key_prefix}{i}".encode(),
                    value=raw,
                    partition=partition,
                    timestamp=ts,
                    headers=headers,
                )
                n += 1
        return n

    return produce


@pytest.fixture
def pipe(kafka_settings, tmp_path):
    """A pipeline with Avro topics of its own (unique names), stopped and deleted afterwards."""
    from tests.support.pipeline import Pipeline, write_pipeline

    p = Pipeline(kafka_settings, write_pipeline(tmp_path, value_format="avro"), tmp_path)
    p.create_topics()
    yield p
    p.stop_all()
    p.delete_topics()
