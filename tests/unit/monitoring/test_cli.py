"""`kstream-lab dashboard`: a bad pipeline file is one line and exit 2; the Streamlit command line is headless."""

from __future__ import annotations

import sys
from pathlib import Path

from kstream_lab.cli.dashboard import page_file, streamlit_command
from tests.support.paths import ROOT
from tests.support.processes import run_cli


def test_bad_pipeline_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = run_cli("dashboard", "--pipeline", str(tmp_path / "no.yaml"), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot read pipeline file {tmp_path / 'no.yaml'}: No such file or directory "
        "(pass the path of a pipelines/*.yaml file)"
    ]


def test_streamlit_runs_the_app_headless_on_the_given_port() -> None:
    cmd = streamlit_command(page_file(), port=8765, address="0.0.0.0")
    assert cmd[:5] == [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "kstream_lab" / "services" / "dashboard.py"),
    ]
    opts = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert opts["--server.port"] == "8765" and opts["--server.address"] == "0.0.0.0"
    assert opts["--server.headless"] == "true" and opts["--browser.gatherUsageStats"] == "false"
