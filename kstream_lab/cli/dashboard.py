"""`kstream-lab dashboard`: serve apps/dashboard.py with Streamlit, pointed at this project's settings.

The page reads the same ``KSTREAM_*`` settings and pipeline file as the workers, so the only thing
to pass on is which pipeline file was chosen here; the Streamlit process replaces this one, so
Ctrl-C and SIGTERM reach it directly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from kstream_lab.cli.common import pipeline
from kstream_lab.errors import ConfigError

DASHBOARD = Path(__file__).resolve().parents[2] / "apps" / "dashboard.py"


def streamlit_command(app: Path, *, port: int, address: str) -> list[str]:
    """The `streamlit run` command line: headless, no usage stats, no file watcher."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "minimal",
    ]


def dashboard_cmd(
    port: int = typer.Option(8501, "--port", "-p", min=1, max=65535, help="HTTP port of the dashboard"),
    address: str = typer.Option("127.0.0.1", "--address", help="interface to listen on"),
    pipeline_file: Path | None = typer.Option(None, "--pipeline", "-P", help="pipeline file the dashboard watches"),
) -> None:
    """Live sales per minute and tier, pipeline health and back-tests in the browser (Streamlit)."""
    if not DASHBOARD.exists():
        raise ConfigError(f"{DASHBOARD} not found", hint="run from a source checkout of kstream_lab")
    spec = pipeline(pipeline_file)  # fail here, in one line, on a bad pipeline file
    env = {**os.environ, "KSTREAM_PIPELINE_FILE": str(Path(spec.path).resolve())}
    typer.echo(f"dashboard: http://{address}:{port}  (Ctrl-C to stop)")
    sys.stdout.flush()
    cmd = streamlit_command(DASHBOARD, port=port, address=address)
    os.execve(cmd[0], cmd, env)
