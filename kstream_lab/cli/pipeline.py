"""`kstream-lab pipeline up|down|status`: the live order pipeline in the background."""

from __future__ import annotations

from pathlib import Path

import typer

from kstream_lab.cli.common import pipeline, settings
from kstream_lab.kafka.admin import ping
from kstream_lab.kafka.topics import apply_topics
from kstream_lab.processes import stop_on_signals
from kstream_lab.workers.components import names
from kstream_lab.workers.supervisor import Supervisor

app = typer.Typer(
    no_args_is_help=True, help="Run the order pipeline's apps and workers in the background (and restart them: watch)."
)
PipelineOpt = typer.Option(None, "--pipeline", "-P", help="pipeline file (default: KSTREAM_PIPELINE_FILE)")


def _supervisor(pipeline_file: Path | None) -> Supervisor:
    s = settings()
    if pipeline_file is not None:
        s = s.model_copy(update={"pipeline_file": pipeline_file})
    return Supervisor(s, pipeline(pipeline_file))


@app.command()
def up(
    pipeline_file: Path | None = PipelineOpt,
    timeout: float = typer.Option(60.0, help="seconds to wait for each component"),
) -> None:
    """Apply the topics, start every component not yet running, wait until each answers."""
    sup = _supervisor(pipeline_file)
    ping(sup.settings)
    for change in apply_topics(sup.settings, list(sup.spec.topics.values())):
        if change.action != "unchanged":
            typer.echo(str(change))
    for st in sup.up(timeout=timeout):
        typer.echo(f"{st.name:<17} pid {st.pid:<7} {st.url}")
    typer.echo(f"logs in {sup.home / 'logs'}")


@app.command()
def down(
    pipeline_file: Path | None = PipelineOpt, timeout: float = typer.Option(10.0, help="seconds to wait before SIGKILL")
) -> None:
    """SIGTERM every component (reverse start order), SIGKILL after the timeout."""
    result = _supervisor(pipeline_file).down(timeout=timeout)
    for name in names():
        typer.echo(f"{name:<17} {result[name]}")
    if "killed" in result.values():
        raise typer.Exit(1)


@app.command()
def watch(
    pipeline_file: Path | None = PipelineOpt,
    interval: float = typer.Option(1.0, help="seconds between checks"),
    timeout: float = typer.Option(60.0, help="seconds to wait for a restarted component"),
) -> None:
    """Stay in the foreground and restart components that die (back-off 1 s doubling to 60 s).

    Ctrl-C, SIGTERM or SIGHUP stops the watching, not the components (`pipeline down` stops those)."""
    sup = _supervisor(pipeline_file)
    stop = stop_on_signals()
    typer.echo(f"watching {', '.join(names())} (logs in {sup.home / 'logs'})")
    sup.watch(stop, interval=interval, timeout=timeout, report=typer.echo)
    typer.echo("stopped watching; the components keep running")


@app.command()
def status(pipeline_file: Path | None = PipelineOpt) -> None:
    """Which components run (pid), where they answer, where they log."""
    statuses = _supervisor(pipeline_file).status()
    for st in statuses:
        state = f"running (pid {st.pid})" if st.running else "stopped"
        typer.echo(f"{st.name:<17} {state:<22} {st.url}  log {st.log}")
    if not all(st.running for st in statuses):
        raise typer.Exit(1)
