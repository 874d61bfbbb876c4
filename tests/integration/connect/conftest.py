"""A local Kafka Connect worker (distributed mode, its topics on the session broker) per test module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from kstream_lab.connect import LocalConnect
from kstream_lab.settings import Settings
from tests.support.paths import free_port


@pytest.fixture(scope="module")
def connect_worker(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalConnect]:
    settings = kafka_settings.model_copy(
        update={"connect_port": free_port(), "connect_group_id": f"connect-{uuid.uuid4().hex[:8]}"}
    )
    worker = LocalConnect(settings, home=tmp_path_factory.mktemp("connect"))
    worker.up(timeout=240)
    try:
        yield worker
    finally:
        worker.down(timeout=30)
