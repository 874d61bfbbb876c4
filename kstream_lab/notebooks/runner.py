"""Executing a notebook with papermill into reports/, recording the run and its lineage.

Each run gets an id, an executed .ipynb and an HTML copy under ``reports/<notebook>/``, and a row in
the run log: parameters, timing, status, error, output paths, the offset ranges it read, the
schema ids it saw and the git commit of the code. A failing notebook is recorded as failed, never lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from kstream_lab.errors import ConfigError
from kstream_lab.lineage import load_reads, summarize
from kstream_lab.notebooks import runlog
from kstream_lab.settings import Settings


def resolve_notebook(settings: Settings, name: str) -> Path:
    """``02_replay_backtest``, ``02_replay_backtest.ipynb`` or a path."""
    candidates = [Path(name), settings.notebooks_dir / name, settings.notebooks_dir / f"{name}.ipynb"]
    for c in candidates:
        if c.is_file() and c.suffix == ".ipynb":
            return c
    known = ", ".join(sorted(p.stem for p in settings.notebooks_dir.glob("*.ipynb"))) or "none"
    raise ConfigError(f"no notebook named {name!r} in {settings.notebooks_dir}", hint=f"known: {known}")


def notebook_parameters(path: Path) -> dict[str, str]:
    """The names and default source of the cell tagged ``parameters``."""
    nb = json.loads(path.read_text())
    for cell in nb.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            out = {}
            for line in "".join(cell["source"]).splitlines():
                if "=" in line and not line.lstrip().startswith("#"):
                    key, _, value = line.partition("=")
                    out[key.strip().split(":")[0].strip()] = value.split("#")[0].strip()
            return out
    return {}


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=cwd, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=cwd
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.CalledProcessError):
        return None


@contextmanager
def kernel_environment(lineage_file: Path) -> Iterator[None]:
    """The environment the kernel inherits: where to report lineage, and no inherited plot backend.

    Importing Streamlit (the dashboard, its tests) sets ``MPLBACKEND=Agg`` for the whole process;
    a kernel that inherits it renders no figures, so reports would silently lose their plots.
    Without it, ipykernel chooses its inline backend. Both variables are restored afterwards.
    """
    saved = {k: os.environ.get(k) for k in ("KSTREAM_LINEAGE_FILE", "MPLBACKEND")}
    os.environ["KSTREAM_LINEAGE_FILE"] = str(lineage_file)
    os.environ.pop("MPLBACKEND", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_notebook(
    settings: Settings, name: str, parameters: dict | None = None, *, job: str | None = None, timeout_s: int = 600
) -> runlog.RunRecord:
    """Execute ``name`` with ``parameters``; record and return the run (status succeeded/failed)."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    path = resolve_notebook(settings, name)
    declared = notebook_parameters(path)
    unknown = sorted(set(parameters or {}) - set(declared))
    if unknown:
        raise ConfigError(
            f"{path.stem} has no parameter(s) {', '.join(unknown)}",
            hint=f"its parameters: {', '.join(declared) or 'none'}",
        )
    started = time.time()
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
    run = runlog.RunRecord(
        run_id=f"{stamp}-{uuid.uuid4().hex[:6]}",
        notebook=path.stem,
        parameters=dict(parameters or {}),
        started_at=started,
        job=job,
        git_commit=git_commit(Path(__file__).parent),
    )
    out_dir = settings.reports_dir / path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    out_nb = out_dir / f"{run.run_id}.ipynb"
    run.output_ipynb = str(out_nb)
    runlog.save(settings, run)
    with tempfile.TemporaryDirectory() as tmp:
        lineage_file = Path(tmp) / "lineage.jsonl"
        with kernel_environment(lineage_file):
            try:
                pm.execute_notebook(
                    str(path),
                    str(out_nb),
                    parameters=run.parameters,
                    kernel_name="python3",
                    cwd=str(path.parent.resolve().parent),
                    progress_bar=False,
                    execution_timeout=timeout_s,
                    log_output=False,
                )
                run.status = "succeeded"
            except PapermillExecutionError as exc:
                run.status, run.error = "failed", f"{exc.ename}: {exc.evalue}"
            except Exception as exc:  # kernel died, timeout, bad notebook: record it, never lose the run
                run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
        run.lineage = summarize(load_reads(lineage_file))
    run.output_html = _to_html(out_nb)
    run.duration_s = round(time.time() - started, 3)
    runlog.save(settings, run)
    return run


def _to_html(notebook: Path) -> str | None:
    if not notebook.exists():
        return None
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    html = notebook.with_suffix(".html")
    html.write_text(body)
    return str(html)


def rerun_parameters(run: dict, topic_param: str = "topic") -> dict:
    """Parameters that replay exactly the offsets an earlier run read (for its main topic)."""
    params = json.loads(run["parameters"]) if isinstance(run["parameters"], str) else dict(run["parameters"])
    lineage = json.loads(run["lineage"]) if isinstance(run["lineage"], str) else run["lineage"] or {}
    topics = lineage.get("topics", {})
    topic = params.get(topic_param) or (next(iter(topics)) if len(topics) == 1 else None)
    if topic in topics:
        ranges = topics[topic]
        params["start"] = json.dumps({p: r[0][0] for p, r in ranges.items()})
        params["end"] = json.dumps({p: r[-1][1] for p, r in ranges.items()})
    return params
