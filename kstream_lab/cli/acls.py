"""`kstream-lab acls apply|list`: the pipeline's principals and ACLs as code (docs/security.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from kstream_lab.acls import derive_acls
from kstream_lab.cli.common import pipeline, settings
from kstream_lab.kafka.acls import apply_acls, list_acls
from kstream_lab.kafka.admin import ping

app = typer.Typer(no_args_is_help=True, help="Grant each service exactly what the pipeline file declares.")


@app.command()
def apply(
    file: Path = typer.Argument(..., help="pipelines/*.yaml"),
    force: bool = typer.Option(False, help="also remove the file's principals' ACLs it no longer declares"),
) -> None:
    """Create the ACLs the file's principals need, idempotently; print what changed."""
    spec = pipeline(file)
    s = settings()
    ping(s)
    changes = apply_acls(s, derive_acls(spec, s.connect_group_id), force=force)
    for b in changes.created:
        typer.echo(f"created  {b}")
    for b in changes.removed:
        typer.echo(f"removed  {b}")
    for b in changes.undeclared:
        typer.echo(f"kept     {b} (not declared; --force removes it)")
    typer.echo(
        f"{len(changes.created)} created, {len(changes.removed)} removed, "
        f"{len(changes.undeclared)} undeclared kept, {changes.unchanged} unchanged"
    )


@app.command("list")
def list_cmd(principal: str | None = typer.Option(None, help="only this principal, e.g. User:analyst")) -> None:
    """The cluster's ALLOW ACLs, one per line."""
    s = settings()
    ping(s)
    found = list_acls(s, principal)
    for b in found:
        typer.echo(str(b))
    if not found:
        typer.echo("(no ACLs)")
