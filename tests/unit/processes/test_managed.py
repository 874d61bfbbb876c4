"""ManagedProcess with small real Python children: start, readiness, status, log, stop and its escalation."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from kstream_lab.errors import BrokerError, KStreamLabError
from kstream_lab.processes import ManagedProcess, StartCancelled, http_probe, pid_alive, port_probe
from tests.support.paths import free_port

# Listens on argv[1] after 0.3 s, says so, and serves until stopped.
LISTENER = (
    "import os, socket, sys, time; time.sleep(0.3); s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); "
    "s.listen(); print('listening', os.environ['KSTREAM_MARK'], flush=True); time.sleep(60)"
)
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ignoring', flush=True); time.sleep(60)"
)


def managed(tmp_path: Path, code: str, *args: str, **kw) -> ManagedProcess:
    return ManagedProcess(
        "child",
        command=[sys.executable, "-c", code, *args],
        pid_file=tmp_path / "pids" / "child.pid",
        log_file=tmp_path / "logs" / "child.log",
        poll_s=0.05,
        **kw,
    )


def test_start_ready_status_and_a_polite_stop(tmp_path: Path) -> None:
    port = free_port()
    proc = managed(tmp_path, LISTENER, str(port), ready=port_probe(port), env={"KSTREAM_MARK": "x"})
    assert proc.status().running is False and proc.stop() == "not running"
    pid = proc.up(timeout=20)
    assert proc.pid() == pid and proc.status().pid == pid and proc.status().running
    assert proc.pid_file.read_text() == f"{pid}\n"
    assert proc.log_tail() == "listening x"  # its output, with the extra environment it was given
    with pytest.raises(
        KStreamLabError, match=rf"^child is already running \(pid {pid}\) \(use it as is, or stop it first\)$"
    ):
        proc.start()
    assert proc.stop(timeout=10) == "stopped"
    assert not pid_alive(pid) and not proc.pid_file.exists() and proc.pid() is None


def test_http_probe_waits_for_a_200(tmp_path: Path) -> None:
    port = free_port()
    proc = ManagedProcess(
        "web",
        command=[sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        pid_file=tmp_path / "web.pid",
        log_file=tmp_path / "web.log",
        ready=http_probe(f"http://127.0.0.1:{port}/"),
        cwd=tmp_path,
    )
    assert http_probe(f"http://127.0.0.1:{port}/")() is False
    proc.up(timeout=20)
    try:
        assert http_probe(f"http://127.0.0.1:{port}/")() is True
    finally:
        assert proc.stop() == "stopped"


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    proc = managed(tmp_path, STUBBORN, ready=lambda: proc.log_tail() == "ignoring")
    pid = proc.up(timeout=20)
    assert proc.stop(timeout=0.5) == "killed"
    assert not pid_alive(pid) and not proc.pid_file.exists()


def test_exit_during_start_up_names_the_code_and_the_log(tmp_path: Path) -> None:
    proc = managed(
        tmp_path, "print('bad config: no such topic'); raise SystemExit(3)", ready=lambda: False, error=BrokerError
    )
    with pytest.raises(BrokerError) as err:
        proc.up(timeout=20)
    assert err.value.message == "child exited with code 3 during start-up:\nbad config: no such topic"
    assert err.value.hint == f"full log: {proc.log_file}"
    assert proc.pid_file.exists() and proc.pid() is None  # meant to run, not running: died, not stopped


def test_never_ready_is_stopped_again_after_the_timeout(tmp_path: Path) -> None:
    proc = managed(
        tmp_path, "import time; print('waiting', flush=True); time.sleep(60)", ready=lambda: False, hint="try --port"
    )
    child = proc.start()
    with pytest.raises(KStreamLabError) as err:
        proc.wait_ready(child, timeout=0.5)
    assert err.value.message.startswith("child did not become ready within 0s; stopped it again:\n")
    assert err.value.hint == f"full log: {proc.log_file}; try --port"
    assert child.poll() is not None and proc.pid() is None


def test_a_cancelled_wait_leaves_the_stop_to_the_owner(tmp_path: Path) -> None:
    proc = managed(tmp_path, "import time; time.sleep(60)", ready=lambda: False)
    child = proc.start()
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(StartCancelled, match="stopped while child was starting"):
        proc.wait_ready(child, timeout=30, cancel=cancel)
    assert proc.pid() == child.pid
    assert proc.stop() == "stopped" and child.wait(5) is not None
