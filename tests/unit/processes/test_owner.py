"""ProcessOwner: a foreground command's children stop on SIGINT, SIGTERM and SIGHUP alike, last first.

The owner runs in a child Python process (signal handlers belong to a process's main thread), which
starts two sleeping grandchildren as ManagedProcesses, prints their pids and waits for a signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kstream_lab.processes import ProcessOwner, pid_alive, stop_on_signals
from tests.support.paths import ROOT

OWNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from kstream_lab.processes import ManagedProcess, ProcessOwner, say

    home = Path(sys.argv[1])
    with ProcessOwner(report=lambda name, outcome: say(f"{name} {outcome}")) as owner:
        for name in ("first", "second"):
            child = ManagedProcess(name, [sys.executable, "-c", "import time; time.sleep(120)"],
                                   home / f"{name}.pid", home / f"{name}.log")
            say(f"pid {child.up(10, owner=owner)}")
        say("ready")
        owner.stop.wait(60)
        say(f"stopping ({owner.signal})")
    """
)


def run_owner(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    pids = []
    for line in proc.stdout:
        if line.startswith("pid "):
            pids.append(int(line.split()[1]))
        if line == "ready\n":
            return proc, pids
    raise AssertionError(f"the owner did not start: {proc.communicate(timeout=10)}")


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_each_stop_signal_stops_the_children_last_first_and_exits_0(tmp_path: Path, sig: signal.Signals) -> None:
    proc, pids = run_owner(tmp_path)
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.splitlines() == [f"stopping ({sig.name})", "second stopped", "first stopped"]
    assert not any(pid_alive(p) for p in pids)
    assert list(tmp_path.glob("*.pid")) == []


def test_a_closed_terminal_does_not_cut_the_clean_up_short(tmp_path: Path) -> None:
    """The terminal is gone (writes fail) when its SIGHUP arrives: the children still stop, exit 0."""
    proc, pids = run_owner(tmp_path)
    proc.stdout.close()
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(30) == 0, proc.stderr.read()
    assert not any(pid_alive(p) for p in pids)
    assert list(tmp_path.glob("*.pid")) == []


def test_stop_all_runs_every_stopper_even_when_one_fails() -> None:
    heard: list[tuple[str, str]] = []
    owner = ProcessOwner(report=lambda name, outcome: heard.append((name, outcome)))

    def broken() -> str:
        raise OSError("permission denied")

    owner.own("broker", lambda: "stopped")
    owner.own("registry", broken)
    owner.own("sink", lambda: "killed")
    assert owner.owned == ["broker", "registry", "sink"]
    assert owner.stop_all() == {"sink": "killed", "registry": "not stopped: permission denied", "broker": "stopped"}
    assert heard == [("sink", "killed"), ("registry", "not stopped: permission denied"), ("broker", "stopped")]
    assert owner.owned == [] and owner.stop_all() == {}


def test_an_ignored_sighup_stays_ignored_and_handlers_come_back() -> None:
    """`nohup kstream-lab demo` asks to outlive the terminal; leaving the owner restores the handlers."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        stop = stop_on_signals()
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        with ProcessOwner() as owner:
            assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_IGN, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGHUP)
            deadline = time.monotonic() + 5
            while not owner.stop.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert owner.signal == "SIGHUP"
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
