"""The package works from a built wheel, away from the source checkout, as the container image runs it.

The wheel is built from a copy of the package's sources and installed, without dependencies, into a
fresh venv; then, as in the Dockerfile's build stage, replay's native fetch is built into the venv.
A full dependency install would take minutes, so the fresh venv borrows the third-party packages of
the test venv through a ``.pth`` line naming its site-packages directory. Such a line only adds the
directory to ``sys.path``: the ``.pth`` files inside it (among them the editable install's finder for
the checkout) are not run, which the first test proves by where ``kstream_lab`` is imported from.
Every command then runs as in the runtime stage: from a directory holding only copies of
``pipelines/`` and ``notebooks/``, with the Dockerfile's runtime environment (tests/support/dockerfile.py
maps its paths here) and without a C compiler.
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
from tests.support import dockerfile
from tests.support.paths import ROOT, free_port
from tests.support.pipeline import Pipeline, assert_pipeline_results, expected_rows, produce_truth, sink_matches
from tests.support.processes import stop

NO_COMPILER = "/nonexistent/cc"  # the runtime stage has none: the native fetch must be found prebuilt


@dataclass(frozen=True)
class Installed:
    venv: Path
    work: Path  # an empty directory but for a copy of pipelines/ and notebooks/

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def cli(self) -> Path:
        return self.venv / "bin" / "kstream-lab"

    @property
    def home(self) -> Path:
        return self.venv.parent / "home"  # the image's /var/lib/kstream-lab

    def env(self) -> dict[str, str]:
        """The test environment (KSTREAM_* of the session broker) without anything pointing at the
        checkout, then the image's runtime environment over it (PATH, HOME, data and native dirs), and
        no C compiler."""
        drop = ("PYTHONPATH", "VIRTUAL_ENV", "KSTREAM_PIPELINE_FILE")
        here = {k: v for k, v in os.environ.items() if k not in drop}
        return {**here, **dockerfile.mapped_env(self.venv, self.home), "CC": NO_COMPILER}

    def run(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(a) for a in args], cwd=self.work, env=self.env(), capture_output=True, text=True, timeout=timeout
        )

    def start(self, *args: str | Path, log: Path, argv0: str | None = None) -> subprocess.Popen:
        """``kstream-lab ARGS``; ``argv0`` a bare command name resolved on the image's PATH instead."""
        with log.open("ab") as out:
            return subprocess.Popen(
                [argv0 or str(self.cli), *map(str, args)],
                cwd=self.work,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
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
    for name in ("pipelines", "notebooks"):  # what the runtime stage copies into its WORKDIR
        shutil.copytree(ROOT / name, work / name)
    done = Installed(venv, work)
    done.home.mkdir()
    build_env = {**done.env(), **dockerfile.mapped_env(venv, done.home, stage=0)}
    build_env.pop("CC")  # the build stage has gcc
    native = subprocess.run(
        [str(done.python), "-m", "kstream_lab.kafka.native"], env=build_env, capture_output=True, text=True, timeout=300
    )
    assert native.returncode == 0, native.stdout + native.stderr
    return done


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


def test_the_native_fetch_comes_prebuilt_from_the_build_stage(installed: Installed) -> None:
    """The runtime stage has no compiler: the library built into the venv is found and loads."""
    probe = installed.run(
        installed.python,
        "-c",
        "from kstream_lab.kafka.native import load; from kstream_lab.settings import Settings;"
        "import os; lib = load(Settings().native_cache_dir); print(lib._name, os.environ['CC'])",
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    library, cc = probe.stdout.split()
    assert Path(library).parent == installed.venv / "native" and cc == NO_COMPILER


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


IMAGE_ORDERS = 10_000  # 20 ms apart in event time: 200 s, so minute windows close (final)


def test_each_worker_entrypoint_runs_the_pipeline(installed: Installed, kafka_settings, tmp_path: Path) -> None:
    """The chart's hook Job (`kstream-lab topics apply`) and each Deployment's command (the image's
    ENTRYPOINT + NAME, found on the image's PATH, a pod name as --instance-name) from the wheel:
    orders through the whole pipeline, the sink to the cent, DLQ == poison, late == late; each
    process exits 0 on SIGTERM."""
    from tests.support.pipeline import write_pipeline

    pipe = Pipeline(kafka_settings, write_pipeline(tmp_path), tmp_path)
    applied = installed.run(installed.cli, "topics", "apply", pipe.file)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    entrypoint = dockerfile.exec_form(dockerfile.stages()[-1], "ENTRYPOINT")
    try:
        for name in ("customer-service", "enricher", "aggregator", "sink"):
            log = tmp_path / f"{name}.log"
            pod = ["--instance-name", f"orders-kstream-lab-{name}-7d9f8-x2k4q"] if name != "customer-service" else []
            pipe.procs[name] = installed.start(
                *entrypoint[1:], name, "--pipeline", pipe.file, *pod, log=log, argv0=entrypoint[0]
            )
            wait_http(component_url(pipe, name), pipe.procs[name], log)
        truth = produce_truth(pipe, IMAGE_ORDERS)
        window = pipe.spec.aggregation().window
        expected = expected_rows(truth, window.size_ms, window.grace_ms)
        pipe.wait_for(lambda: sink_matches(pipe, expected), timeout=180, what="the sink to match the truth")
        assert_pipeline_results(pipe, truth, expected)
        for name in ("enricher", "aggregator"):  # the chart's --instance-name=$(POD_NAME)
            assert f"starting {name} instance orders-kstream-lab-{name}-7d9f8-x2k4q" in pipe.log(name)
        for name in reversed(list(pipe.procs)):
            assert pipe.terminate(name, timeout=60)[0] == 0, pipe.log(name)[-3000:]
    finally:
        pipe.stop_all()
        pipe.delete_topics()


def component_url(pipe: Pipeline, name: str) -> str:
    from kstream_lab.workers.components import component

    url = component(name).health_url(pipe.workers)
    assert url is not None
    return url


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
