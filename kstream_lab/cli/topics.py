"""`kstream-lab topics ...`: topics as code."""

from __future__ import annotations

from pathlib import Path

import typer

from kstream_lab.cli.common import pipeline, settings
from kstream_lab.kafka.admin import describe_topic, list_topics, ping
from kstream_lab.kafka.topics import apply_topics, plan_changes

app = typer.Typer(no_args_is_help=True, help="Create, inspect and describe topics.")


@app.command()
def apply(
    file: Path = typer.Argument(..., help="pipelines/*.yaml"),
    force: bool = typer.Option(False, help="allow delete+recreate to shrink partitions (loses data)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="only print what would change"),
) -> None:
    """Create or update the file's topics idempotently; print what changed."""
    spec = pipeline(file)
    s = settings()
    ping(s)
    specs = list(spec.topics.values())
    changes = plan_changes(s, specs, force=force) if dry_run else apply_topics(s, specs, force=force)
    for change in changes:
        typer.echo(str(change))
    changed = sum(c.action != "unchanged" for c in changes)
    typer.echo(f"{changed} change(s){' planned' if dry_run else ''}, {len(changes) - changed} unchanged")


@app.command("list")
def list_cmd(internal: bool = typer.Option(False, help="include __internal topics")) -> None:
    """Topics and partition counts."""
    s = settings()
    ping(s)
    for name, parts in list_topics(s, include_internal=internal).items():
        typer.echo(f"{name:<40} {parts:>3} partitions")


@app.command()
def describe(name: str) -> None:
    """Partitions, low/high watermarks, message counts, consumer groups with lag."""
    s = settings()
    ping(s)
    d = describe_topic(s, name)
    typer.echo(f"topic {d.name}: {len(d.partitions)} partitions, {d.messages} messages")
    typer.echo("  config: " + ", ".join(f"{k}={v}" for k, v in sorted(d.config.items())))
    typer.echo(f"  {'partition':>9} {'low':>10} {'high':>10} {'messages':>10}")
    for p in d.partitions:
        typer.echo(f"  {p.partition:>9} {p.low:>10} {p.high:>10} {p.messages:>10}")
    for g in d.groups:
        lag = " ".join(f"p{p}={n}" for p, n in sorted(g.lag.items()))
        typer.echo(f"  group {g.group}: lag {g.total_lag} ({lag})")
    if not d.groups:
        typer.echo("  no consumer group has committed offsets on this topic")
