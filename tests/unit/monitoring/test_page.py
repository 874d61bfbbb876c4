"""The dashboard page (streamlit.testing AppTest): clear empty states and exact totals, never a traceback.

The broker and the workers' metrics endpoints point at free ports nobody listens on, so these run
without a broker and show what a user sees when the pipeline is down.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from tests.support.paths import ROOT, free_port
from tests.support.sales import ROWS, T0

APP = str(ROOT / "apps" / "dashboard.py")


@pytest.fixture(autouse=True)
def dashboard_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """KSTREAM_* for the page: data dir = tmp_path, no broker, worker metrics on dead ports."""
    data = yaml.safe_load((ROOT / "pipelines" / "orders.yaml").read_text())
    data["workers"] = {name: {"metrics_port": free_port()} for name in ("enricher", "aggregator", "sink")}
    pipeline = tmp_path / "orders.yaml"
    pipeline.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("KSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KSTREAM_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("KSTREAM_PIPELINE_FILE", str(pipeline))
    return tmp_path


def run_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def test_sink_missing_and_broker_down_are_explained(dashboard_env: Path) -> None:
    at = run_page()
    assert texts(at.info)[0] == (
        f"No sales yet: no sink database at {dashboard_env / 'sink' / 'sales.duckdb'} yet "
        "(start the sink worker: `kstream-lab worker sink`)."
    )
    broker = [t for t in texts(at.error) if t.startswith("Broker unreachable: Kafka at 127.0.0.1:")]
    assert broker and "kstream-lab broker up" in broker[0]
    workers = at.table[-1].value
    assert workers["worker"].tolist() == ["enricher", "aggregator", "sink"]
    assert set(workers["status"]) == {"not running (connection refused)"}


def test_no_data_yet(sink_file) -> None:
    sink_file([])
    at = run_page()
    assert texts(at.info)[0].startswith("No sales aggregates yet: the sink is running but has not written a window.")


def test_populated_sink_shows_exact_totals_stacked_by_tier(sink_file) -> None:
    sink_file(ROWS)
    at = run_page()
    assert [(m.label, m.value) for m in at.metric] == [
        ("Newest minute (UTC)", "14:15"),
        ("Sales in that minute", "$1,235,099.14"),
        ("Orders in that minute", "13"),
    ]
    table = at.table[0].value
    assert table.columns.tolist() == [
        "minute (UTC)",
        "bronze",
        "silver",
        "gold",
        "platinum",
        "all tiers",
        "orders",
        "status",
    ]
    assert table.values.tolist() == [
        ["2026-09-21 14:15", "—", "$31.25", "$500.00", "$1,234,567.89", "$1,235,099.14", "13", "open"],
        ["2026-09-21 14:14", "$0.01", "$9.99", "$223.46", "—", "$233.46", "5", "final"],
    ]
    sales_chart, orders_chart = at.get("vega_lite_chart")
    spec = json.loads(sales_chart.proto.spec)
    assert spec["mark"]["type"] == "bar" and spec["encoding"]["color"]["field"] == "tier"
    assert spec["encoding"]["color"]["scale"]["domain"] == ["bronze", "silver", "gold", "platinum"]
    assert spec["encoding"]["y"]["field"] == "sales_usd" and spec["encoding"]["y"]["stack"] == "zero"
    assert spec["encoding"]["x"]["timeUnit"] == "utcyearmonthdatehoursminutes"
    data = pa.ipc.open_stream(sales_chart.proto.datasets[0].data.data).read_all().to_pylist()
    cents = sorted((row["tier"], round(row["sales_usd"] * 100)) for row in data)
    assert cents == sorted(
        [
            ("bronze", 1),
            ("gold", 22_346),
            ("silver", 999),
            ("gold", 50_000),
            ("platinum", 123_456_789),
            ("silver", 3_125),
        ]
    )
    assert json.loads(orders_chart.proto.spec)["encoding"]["y"]["field"] == "orders"


def test_bad_pipeline_file_is_one_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KSTREAM_PIPELINE_FILE", str(tmp_path / "missing.yaml"))
    at = run_page()
    assert texts(at.error) == [
        f"Cannot load the pipeline: cannot read pipeline file {tmp_path / 'missing.yaml'}: "
        "No such file or directory (pass the path of a pipelines/*.yaml file)"
    ]


def test_picking_a_minute_fills_the_backtest_range_and_a_failed_run_is_a_message(sink_file) -> None:
    sink_file(ROWS)
    at = run_page()
    at.selectbox[0].select(T0).run()
    assert [t.value for t in at.text_input] == ["earliest", ""]
    assert any(c.value.startswith("Focus: the minute 2026-09-21 14:14 UTC") for c in at.caption)
    at.button[0].click().run()
    assert not at.exception
    failed = [t for t in texts(at.error) if t.startswith("Back-test failed: ")]
    assert len(failed) == 1 and "did not answer" in failed[0], texts(at.error)
