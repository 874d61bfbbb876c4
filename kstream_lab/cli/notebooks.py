"""`kstream-lab notebooks ...`, `kstream-lab schedule ...` and `kstream-lab lab`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer
import yaml

from kstream_lab.cli.common import settings
from kstream_lab.notebooks import runlog
from kstream_lab.notebooks.runner import notebook_parameters, rerun_parameters, run_notebook
from kstream_lab.notebooks.schedules import Scheduler, job, load_schedules, run_job

app = typer.Typer(no_args_is_help=True, help="Run notebooks with papermill and see past runs.")
schedule_app = typer.Typer(no_args_is_help=True, help="Scheduled notebook runs (pipelines/schedules.yaml).")

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def _params(args: list[str]) -> dict:
    """Parse ``-p NAME VALUE`` (or ``-p NAME=VALUE``) pairs; VALUE is read as YAML (numbers, lists...)."""
    out, i = {}, 0
    while i < len(args):
        if args[i] not in ("-p", "--parameter"):
            raise typer.BadParameter(f"unexpected argument {args[i]!r}; use -p NAME VALUE")
        if i + 1 < len(args) and "=" in args[i + 1] and not args[i + 1].startswith("="):
            key, _, value = args[i + 1].partition("=")
            i += 2
        elif i + 2 < len(args):
            key, value = args[i + 1], args[i + 2]
            i += 3
        else:
            raise typer.BadParameter("-p needs NAME and VALUE")
        out[key] = yaml.safe_load(value) if value.strip() else value
    return out


def _report(run: runlog.RunRecord) -> None:
    typer.echo(f"run {run.run_id}: {run.status} in {run.duration_s:.1f}s")
    typer.echo(f"  notebook: {run.output_ipynb}\n  html:     {run.output_html}")
    for topic, parts in (run.lineage or {}).get("topics", {}).items():
        ranges = " ".join(f"p{p}{r}" for p, r in parts.items())
        typer.echo(f"  read {topic}: {ranges}")
    if run.error:
        typer.secho(f"  error: {run.error}", err=True)
        raise typer.Exit(1)


@app.command(context_settings=EXTRA)
def run(ctx: typer.Context, name: str, timeout: int = typer.Option(600, help="seconds per cell")) -> None:
    """Execute a notebook (-p NAME VALUE ...) into reports/ (ipynb + html); record the run and its lineage."""
    _report(run_notebook(settings(), name, _params(ctx.args), timeout_s=timeout))


@app.command()
def rerun(run_id: str) -> None:
    """Run a recorded run's notebook again on exactly the offsets it read."""
    s = settings()
    old = runlog.get_run(s, run_id)
    if old is None:
        typer.secho(f"error: no run {run_id!r} (see `kstream-lab notebooks runs`)", err=True)
        raise typer.Exit(2)
    _report(run_notebook(s, old["notebook"], rerun_parameters(old)))


@app.command("list")
def list_cmd() -> None:
    """Notebooks and their parameters."""
    for path in sorted(settings().notebooks_dir.glob("*.ipynb")):
        params = ", ".join(f"{k}={v}" for k, v in notebook_parameters(path).items())
        typer.echo(f"{path.stem:<24} {params}")


@app.command()
def runs(
    notebook: str | None = None,
    job_name: str | None = typer.Option(None, "--job"),
    limit: int = typer.Option(20, min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Recorded runs, newest first."""
    df = runlog.list_runs(settings(), notebook=notebook, job=job_name, limit=limit)
    if as_json:
        typer.echo(json.dumps(df.to_dicts(), default=str, indent=1))
        return
    for r in df.iter_rows(named=True):
        dur = f"{r['duration_s']:.1f}s" if r["duration_s"] is not None else "-"
        typer.echo(
            f"{r['run_id']:<26} {r['notebook']:<22} {r['status']:<9} {dur:>8} {r['job'] or '':<18} "
            f"{(r['error'] or '')[:60]}"
        )


@schedule_app.command("run")
def schedule_run(
    file: Path | None = typer.Option(None, "--file"),
    duration: float | None = typer.Option(None, "--for", help="stop after N seconds"),
) -> None:
    """Long-running scheduler: runs due jobs, records failures and keeps going."""
    s = settings()
    path = file or s.schedules_file
    sched = load_schedules(path)
    typer.echo(f"scheduler: {len(sched.jobs)} job(s) from {path}")
    try:
        Scheduler(s, sched, path).run(duration_s=duration)
    except KeyboardInterrupt:
        typer.echo("scheduler stopped")


@schedule_app.command("once")
def schedule_once(name: str, file: Path | None = typer.Option(None, "--file")) -> None:
    """Run one job now (for cron or a Kubernetes CronJob); exit 1 if the notebook failed."""
    s = settings()
    _report(run_job(s, job(load_schedules(file or s.schedules_file), name)))


@schedule_app.command("list")
def schedule_list(file: Path | None = typer.Option(None, "--file")) -> None:
    """Jobs, their cron expressions and next due time."""
    import time
    from datetime import UTC, datetime

    s = settings()
    for name, j in load_schedules(file or s.schedules_file).jobs.items():
        nxt = datetime.fromtimestamp(j.next_after(time.time()), UTC).isoformat(timespec="seconds")
        typer.echo(f"{name:<22} {j.cron:<16} {j.notebook:<22} next {nxt}")


def lab_cmd(port: int = typer.Option(8888), no_browser: bool = typer.Option(False, "--no-browser")) -> None:
    """Open JupyterLab on notebooks/ with this environment's kernel registered."""
    s = settings()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ipykernel",
            "install",
            "--sys-prefix",
            "--name",
            "python3",
            "--display-name",
            "kstream_lab (.venv)",
        ],
        check=True,
        capture_output=True,
    )
    cmd = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={s.notebooks_dir}", f"--port={port}"]
    if no_browser:
        cmd.append("--no-browser")
    if os.geteuid() == 0:  # containers and CI machines often run as root; Jupyter refuses without this
        cmd.append("--allow-root")
    sys.stdout.flush()
    # exec, not a child: a SIGTERM to this process then reaches JupyterLab itself (a child would be
    # left running, orphaned, when this process is terminated).
    os.execv(sys.executable, cmd)
