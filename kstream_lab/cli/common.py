"""Helpers shared by the CLI modules: settings and the pipeline file."""

from __future__ import annotations

from pathlib import Path

import typer

from kstream_lab.pipeline_spec import PipelineSpec, load_pipeline
from kstream_lab.settings import Settings, get_settings

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


def ensure_local_registry(s: Settings) -> None:
    """Start the embedded schema registry when it is the one configured (no KSTREAM_SCHEMA_REGISTRY_URL)
    and not running, as users of the local default expect; a real registry is used as configured."""
    if s.schema_registry_url is not None:
        return
    from kstream_lab.registry import LocalRegistry

    registry = LocalRegistry(s)
    if registry.pid() is None:
        typer.echo(f"schema registry up at {registry.up()}")
