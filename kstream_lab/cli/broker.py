"""`kstream-lab broker ...`: the local Apache Kafka."""

from __future__ import annotations

import time

import typer

from kstream_lab.broker import LocalBroker
from kstream_lab.broker.jars import fetch_jars
from kstream_lab.cli.common import human_bytes, settings, show_log, stop_and_report

app = typer.Typer(no_args_is_help=True, help="Run the local single-node Apache Kafka (KRaft).")


@app.command()
def fetch() -> None:
    """Fetch the Kafka jars with Maven into the cache dir (idempotent)."""
    lib = fetch_jars(settings().kafka_cache_dir, quiet=True)
    typer.echo(f"kafka jars in {lib}")


@app.command()
def up(
    timeout: float = typer.Option(90.0, help="seconds to wait for readiness"),
    secure: bool = typer.Option(
        False, "--secure", help="SASL_SSL (SCRAM-SHA-512) with ACLs and a local CA (also KSTREAM_BROKER_SECURE=true)"
    ),
) -> None:
    """Format storage on first start, start the broker in the background, wait until it answers."""
    s = settings()
    broker = LocalBroker(s.model_copy(update={"broker_secure": True}) if secure else s)
    t0 = time.monotonic()
    bootstrap = broker.up(timeout=timeout)
    typer.echo(f"kafka up at {bootstrap} (pid {broker.pid()}, {time.monotonic() - t0:.1f}s, data {broker.home})")
    if broker.secure:
        st = broker.status()
        typer.echo(f"secured: {st.security}; CA {st.ca_file}; super user {st.admin_user}")


@app.command()
def down(timeout: float = typer.Option(30.0, help="seconds to wait before SIGKILL")) -> None:
    """Stop the broker with SIGTERM (controlled shutdown)."""
    stop_and_report(LocalBroker(settings()).process, timeout)


@app.command()
def status() -> None:
    """pid, Kafka version, topics, data dir and its size."""
    st = LocalBroker(settings()).status()
    typer.echo(f"running:   {'yes' if st.running else 'no'}" + (f" (pid {st.pid})" if st.pid else ""))
    typer.echo(f"bootstrap: {st.bootstrap}")
    typer.echo(f"version:   Apache Kafka {st.kafka_version or '(jars not fetched)'}")
    typer.echo(f"data dir:  {st.data_dir} ({human_bytes(st.data_bytes)})")
    typer.echo(f"security:  {st.security}")
    if st.ca_file is not None:
        typer.echo(f"CA file:   {st.ca_file}")
        typer.echo(f"admin:     User:{st.admin_user}")
    typer.echo(f"topics:    {', '.join(st.topics) if st.topics else '-'}")
    if not st.running:
        raise typer.Exit(1)


@app.command()
def logs(lines: int = typer.Option(50, "-n", min=1), follow: bool = typer.Option(False, "-f")) -> None:
    """Show the end of the broker log."""
    show_log(LocalBroker(settings()).process, lines, follow)
