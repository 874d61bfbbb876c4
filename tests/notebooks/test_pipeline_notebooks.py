"""The notebooks, run top to bottom on seeded data: by papermill (with lineage) and by nbval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import polars as pl
import pytest

import kstream_lab
from kstream_lab.explore import topic_overview
from kstream_lab.notebooks import runlog
from kstream_lab.notebooks.runner import run_notebook
from kstream_lab.settings import Settings
from tests.support.paths import ROOT


@pytest.fixture
def nb_settings(seeded, tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("KSTREAM_REPORTS_DIR", str(ROOT / "test-artifacts" / "reports"))
    monkeypatch.setenv("KSTREAM_NOTEBOOKS_DIR", str(ROOT / "notebooks"))
    return Settings()


def outputs(path: str) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(
        o.get("text", "") + json.dumps(o.get("data", {}))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )


def test_explore_reads_exactly_the_whole_topic_and_records_it(nb_settings, seeded):
    run = run_notebook(nb_settings, "01_explore_topics", {"topic": "orders_enriched"})
    assert run.status == "succeeded", run.error
    truth = seeded["truth"]
    n = truth.filter(pl.col("kind") != "poison").height
    text = outputs(run.output_ipynb)
    assert f"{n} records" in text
    assert f"in the range is unique ({n} records, {n} keys)" in text  # order ids: skew by customer instead
    assert "customer_id" in text and "decimal[38,2]" in text and " UTC" in text  # readable()
    assert "vega-lite" in text  # the interactive chart
    highs = {str(r["partition"]): r["high"] for r in topic_overview("orders_enriched", nb_settings).to_dicts()}
    ranges = run.lineage["topics"]["orders_enriched"]
    assert {p: r for p, r in ranges.items()} == {p: [[0, h]] for p, h in highs.items()}
    assert run.lineage["schema_ids"], "the Avro schema id read is recorded"
    row = runlog.get_run(nb_settings, run.run_id)
    assert json.loads(row["lineage"]) == run.lineage and row["status"] == "succeeded"


def test_backtest_notebook_finds_zero_diffs_and_plots(nb_settings, seeded):
    run = run_notebook(nb_settings, "02_replay_backtest", {})
    assert run.status == "succeeded", run.error
    text = outputs(run.output_ipynb)
    assert "verdict: MATCH (0 mismatching window(s))" in text
    assert "image/png" in text
    finals = sum(v["final"] for v in seeded["expected"].values())
    assert f"{finals:,} live final windows" in text


def redriven_counts(settings) -> tuple[int, int]:
    """(ledger entries, records on orders_raw that carry the re-drive header)."""
    from kstream_lab.triage.dlq import header

    ledger = kstream_lab.replay("orders_dlq_redriven", value_format="raw", settings=settings)
    raw = kstream_lab.replay("orders_raw", value_format="raw", settings=settings)
    marked = raw.filter(header("kstream.redrive.of").is_not_null())
    return ledger.height, marked.height


def test_dlq_notebook_groups_and_redrives_once(nb_settings, seeded):
    poison = seeded["truth"].filter(pl.col("kind") == "poison").height
    late = seeded["truth"].filter(pl.col("kind") == "late").height
    run = run_notebook(nb_settings, "03_dlq_triage", {})
    assert run.status == "succeeded", run.error
    text = outputs(run.output_ipynb)
    assert f"{poison} dead letters" in text and f"{late} late events" in text
    assert "would-redrive" in text
    first = run_notebook(nb_settings, "03_dlq_triage", {"dry_run": False, "redrive_error_class": None})
    assert first.status == "succeeded", first.error
    assert redriven_counts(nb_settings) == (poison, poison)
    again = run_notebook(nb_settings, "03_dlq_triage", {"dry_run": False, "redrive_error_class": None})
    assert again.status == "succeeded", again.error
    assert "already-redriven" in outputs(again.output_ipynb)
    assert redriven_counts(nb_settings) == (poison, poison), "a dead letter was re-driven twice"


def hopping_late(truth: pl.DataFrame, size: int, advance: int, grace: int, min_cents: int) -> int:
    """Independently of both engines: a record the filter keeps (total_cents >= min_cents) is late for
    a hopping window spec when the last window that holds it (starting at its time rounded down to
    ``advance``) closed before it came; every decodable record moves the watermark, filtered or not."""
    late = 0
    decodable = truth.filter(pl.col("kind") != "poison")
    for (_p,), part in decodable.group_by(["partition"], maintain_order=True):
        watermark = None
        for ts, cents in zip(part["timestamp"], part["total_cents"], strict=True):
            if watermark is not None and cents >= min_cents and ts - ts % advance + size + grace <= watermark:
                late += 1
            watermark = ts if watermark is None else max(watermark, ts)
    return late


def test_new_aggregation_notebook_previews_sweeps_compares_and_saves(nb_settings, seeded, tmp_path):
    from kstream_lab.pipeline_spec import load_pipeline

    run = run_notebook(nb_settings, "04_new_aggregation", {"save_dir": str(tmp_path)})
    assert run.status == "succeeded", run.error
    text = outputs(run.output_ipynb)
    assert "ConfigError aggregation 'typo': metrics.n.cnt: unknown key" in text
    truth = seeded["truth"]
    lates = {}
    for grace, grace_ms in (("0s", 0), ("2s", 2_000), ("10s", 10_000), ("60s", 60_000), ("120s", 120_000)):
        lates[grace] = hopping_late(truth, 20_000, 5_000, grace_ms, 5000)
        assert f"window 20s grace {grace}: late {lates[grace]:,}, final windows" in text, (grace, lates[grace])
    assert lates["0s"] > lates["120s"], lates  # the late orders of the truth are a minute or more late
    assert "big_orders_20s over p0=[0," in text and "vega-lite" in text
    assert "verdict: MATCH" in text and "what-if window 20s grace 2s (live: 60s / 10s)" in text
    saved = load_pipeline(tmp_path / "orders_big_orders.yaml")
    assert saved.workers.aggregator.aggregation == "big_orders_20s"
    spec = saved.aggregation("big_orders_20s")
    assert (spec.window.type, spec.window.size_ms, spec.filter) == ("hopping", 20_000, "total_cents >= 5000")
    preview = kstream_lab.preview(spec, settings=nb_settings)  # the saved spec reproduces the notebook's figures
    assert f"{preview.late.height:,} late records" in text


def test_nbval_runs_every_notebook(seeded, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # set by `import streamlit`
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-p",
            "no:cacheprovider",
            "-q",
            "-o",
            "addopts=",
            "--rootdir",
            str(tmp_path),
            *map(str, sorted(Path(ROOT, "notebooks").glob("*.ipynb"))),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " failed" not in res.stdout.splitlines()[-1]
