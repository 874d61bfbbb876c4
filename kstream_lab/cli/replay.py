"""`kstream-lab replay TOPIC --from X --to Y [--out DIR]`: a bounded range to the terminal or to Parquet."""

from __future__ import annotations

from pathlib import Path

import typer

from kstream_lab.cli.common import settings


def replay_cmd(
    topic: str = typer.Argument(..., help="topic to read"),
    start: str = typer.Option("earliest", "--from", help="offset, '@<epoch ms>', ISO time, '15m ago', earliest"),
    end: str = typer.Option("latest", "--to", help="exclusive end: same forms as --from, or latest"),
    partitions: list[int] | None = typer.Option(None, "--partition", "-p", help="repeatable; default: all"),
    value_format: str = typer.Option("auto", "--format", help="auto, json, avro, json_schema, protobuf or raw"),
    out: Path | None = typer.Option(None, "--out", help="write partitioned Parquet here (bounded memory)"),
    chunk_rows: int = typer.Option(500_000, "--chunk-rows", min=1, help="rows per Parquet file"),
    limit: int = typer.Option(20, "--limit", min=0, help="rows to print without --out"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    schema_file: Path | None = typer.Option(
        None,
        "--schema",
        exists=True,
        dir_okay=False,
        help='JSON values: a file {"field": "Int64", ...} fixing the columns',
    ),
) -> None:
    """Read [from, to) of a topic (read_committed, end snapshotted now); print it or export it as Parquet."""
    from kstream_lab.replay.parquet import export_parquet
    from kstream_lab.replay.reader import read_range, resolve_range

    schema = _schema(schema_file) if schema_file is not None else None
    s = settings()
    rng = resolve_range(s, topic, _position(start), _position(end), partitions or None)
    typer.echo(f"range: {rng.describe()}", err=True)
    if out is not None:
        summary = export_parquet(
            s, rng, out, value_format=value_format, chunk_rows=chunk_rows, progress=progress, schema=schema
        )
        typer.echo(summary.line())
        return
    import polars as pl

    df = read_range(s, rng, value_format=value_format, schema=schema)
    with pl.Config(tbl_rows=limit, tbl_cols=-1, fmt_str_lengths=40, tbl_width_chars=200):
        typer.echo(df.drop("topic", "headers").head(limit))
    typer.echo(f"{df.height:,} records")


def _position(text: str) -> str | int | dict[int, int]:
    """CLI positions are text; a partition:offset list ("0:10,1:20") becomes a dict."""
    if ":" in text and all(part.count(":") == 1 and part.replace(":", "").isdigit() for part in text.split(",")):
        return {int(p): int(o) for p, o in (part.split(":") for part in text.split(","))}
    return text


def _schema(path: Path):
    """--schema FILE: field -> dtype name, checked before anything is read."""
    import json

    from kstream_lab.errors import ConfigError
    from kstream_lab.replay.decode import json_schema_from_names

    try:
        names = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"--schema {path}: not JSON ({exc})", hint='write e.g. {"total_cents": "Int64"}') from None
    return json_schema_from_names(names, where=f"--schema {path}")
