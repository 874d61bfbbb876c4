"""`kstream-lab schemas ...`: register, list and check Avro schemas against the registry.

Works with any Confluent-compatible registry (KSTREAM_SCHEMA_REGISTRY_URL); the subject of a topic's
values is ``<topic>-value`` (TopicNameStrategy), as confluent-kafka's serializers use.
"""

from __future__ import annotations

from pathlib import Path

import typer

from kstream_lab.cli.common import PipelineOpt, pipeline, settings
from kstream_lab.errors import ConfigError
from kstream_lab.kafka.schema_registry import SchemaRegistry
from kstream_lab.schemas.catalog import read_schema_file, topic_schemas

app = typer.Typer(no_args_is_help=True, help="Register, list and check Avro schemas (pipelines/schemas/*.avsc).")


@app.command()
def register(
    file: Path | None = typer.Argument(None, help="an .avsc file; registered for every topic declaring its record"),
    all_: bool = typer.Option(False, "--all", help="every Avro topic of the pipeline file"),
    subject: str | None = typer.Option(None, "--subject", help="register FILE under this subject instead"),
    pipeline_file: Path | None = PipelineOpt,
) -> None:
    """Register schemas under ``<topic>-value``; idempotent (same schema -> same version and id)."""
    s = settings()
    if (file is None) == (not all_):
        raise ConfigError("give either an .avsc FILE or --all", hint="e.g. `kstream-lab schemas register --all`")
    if file is not None and subject:
        pairs = [(subject, read_schema_file(file))]
    else:
        pairs = topic_schemas(s, pipeline(pipeline_file))
        if file is not None:
            wanted = read_schema_file(file)
            pairs = [(subj, wanted) for subj, sf in pairs if sf.full_name == wanted.full_name]
            if not pairs:
                raise ConfigError(
                    f"no topic declares schema {wanted.name} ({file})", hint="pass --subject to register it anyway"
                )
    registry = SchemaRegistry(s)
    for subj, sf in pairs:
        before = registry.lookup(subj, sf.text)
        reg = before or registry.register(subj, sf.text)
        state = "unchanged" if before else "registered"
        typer.echo(f"{state:<10} {subj:<32} version {reg.version:<3} id {reg.schema_id:<4} {sf.path}")


@app.command("list")
def list_cmd() -> None:
    """Subjects with every version and its schema id."""
    registry = SchemaRegistry(settings())
    subjects = registry.subjects()
    typer.echo(f"{'subject':<40} {'version':>7} {'id':>5}")
    for subj in subjects:
        for number in registry.versions(subj):
            typer.echo(f"{subj:<40} {number:>7} {registry.version(subj, number).schema_id:>5}")
    if not subjects:
        typer.echo(f"(no subjects in {registry.url})")


@app.command()
def check(
    file: Path = typer.Argument(..., help="the candidate .avsc"),
    subject: str = typer.Option(..., "--subject", help="e.g. orders_raw-value"),
) -> None:
    """Is FILE compatible with the subject's latest version under its compatibility level? Exit 0/1."""
    sf = read_schema_file(file)
    registry = SchemaRegistry(settings())
    problems = registry.check_compatibility(subject, sf.text)
    if not problems:
        typer.echo(f"compatible: {file} can be registered under {subject}")
        return
    typer.echo(f"INCOMPATIBLE: {file} cannot be registered under {subject}:")
    for p in problems:
        typer.echo(f"  - {p}")
    raise typer.Exit(1)
