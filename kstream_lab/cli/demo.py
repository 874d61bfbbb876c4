"""`kstream-lab demo`: the main job. Broker, registry, topics, generated orders, a topic summary."""

from __future__ import annotations

from pathlib import Path

import typer

from kstream_lab.broker import LocalBroker
from kstream_lab.cli.common import pipeline, settings
from kstream_lab.cli.topics import describe
from kstream_lab.generator.produce import produce_orders
from kstream_lab.kafka.topics import apply_topics
from kstream_lab.registry import LocalRegistry
from kstream_lab.schemas.serde import value_serializer


def demo_cmd(
    count: int = typer.Option(20_000, "--count", min=0),
    seed: int = typer.Option(1, "--seed"),
    pipeline_file: Path | None = typer.Option(None, "--pipeline", "-P"),
) -> None:
    """Start the local broker and registry if needed, apply the topics, produce Avro orders, summarise."""
    s = settings()
    if s.uses_local_broker:
        broker = LocalBroker(s)
        if broker.pid() is None:
            typer.echo(f"kafka up at {broker.up()}")
    if s.schema_registry_url is None:  # the local registry; a real one is used as configured
        registry = LocalRegistry(s)
        if registry.pid() is None:
            typer.echo(f"schema registry up at {registry.up()}")
    if pipeline_file is not None:  # schemas are read next to the pipeline file
        s = s.model_copy(update={"pipeline_file": pipeline_file})
    spec = pipeline(pipeline_file)
    for change in apply_topics(s, list(spec.topics.values())):
        typer.echo(str(change))
    raw = spec.topic("orders_raw")
    summary = produce_orders(s, raw, value_serializer(s, raw), spec.aggregation().window, count=count,
                             seed=seed, late_fraction=0.01, poison_fraction=0.005)
    for line in summary.lines():
        typer.echo(line)
    describe("orders_raw")
