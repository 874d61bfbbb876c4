"""`kstream-lab dashboard`: serve the dashboard page with Streamlit, pointed at this project's settings.

The page is :mod:`kstream_lab.services.dashboard`, found inside the installed package (a wheel works
as well as a checkout) without importing it. It reads the same ``KSTREAM_*`` settings and pipeline
file as the workers, so the only thing to pass on is which pipeline file was chosen here; the
Streamlit process replaces this one, so Ctrl-C and SIGTERM reach it directly. The demo runs the same
command in the background (:func:`dashboard_process`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import typer

from kstream_lab.cli.common import pipeline
from kstream_lab.errors import KStreamLabError
from kstream_lab.processes import ManagedProcess, http_probe
from kstream_lab.settings import Settings

PAGE_MODULE = "kstream_lab.services.dashboard"


def page_file() -> Path:
    """The page's file inside the installed package."""
    spec = importlib.util.find_spec(PAGE_MODULE)
    if spec is None or spec.origin is None:
        raise KStreamLabError(f"{PAGE_MODULE} is missing from the installed package", hint="reinstall kstream_lab")
    return Path(spec.origin)


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


def dashboard_process(settings: Settings, pipeline_file: Path, port: int) -> ManagedProcess:
    """`kstream-lab dashboard` in the background, pid file and log beside the pipeline's components."""
    home = settings.data_dir / "pipeline"
    return ManagedProcess(
        "dashboard",
        command=[
            sys.executable,
            "-m",
            "kstream_lab",
            "dashboard",
            "--port",
            str(port),
            "--pipeline",
            str(pipeline_file),
        ],
        pid_file=home / "pids" / "dashboard.pid",
        log_file=home / "logs" / "dashboard.log",
        ready=http_probe(f"http://127.0.0.1:{port}/_stcore/health"),
        hint="--dashboard-port picks another port; --no-dashboard skips it",
    )


def dashboard_cmd(
    port: int = typer.Option(8501, "--port", "-p", min=1, max=65535, help="HTTP port of the dashboard"),
    address: str = typer.Option("127.0.0.1", "--address", help="interface to listen on"),
    pipeline_file: Path | None = typer.Option(None, "--pipeline", "-P", help="pipeline file the dashboard watches"),
) -> None:
    """Live sales per minute and tier, pipeline health and back-tests in the browser (Streamlit)."""
    spec = pipeline(pipeline_file)  # fail here, in one line, on a bad pipeline file
    assert spec.path is not None  # set by load_pipeline
    env = {**os.environ, "KSTREAM_PIPELINE_FILE": str(Path(spec.path).resolve())}
    typer.echo(f"dashboard: http://{address}:{port}  (Ctrl-C to stop)")
    sys.stdout.flush()
    cmd = streamlit_command(page_file(), port=port, address=address)
    os.execve(cmd[0], cmd, env)
