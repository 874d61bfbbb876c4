"""Notebook 05 (live tail) by papermill on the seeded data: the tail takes exactly ``max_records`` of
orders_enriched from its start, and %%ksql sees the whole topic beside it (nbval runs it too, in
test_pipeline_notebooks.py's glob)."""

from __future__ import annotations

import polars as pl
import pytest

from kstream_lab.notebooks.runner import run_notebook
from kstream_lab.settings import Settings
from tests.notebooks.test_pipeline_notebooks import outputs
from tests.support.paths import ROOT


@pytest.fixture
def nb_settings(seeded, monkeypatch) -> Settings:
    monkeypatch.setenv("KSTREAM_REPORTS_DIR", str(ROOT / "test-artifacts" / "reports"))
    monkeypatch.setenv("KSTREAM_NOTEBOOKS_DIR", str(ROOT / "notebooks"))
    return Settings()


def test_live_tail_notebook_takes_max_records_and_ksql_sees_the_topic(nb_settings, seeded) -> None:
    run = run_notebook(nb_settings, "05_live_tail", {"max_records": 40, "follow_seconds": 2})
    assert run.status == "succeeded", run.error
    n = seeded["truth"].filter(pl.col("kind") != "poison").height
    text = outputs(run.output_ipynb)
    assert "tail took 40 records of orders_enriched" in text
    assert f"orders_enriched: {n} records in the topic, 40 taken by the tail" in text
    assert "tail orders_enriched: 40 records in " in text  # the status line the display handle kept
    assert "new records in 2s; columns: ['topic', 'partition', 'offset', 'timestamp', 'key', 'headers']" in text
