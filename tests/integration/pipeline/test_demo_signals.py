"""`kstream-lab demo` stops everything it started on SIGHUP and SIGTERM, as on Ctrl-C, and exits 0.

While the demo runs, every process below it is collected from /proc (broker, registry, the five
components, the dashboard); after the signal each must be gone, and so must every pid file.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from kstream_lab.broker import LocalBroker
from kstream_lab.local_registry import LocalRegistry
from kstream_lab.processes import pid_alive, started_at
from kstream_lab.settings import Settings
from kstream_lab.workers.components import names
from tests.support.paths import ROOT, free_port
from tests.support.pipeline import Pipeline, write_pipeline

LIVE = "orders accepted"  # the first summary line: broker, registry, pipeline and dashboard are up


def descendants(root: int) -> dict[int, float | None]:
    """pid -> start time of every live process below ``root`` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out[pid] = started_at(pid)
        todo.extend(children.get(pid, []))
    return out


def left_running(procs: dict[int, float | None]) -> list[int]:
    """Those still alive as the same process (a reused pid has a later start time)."""
    return [pid for pid, t0 in procs.items() if pid_alive(pid) and started_at(pid) == t0]


def demo_command(pipeline_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kstream_lab",
        "demo",
        "--rate",
        "20",
        "--pipeline",
        str(pipeline_file),
        "--dashboard-port",
        str(free_port()),
    ]


def pid_files(data_dir: Path) -> list[Path]:
    return sorted(data_dir.rglob("*.pid"))


def test_closing_the_terminal_stops_everything_the_demo_started(kafka_settings: Settings, tmp_path: Path) -> None:
    """The demo in a terminal of its own (a pty as its controlling tty) that starts its own broker and
    registry; closing the terminal makes the kernel send the SIGHUP, and writes to it fail from then on."""
    if os.environ.get("KSTREAM_TEST_BOOTSTRAP_SERVERS"):
        pytest.skip("needs the embedded broker: the demo starts one of its own")
    data = tmp_path / "data"
    env = {**os.environ, "KSTREAM_DATA_DIR": str(data)}
    env.update(
        KSTREAM_BROKER_PORT=str(free_port()),
        KSTREAM_CONTROLLER_PORT=str(free_port()),
        KSTREAM_REGISTRY_PORT=str(free_port()),
    )
    for key in ("KSTREAM_BOOTSTRAP_SERVERS", "KSTREAM_SCHEMA_REGISTRY_URL"):
        env.pop(key, None)
    master, slave = pty.openpty()

    def in_the_terminal() -> None:  # a new session whose controlling terminal is the pty
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)  # even when the test runs under nohup

    demo = subprocess.Popen(
        demo_command(write_pipeline(tmp_path)),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        preexec_fn=in_the_terminal,
    )
    os.close(slave)
    try:
        screen = read_until(master, LIVE, timeout=240)
        procs = descendants(demo.pid)
        running = {str(p.relative_to(data)): int(p.read_text()) for p in pid_files(data)}
    finally:
        os.close(master)  # the terminal is gone: SIGHUP to its session
    try:
        assert demo.wait(120) == 0, screen
    finally:
        if demo.poll() is None:
            demo.kill()
    assert "kafka up at" in screen and "schema registry up at" in screen, screen
    assert sorted(running) == sorted(
        ["broker/broker.pid", "registry/registry.pid"]
        + [f"pipeline/pids/{name}.pid" for name in (*names(), "dashboard")]
    )
    assert set(running.values()) <= set(procs) and len(procs) == 8, (running, procs)
    assert left_running(procs) == []
    assert pid_files(data) == []


def read_until(fd: int, marker: str, timeout: float) -> str:
    text, deadline = "", time.monotonic() + timeout
    while marker not in text:
        assert time.monotonic() < deadline, f"no {marker!r} within {timeout:.0f}s:\n{text[-3000:]}"
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                text += os.read(fd, 65536).decode(errors="replace")
            except OSError:  # EIO: the demo exited and closed the terminal
                raise AssertionError(f"the demo exited before {marker!r}:\n{text[-3000:]}") from None
    return text


def test_sigterm_stops_what_the_demo_started_and_leaves_the_running_broker(live_pipeline: Pipeline) -> None:
    """With the session's broker and registry already up, the demo owns only the pipeline and the dashboard."""
    pipe = live_pipeline
    demo = subprocess.Popen(
        demo_command(pipe.file),
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in demo.stdout:
            lines.append(line.rstrip("\n"))
            if LIVE in line:
                break
        procs = descendants(demo.pid)
        demo.send_signal(signal.SIGTERM)
        out, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
    lines += out.splitlines()
    assert demo.returncode == 0, "\n".join(lines)
    assert len(procs) == 6, procs  # five components and the dashboard
    assert left_running(procs) == []
    stopping = lines.index("stopping the pipeline (SIGTERM) ...")
    assert lines[stopping + 1 :] == [
        f"  {name:<17} stopped"
        for name in ("dashboard", "sink", "aggregator", "enricher", "order-service", "customer-service")
    ], "\n".join(lines)
    assert pid_files(pipe.settings.data_dir / "pipeline") == []
    assert LocalBroker(pipe.settings).pid() is not None and LocalRegistry(pipe.settings).pid() is not None
