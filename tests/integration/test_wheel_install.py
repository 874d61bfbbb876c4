"""The package works from a built wheel, away from the source checkout.

The wheel is built from a copy of the package's sources and installed, without dependencies, into a
fresh venv. A full dependency install would take minutes, so the fresh venv borrows the third-party
packages of the test venv through a ``.pth`` line naming its site-packages directory. Such a line only
adds the directory to ``sys.path``: the ``.pth`` files inside it (among them the editable install's
finder for the checkout) are not run, which the first test proves by where ``kstream_lab`` is
imported from. Every command then runs from an empty directory holding only a copy of ``pipelines/``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import typer
import yaml

from kstream_lab.cli import app
from tests.support.paths import ROOT, free_port
from tests.support.processes import stop


@dataclass(frozen=True)
class Installed:
    venv: Path
    work: Path  # an empty directory but for a copy of pipelines/

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def cli(self) -> Path:
        return self.venv / "bin" / "kstream-lab"

    def env(self) -> dict[str, str]:
        """The test environment (KSTREAM_* of the session broker) without anything pointing at the checkout."""
        drop = ("PYTHONPATH", "VIRTUAL_ENV", "KSTREAM_PIPELINE_FILE")
        return {k: v for k, v in os.environ.items() if k not in drop}

    def run(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(a) for a in args], cwd=self.work, env=self.env(), capture_output=True, text=True, timeout=timeout
        )

    def start(self, *args: str, log: Path) -> subprocess.Popen:
        with log.open("ab") as out:
            return subprocess.Popen(
                [str(self.cli), *args], cwd=self.work, env=self.env(), stdout=out, stderr=subprocess.STDOUT
            )


def build_wheel(dest: Path) -> Path:
    """``pip wheel`` over a copy of the sources, so no build/ or egg-info lands in the checkout."""
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "kstream_lab", src / "kstream_lab", ignore=shutil.ignore_patterns("__pycache__"))
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (wheel,) = (dest / "dist").glob("kstream_lab-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(root)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps"]
        + ["--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    site = Path(
        subprocess.check_output(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "shared_dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(shared)))
    work = root / "work"
    work.mkdir()
    shutil.copytree(ROOT / "pipelines", work / "pipelines")
    return Installed(venv, work)


def test_the_package_comes_from_the_wheel_with_all_its_files(installed: Installed) -> None:
    probe = installed.run(installed.python, "-c", "import kstream_lab; print(kstream_lab.__file__)")
    assert probe.returncode == 0, probe.stderr
    package = Path(probe.stdout.strip()).parent
    assert package.is_relative_to(installed.venv), package  # not the checkout's editable install
    source = {
        p.relative_to(ROOT / "kstream_lab")
        for p in (ROOT / "kstream_lab").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    shipped = {p.relative_to(package) for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert source - shipped == set()  # C source, pom, properties, the dashboard page: every file


def command_paths(group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command of a click group (typer's own, vendored click: hence no isinstance), depth first."""
    for name, cmd in sorted(group.commands.items()):
        yield (*prefix, name)
        if hasattr(cmd, "commands"):
            yield from command_paths(cmd, (*prefix, name))


def test_every_command_answers_help(installed: Installed) -> None:
    paths = [(), *command_paths(typer.main.get_command(app))]
    assert ("worker",) in paths and ("broker", "up") in paths and len(paths) > 30
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda p: installed.run(installed.cli, *p, "--help"), paths))
    failed = {" ".join(p): r.stderr[-500:] for p, r in zip(paths, runs, strict=True) if r.returncode != 0}
    assert failed == {}
    assert all("Usage: kstream-lab" in r.stdout for r in runs)


def test_the_order_service_accepts_an_order(installed: Installed, kafka_settings, topic_factory) -> None:
    """`kstream-lab worker order-service` with the default pipeline file (pipelines/orders.yaml from the
    working directory) and its schemas beside it, against the session's broker and registry."""
    topic = topic_factory("orders_raw", partitions=6)
    port = free_port()
    path = installed.work / "pipelines" / "orders.yaml"
    data = yaml.safe_load(path.read_text())
    data["topics"][topic] = dict(data["topics"]["orders_raw"])
    data["workers"]["order_service"].update(port=port, output=topic)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    log = installed.work.parent / "order-service.log"
    proc = installed.start("worker", "order-service", log=log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", proc, log)
        resp = httpx.post(f"{base}/orders", json={"customer_id": "C0000042", "total_cents": 1999}, timeout=30)
        assert resp.status_code == 202, resp.text
        assert resp.json()["offset"] == 0 and 0 <= resp.json()["partition"] < 6
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        stop(proc, timeout=15)


def test_the_dashboard_becomes_healthy(installed: Installed) -> None:
    port = free_port()
    log = installed.work.parent / "dashboard.log"
    proc = installed.start("dashboard", "--port", str(port), log=log)
    try:
        assert wait_http(f"http://127.0.0.1:{port}/_stcore/health", proc, log, timeout=120) == "ok"
        argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode().split("\0")  # streamlit, exec'd in place
        (page,) = [Path(a) for a in argv if a.endswith("dashboard.py")]
        assert page.is_relative_to(installed.venv) and page.parts[-3:] == ("kstream_lab", "services", "dashboard.py")
    finally:
        stop(proc, timeout=15)


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            resp = httpx.get(url, timeout=1)
            if resp.status_code == 200:
                return resp.text
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout:.0f}s:\n{log.read_text()[-3000:]}")
