"""papermill runs with lineage in the run log; the scheduler runs due jobs and keeps going."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from kstream_lab.errors import ConfigError
from kstream_lab.notebooks import runlog
from kstream_lab.notebooks.runner import rerun_parameters, run_notebook
from kstream_lab.notebooks.schedules import Scheduler, load_schedules
from kstream_lab.settings import Settings

READER = """
from kstream_lab.lineage import RangeRead, record_reads
from kstream_lab.settings import Settings
record_reads(Settings(), [RangeRead(topic, 0, 5, 17, 12, [3]), RangeRead(topic, 1, 0, 4, 4, [3]),
                          RangeRead(topic, 0, 17, 20, 3, [4])])
assert n == 3, n
"""


def write_nb(path: Path, params: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def nb_settings(tmp_path, monkeypatch) -> Settings:
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    write_nb(nbdir / "reader.ipynb", 'topic = "orders_raw"\nn = 1', READER)
    write_nb(nbdir / "boom.ipynb", "x = 1", "raise RuntimeError(f'broken on purpose {x}')")
    write_nb(nbdir / "slow.ipynb", "s = 3", "import time; time.sleep(s)")
    for key, value in {
        "KSTREAM_DATA_DIR": tmp_path / "data",
        "KSTREAM_REPORTS_DIR": tmp_path / "reports",
        "KSTREAM_NOTEBOOKS_DIR": nbdir,
    }.items():
        monkeypatch.setenv(key, str(value))
    return Settings()


def test_run_records_outputs_parameters_and_lineage(nb_settings):
    run = run_notebook(nb_settings, "reader", {"n": 3, "topic": "orders_enriched"})
    assert run.status == "succeeded", run.error
    executed = json.loads(Path(run.output_ipynb).read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])
    assert Path(run.output_html).read_text().startswith("<!DOCTYPE html>")
    assert run.lineage == {"topics": {"orders_enriched": {"0": [[5, 20]], "1": [[0, 4]]}}, "schema_ids": [3, 4]}
    row = runlog.get_run(nb_settings, run.run_id)
    assert row["status"] == "succeeded" and json.loads(row["parameters"]) == {"n": 3, "topic": "orders_enriched"}
    assert json.loads(row["lineage"]) == run.lineage and row["git_commit"]
    again = rerun_parameters(row)
    assert json.loads(again["start"]) == {"0": 5, "1": 0} and json.loads(again["end"]) == {"0": 20, "1": 4}


def test_figures_render_even_if_the_caller_forced_a_headless_backend(nb_settings, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # what `import streamlit` does to its process
    nb = nb_settings.notebooks_dir / "plot.ipynb"
    write_nb(nb, "n = 2", "import matplotlib.pyplot as plt\nplt.plot(range(n))\nplt.show()")
    run = run_notebook(nb_settings, "plot")
    assert run.status == "succeeded", run.error
    outputs = json.loads(Path(run.output_ipynb).read_text())["cells"][-1]["outputs"]
    assert [o["output_type"] for o in outputs] == ["display_data"] and "image/png" in outputs[0]["data"]
    assert os.environ["MPLBACKEND"] == "Agg"


def test_failed_notebook_is_recorded_with_its_error(nb_settings):
    run = run_notebook(nb_settings, "boom", {"x": 7})
    assert run.status == "failed" and run.error == "RuntimeError: broken on purpose 7"
    assert runlog.get_run(nb_settings, run.run_id)["error"] == "RuntimeError: broken on purpose 7"
    assert Path(run.output_ipynb).exists()


def test_bad_names_and_parameters_are_user_errors(nb_settings):
    with pytest.raises(ConfigError, match="no notebook named 'nope'.*known: boom, reader, slow"):
        run_notebook(nb_settings, "nope")
    with pytest.raises(ConfigError, match="reader has no parameter\\(s\\) colour"):
        run_notebook(nb_settings, "reader", {"colour": "red"})


def test_cli_run_and_runs(nb_settings):
    cmd = [sys.executable, "-m", "kstream_lab", "notebooks"]
    res = subprocess.run([*cmd, "run", "reader", "-p", "n", "3", "-p", "topic=t1"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "succeeded" in res.stdout and "read t1: p0[[5, 20]] p1[[0, 4]]" in res.stdout
    res = subprocess.run([*cmd, "run", "boom"], capture_output=True, text=True)
    assert res.returncode == 1 and "RuntimeError: broken on purpose 1" in res.stderr
    res = subprocess.run([*cmd, "runs", "--json"], capture_output=True, text=True)
    assert [r["status"] for r in json.loads(res.stdout)] == ["failed", "succeeded"]


def test_scheduler_runs_due_jobs_records_failures_and_never_overlaps(nb_settings, tmp_path):
    sched_file = tmp_path / "schedules.yaml"
    sched_file.write_text(
        "jobs:\n"
        "  good: {cron: '* * * * * */4', notebook: reader, parameters: {n: 3}}\n"
        "  bad: {cron: '* * * * * */4', notebook: boom}\n"
        "  slow: {cron: '* * * * * *', notebook: slow, parameters: {s: 6}}\n"
    )
    sched = Scheduler(nb_settings, load_schedules(sched_file), sched_file)
    sched.run(duration_s=18, poll_s=0.2)
    runs = runlog.list_runs(nb_settings, limit=1000)
    by_job = {j: runs.filter(runs["job"] == j) for j in ("good", "bad", "slow")}
    assert set(by_job["good"]["status"]) <= {"succeeded", "skipped"}
    assert set(by_job["bad"]["status"]) <= {"failed", "skipped"}
    failed = by_job["bad"].filter(by_job["bad"]["status"] == "failed").sort("started_at").row(0, named=True)
    failed_end = failed["started_at"].timestamp() + failed["duration_s"]
    good_after = [
        r
        for r in by_job["good"].iter_rows(named=True)
        if r["status"] == "succeeded" and r["started_at"].timestamp() >= failed_end
    ]
    assert good_after, "the scheduler kept running jobs after a failure"
    slow = by_job["slow"]
    assert "skipped" in set(slow["status"]) and slow.filter(slow["status"] == "succeeded").height >= 1
    done = slow.filter(slow["status"] != "skipped").sort("started_at").iter_rows(named=True)
    spans = [(r["started_at"].timestamp(), r["started_at"].timestamp() + r["duration_s"]) for r in done]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), spans


def test_misfire_policy_coalesces_within_grace(nb_settings, tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("jobs:\n  hourly: {cron: '0 * * * *', notebook: reader, misfire_grace: 30m}\n")
    sched = load_schedules(f)
    now = time.time()
    due = sched.jobs["hourly"].prev_before(now)
    runlog.save(nb_settings, runlog.RunRecord("old", "reader", {}, due - 3600, "succeeded", job="hourly"))
    assert Scheduler(nb_settings, sched, f).start(due + 60) == ["hourly"]  # missed 1 min ago
    assert Scheduler(nb_settings, sched, f).start(due + 3599) == []  # missed 59 min ago
    runlog.save(nb_settings, runlog.RunRecord("new", "reader", {}, due + 1, "succeeded", job="hourly"))
    assert Scheduler(nb_settings, sched, f).start(due + 60) == []  # it did run


def test_bad_schedule_file(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("jobs:\n  x: {cron: 'every day', notebook: a, colour: 1}\n")
    expected = "jobs.x.cron: Value error, not a cron expression.*jobs.x.colour: unknown key"
    with pytest.raises(ConfigError, match=expected):
        load_schedules(f)


def test_lab_serves_jupyterlab_with_the_kernel_registered(nb_settings, tmp_path):
    import httpx

    from kstream_lab.processes import port_free
    from tests.support.paths import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kstream_lab", "lab", "--no-browser", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        answer = None
        while time.monotonic() < deadline and answer is None:
            assert proc.poll() is None, "jupyter lab exited"
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.5)
        assert answer is not None and answer.status_code == 200 and "version" in answer.json()
        assert httpx.get(f"http://127.0.0.1:{port}/lab", timeout=5).status_code in (200, 302)  # 302: token login
        spec = json.loads((Path(sys.prefix) / "share/jupyter/kernels/python3/kernel.json").read_text())
        assert spec["argv"][0] == sys.executable and spec["display_name"] == "kstream_lab (.venv)"
    finally:
        proc.terminate()
        proc.wait(30)
    assert port_free(port), "JupyterLab outlived `kstream-lab lab` (orphaned server)"
