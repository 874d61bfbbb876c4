"""`kstream-lab registry ...`: the local schema registry (Confluent REST API over `_schemas`)."""

from __future__ import annotations

import time

import typer

from kstream_lab.cli.common import settings, show_log, stop_and_report
from kstream_lab.local_registry import LocalRegistry

app = typer.Typer(no_args_is_help=True, help="Run the local schema registry (persisted in the `_schemas` topic).")


@app.command()
def up(timeout: float = typer.Option(60.0, help="seconds to wait for readiness")) -> None:
    """Start the registry in the background (needs the broker); it restores its state from `_schemas`."""
    s = settings()
    registry = LocalRegistry(s)
    t0 = time.monotonic()
    url = registry.up(timeout=timeout)
    typer.echo(f"registry up at {url} (pid {registry.pid()}, {time.monotonic() - t0:.1f}s, log {registry.log_file})")
    if s.schema_registry_url and s.registry_url != url:
        typer.echo(f"note: KSTREAM_SCHEMA_REGISTRY_URL={s.registry_url}, so clients use that registry, not this one")


@app.command()
def down(timeout: float = typer.Option(15.0, help="seconds to wait before SIGKILL")) -> None:
    """Stop the registry (its data stays in the `_schemas` topic)."""
    stop_and_report(LocalRegistry(settings()).process, timeout)


@app.command()
def status() -> None:
    """pid, URL, subjects; exit 1 when not running."""
    st = LocalRegistry(settings()).status()
    typer.echo(f"running:  {'yes' if st.running else 'no'}" + (f" (pid {st.pid})" if st.pid else ""))
    typer.echo(f"url:      {st.url}")
    typer.echo(f"subjects: {', '.join(st.subjects) if st.subjects else '-'}")
    typer.echo(f"log:      {st.log_file}")
    if not st.running:
        raise typer.Exit(1)


@app.command()
def logs(lines: int = typer.Option(50, "-n", min=1), follow: bool = typer.Option(False, "-f")) -> None:
    """Show the end of the registry log."""
    show_log(LocalRegistry(settings()).process, lines, follow)
