"""The chaos suite's broker: its own local broker and registry, which its tests may SIGKILL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.chaos import ChaosKafka


@pytest.fixture(scope="session")
def chaos_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosKafka]:
    kafka = ChaosKafka.start(tmp_path_factory.mktemp("kstream-chaos"))
    yield kafka
    kafka.stop()


@pytest.fixture
def chaos_pipeline(chaos_kafka: ChaosKafka, tmp_path: Path) -> Iterator:
    """An isolated copy of the order pipeline on the chaos broker; stopped and deleted afterwards."""
    from tests.support.pipeline import Pipeline, write_pipeline

    pipe = Pipeline(chaos_kafka.settings, write_pipeline(tmp_path), tmp_path, env=chaos_kafka.env)
    pipe.create_topics()
    yield pipe
    pipe.stop_all()
    if chaos_kafka.broker.pid() is None:  # a test that failed with the broker down leaves it restarted
        chaos_kafka.restart_broker()
    if not os.environ.get("KSTREAM_TEST_KEEP_TOPICS"):  # kept: inspect the logs (kafka DumpLogSegments)
        pipe.delete_topics()
