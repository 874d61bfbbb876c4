"""Fixtures for the dashboard tests: a real DuckDB sink file in tmp_path, written by the sink's own class."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kstream_lab.sinks.duckdb import DuckDBSink


@pytest.fixture
def sink_file(tmp_path: Path) -> Callable[[list[dict]], Path]:
    """sink_file(rows) -> path of <tmp>/sink/sales.duckdb holding ``rows`` (the default sink location)."""

    def make(rows: list[dict]) -> Path:
        sink = DuckDBSink(tmp_path / "sink" / "sales.duckdb")
        sink.upsert(rows)
        sink.close()
        return sink.path

    return make
