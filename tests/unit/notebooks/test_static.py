"""Notebooks are committed clean and stay on kstream_lab's public API."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.paths import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PUBLIC = {"kstream_lab", "kstream_lab.explore", "kstream_lab.triage", "kstream_lab.settings"}
IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", re.M)


def test_the_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == [
        "01_explore_topics",
        "02_replay_backtest",
        "03_dlq_triage",
        "04_new_aggregation",
        "05_live_tail",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_parameterised(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs; clear them before committing"
    assert sum("parameters" in c["metadata"].get("tags", []) for c in code) == 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_uses_only_the_public_api(path):
    src = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    modules = {a or b for a, b in IMPORT.findall(src)}
    ours = {m for m in modules if m.startswith("kstream_lab")}
    assert ours <= PUBLIC, f"{path.name} imports internals: {sorted(ours - PUBLIC)}"
    assert not {m for m in modules if m.startswith("confluent_kafka")}
