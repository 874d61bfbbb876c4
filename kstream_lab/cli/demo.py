"""`kstream-lab demo`: the main job. Broker, topics, generated orders, a topic summary."""

from __future__ import annotations

from pathlib import Path

import typer

from kstream_lab.broker import LocalBroker
from kstream_lab.cli.common import pipeline, settings
from kstream_lab.cli.topics import describe
from kstream_lab.generator.produce import produce_orders
from kstream_lab.kafka.topics import apply_topics
from kstream_lab.schemas.serde import value_serializer


def demo_cmd(
    count: int = typer.Option(20_000, "--count", min=0),
    seed: int = typer.Option(1, "--seed"),
    pipeline_file: Path | None = typer.Option(None, "--pipeline", "-P"),
) -> None:
    """Start the local broker if needed, apply the topics, produce orders and summarise the topic."""
    s = settings()
    if s.uses_local_broker:
        broker = LocalBroker(s)
        if broker.pid() is None:
            typer.echo(f"kafka up at {broker.up()}")
    spec = pipeline(pipeline_file)
    for change in apply_topics(s, list(spec.topics.values())):
        typer.echo(str(change))
    raw = spec.topic("orders_raw")
    summary = produce_orders(s, raw, value_serializer(s, raw), spec.aggregation().window, count=count,
                             seed=seed, late_fraction=0.01, poison_fraction=0.005)
    for line in summary.lines():
        typer.echo(line)
    describe("orders_raw")
