"""Seeded data for the notebooks: the real pipeline run once over generated orders.

The notebooks read the default topic names (orders_enriched, orders_dlq, ...), which no other test
uses, so their default parameters work as committed, for papermill and for nbval alike.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kstream_lab.generator.orders import recent_start_ms
from tests.support.paths import ROOT, free_port
from tests.support.pipeline import Pipeline, expected_rows, produce_truth, sink_by_key

START_MS = recent_start_ms()  # recent event times, as a live pipeline has

ORDERS = 3_000


def seeded_pipeline_file(tmp: Path) -> Path:
    data = yaml.safe_load((ROOT / "pipelines" / "orders.yaml").read_text())
    data["workers"] = {
        "customer_service": {"port": free_port()},
        "order_service": {"port": free_port()},
        "enricher": {"metrics_port": free_port()},
        "aggregator": {"metrics_port": free_port()},
        "sink": {"metrics_port": free_port(), "target": f"duckdb://{tmp / 'sales.duckdb'}"},
    }
    path = tmp / "orders.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    shutil.copytree(ROOT / "pipelines" / "schemas", tmp / "schemas")
    return path


@pytest.fixture(scope="session")
def seeded(kafka_settings, tmp_path_factory) -> Iterator[dict]:
    """Run customer service, enricher, aggregator and sink over 3,000 orders (2% late, 1% poison)."""
    tmp = tmp_path_factory.mktemp("seeded")
    os.environ["KSTREAM_PIPELINE_FILE"] = str(seeded_pipeline_file(tmp))
    pipe = Pipeline(kafka_settings, Path(os.environ["KSTREAM_PIPELINE_FILE"]), tmp)
    pipe.create_topics()
    truth = produce_truth(pipe, ORDERS, seed=11, start_ms=START_MS, late_fraction=0.02, poison_fraction=0.01)
    window = pipe.spec.aggregation().window
    expected = expected_rows(truth, window.size_ms, window.grace_ms)
    try:
        for name in ("customer-service", "enricher", "aggregator", "sink"):
            pipe.start(name)
        pipe.wait_for(
            lambda: sink_by_key(pipe.sink_rows()) == expected, timeout=300, what="the sink to match the truth"
        )
    finally:
        pipe.stop_all()
    yield {"pipeline": pipe, "truth": truth, "expected": expected}
