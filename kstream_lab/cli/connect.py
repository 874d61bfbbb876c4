"""`kstream-lab connect ...`: the local Kafka Connect worker and its connectors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
import yaml

from kstream_lab.cli.common import settings, show_log, stop_and_report
from kstream_lab.connect import ConnectClient, LocalConnect, fetch_connect
from kstream_lab.errors import ConfigError

app = typer.Typer(no_args_is_help=True, help="Run a local Kafka Connect worker (distributed mode) and its connectors.")


@app.command()
def fetch() -> None:
    """Fetch the Connect jars and plugins with Maven and build kstream_lab's converter (idempotent)."""
    home = fetch_connect(settings().kafka_cache_dir, quiet=True)
    typer.echo(f"kafka connect jars and plugins in {home}")


@app.command()
def up(timeout: float = typer.Option(180.0, help="seconds to wait for readiness")) -> None:
    """Start the worker in the background (needs the broker); it resumes its connectors from Kafka."""
    worker = LocalConnect(settings())
    t0 = time.monotonic()
    url = worker.up(timeout=timeout)
    typer.echo(f"connect up at {url} (pid {worker.pid()}, {time.monotonic() - t0:.1f}s, log {worker.log_file})")


@app.command()
def down(timeout: float = typer.Option(30.0, help="seconds to wait before SIGKILL")) -> None:
    """Stop the worker (its connectors, configs and offsets stay in Kafka)."""
    stop_and_report(LocalConnect(settings()).process, timeout)


@app.command()
def status() -> None:
    """pid, REST URL, Kafka version and each connector's state; exit 1 when no worker answers."""
    st = LocalConnect(settings()).status()
    if st.running:
        typer.echo(f"running:    yes (pid {st.pid})")
    else:
        typer.echo("running:    " + ("not from this data dir, but the REST API answers" if st.answers else "no"))
    typer.echo(f"url:        {st.url}")
    typer.echo(f"version:    {st.version or '-'}")
    if st.connectors:
        for name, state in sorted(st.connectors.items()):
            typer.echo(f"connector:  {name}: {state}")
    else:
        typer.echo("connectors: -")
    typer.echo(f"log:        {st.log_file}")
    if not st.answers:
        raise typer.Exit(1)


@app.command()
def logs(lines: int = typer.Option(50, "-n", min=1), follow: bool = typer.Option(False, "-f")) -> None:
    """Show the end of the worker log."""
    show_log(LocalConnect(settings()).process, lines, follow)


def connector_file(path: Path) -> dict[str, dict[str, str]]:
    """A connector file: ``{name, config}`` (Connect's own JSON), a list of those, or ``connectors:
    {name: config}`` (YAML or JSON). Returns name -> config."""
    try:
        data: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", hint="pass a connector file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid JSON or YAML: {exc}", hint="fix the file") from None
    items: list[Any]
    if isinstance(data, dict) and isinstance(data.get("connectors"), dict):
        items = [{"name": name, "config": cfg} for name, cfg in data["connectors"].items()]
    else:
        items = data if isinstance(data, list) else [data]
    out: dict[str, dict[str, str]] = {}
    for i, item in enumerate(items):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("config"), dict)
            or not all(isinstance(v, str | int | float | bool) for v in item["config"].values())
        ):
            raise ConfigError(
                f"{path}: connector {i + 1} must be {{name: ..., config: {{key: value, ...}}}} with scalar values",
                hint="use Connect's own POST /connectors body, a list of them, or connectors: {NAME: {...}}",
            )
        if "connector.class" not in item["config"]:
            raise ConfigError(f"{path}: connector {item['name']!r} has no connector.class", hint="add it")
        out[item["name"]] = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in item["config"].items()}
    return out


@app.command()
def apply(
    file: Path = typer.Argument(
        ..., help="a connector file (JSON/YAML), or a pipeline file with workers.sink.kind: connect"
    ),
    wait: float = typer.Option(60.0, help="seconds to wait for each connector to run (0: do not wait)"),
    show: bool = typer.Option(False, "--show", help="print each connector's config (secrets hidden)"),
) -> None:
    """Create or update connectors through the REST API, idempotently (an equal config is not re-sent).

    A pipeline file (one with `pipeline:`) applies its sink connector: the PostgreSQL table (with
    the trigger keeping finals final) is created first, then Debezium's JDBC sink is configured
    from `workers.sink`.
    """
    from kstream_lab.connect.sink import apply_sink, redacted, sink_connector
    from kstream_lab.pipeline_spec import load_pipeline

    s = settings()
    client = ConnectClient(s.connect_rest_url)
    head = yaml.safe_load(file.read_text()) if file.exists() else None
    if isinstance(head, dict) and "pipeline" in head:
        spec = load_pipeline(file)
        sink = spec.workers.sink
        if sink.kind != "connect":
            raise ConfigError(
                f"{file}: workers.sink.kind is {sink.kind!r}, so the pipeline has no Connect sink",
                hint="set workers.sink.kind: connect (and a postgresql:// target)",
            )
        if show:
            typer.echo(json.dumps(redacted(sink_connector(s, sink)), indent=2))
        outcome = apply_sink(s, spec, client, wait=wait)
        typer.echo(f"{sink.connector_name}: {outcome}" + (" (running)" if wait else ""))
        return
    for name, config in connector_file(file).items():
        if show:
            typer.echo(json.dumps(redacted(config), indent=2))
        outcome = client.apply(name, config)
        if wait:
            client.wait_running(name, wait)
        typer.echo(f"{name}: {outcome}" + (" (running)" if wait else ""))
