"""`kstream-lab produce-orders`: the deterministic order generator."""

from __future__ import annotations

from pathlib import Path

import typer

from kstream_lab.cli.common import ensure_local_registry, pipeline, settings
from kstream_lab.generator.produce import produce_orders
from kstream_lab.kafka.admin import ping
from kstream_lab.schemas.serde import value_serializer


def produce_orders_cmd(
    count: int = typer.Option(..., "--count", "-n", min=0, help="number of records"),
    seed: int = typer.Option(..., "--seed", help="same seed, same orders"),
    rate: float | None = typer.Option(None, "--rate", min=0.001, help="records per second (default: max)"),
    late_fraction: float = typer.Option(0.0, "--late-fraction", min=0.0, max=1.0),
    poison_fraction: float = typer.Option(0.0, "--poison-fraction", min=0.0, max=1.0),
    customers: int = typer.Option(10_000, "--customers", min=1),
    truth: Path | None = typer.Option(None, "--truth", help="write the ground truth as Parquet"),
    start_ms: int | None = typer.Option(
        None, "--start-ms", help="event time (epoch ms) of the first order (default: so the last one is now)"
    ),
    topic: str = typer.Option("orders_raw", "--topic"),
    pipeline_file: Path | None = typer.Option(None, "--pipeline", "-P"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Produce realistic orders: skewed customers, log-normal totals in cents, late and poison on request."""
    spec = pipeline(pipeline_file)
    s = settings()
    ping(s)
    tspec = spec.topic(topic)
    if tspec.value_format == "avro":
        ensure_local_registry(s)
    window = spec.aggregation().window
    summary = produce_orders(
        s,
        tspec,
        value_serializer(s, tspec),
        window,
        count=count,
        seed=seed,
        start_ms=start_ms,
        rate=rate,
        late_fraction=late_fraction,
        poison_fraction=poison_fraction,
        customers=customers,
        truth=truth,
        progress=progress,
    )
    for line in summary.lines():
        typer.echo(line)
    if truth:
        typer.echo(f"  truth: {truth}")
