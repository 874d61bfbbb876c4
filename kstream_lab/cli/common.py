"""Helpers shared by the CLI modules: settings, the pipeline file and the background processes' commands."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from kstream_lab.pipeline_spec import PipelineSpec, load_pipeline
from kstream_lab.processes import ManagedProcess, ProcessOwner
from kstream_lab.settings import Settings, get_settings

if TYPE_CHECKING:
    from kstream_lab.local_registry import LocalRegistry

PipelineOpt = typer.Option(None, "--pipeline", "-P", help="pipeline file (default: KSTREAM_PIPELINE_FILE)")


def settings() -> Settings:
    return get_settings()


def pipeline(path: Path | None = None) -> PipelineSpec:
    return load_pipeline(path or settings().pipeline_file)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{n} B"


def ensure_local_registry(s: Settings, *, owner: ProcessOwner | None = None) -> LocalRegistry | None:
    """Start the embedded schema registry when it is the one configured (no KSTREAM_SCHEMA_REGISTRY_URL)
    and not running, as users of the local default expect; a real registry is used as configured.
    Returns the registry when it was started here (``owner`` then stops it at the end)."""
    if s.schema_registry_url is not None:
        return None
    from kstream_lab.local_registry import LocalRegistry

    registry = LocalRegistry(s)
    if registry.pid() is not None:
        return None
    typer.echo(f"schema registry up at {registry.up(owner=owner)}")
    return registry


def stop_and_report(process: ManagedProcess, timeout: float) -> None:
    """`broker down`, `registry down`: stop it, say how; exit 1 when it had to be killed."""
    was = process.pid()
    outcome = process.stop(timeout)
    if outcome == "not running":
        typer.echo(f"{process.name} was not running")
    elif outcome == "stopped":
        typer.echo(f"{process.name} stopped (pid {was})")
    else:
        typer.secho(f"{process.name} (pid {was}) did not stop within {timeout:.0f}s and was killed", err=True)
        raise typer.Exit(1)


def show_log(process: ManagedProcess, lines: int, follow: bool) -> None:
    """`broker logs`, `registry logs`: the last ``lines`` lines, then (``follow``) new ones as they come."""
    typer.echo(process.log_tail(lines))
    if not follow:
        return
    with process.log_file.open() as fh:
        fh.seek(0, 2)
        while True:
            line = fh.readline()
            if line:
                typer.echo(line, nl=False)
            else:
                time.sleep(0.5)
