"""Browser end-to-end fixtures: headless Debian Chromium through Playwright, and a served dashboard.

The browser is the system's /usr/bin/chromium (``make test`` installs the ``chromium`` package via
scripts/system-deps.sh); Playwright never downloads one. ``KSTREAM_E2E_BROWSER=0`` skips these tests
on machines that cannot have a browser, the same switch system-deps.sh honours.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.paths import ROOT, free_port
from tests.support.processes import stop

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if os.environ.get("KSTREAM_E2E_BROWSER", "1") == "0":
        pytest.skip("KSTREAM_E2E_BROWSER=0: browser tests disabled")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (scripts/system-deps.sh installs the chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """test-artifacts/<test name>/ (gitignored): screenshots and logs a human can look at afterwards."""
    out = ARTIFACTS / request.node.name
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def serve_dashboard(tmp_path: Path) -> Iterator[Callable[[Path], str]]:
    """serve_dashboard(pipeline_file) -> URL of `kstream-lab dashboard` on a free port (KSTREAM_* inherited)."""
    procs: list[subprocess.Popen] = []

    def start(pipeline_file: Path) -> str:
        port = free_port()
        log = (tmp_path / "dashboard.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "kstream_lab", "dashboard", "--port", str(port), "--pipeline", str(pipeline_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=os.environ.copy(),
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(
                    f"dashboard exited with {proc.returncode}:\n{(tmp_path / 'dashboard.log').read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).text == "ok":
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("dashboard did not become healthy in 60 s")

    yield start
    for proc in procs:
        stop(proc)
