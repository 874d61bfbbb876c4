"""Processes by pid file: is it alive, is the pid file stale, is a port free, stop a pid politely.

A pid file records that a process is meant to run and which one it is. It can outlive its process
(a crash, a SIGKILL, a reboot), and the kernel hands the same pid to a new, unrelated process sooner or
later; so a pid counts only while that pid is alive *and* started no later than the file was written.
Without that check ``stop`` could SIGTERM a stranger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

# A process starts before its pid file is written; /proc's boot time has whole-second resolution and
# moves a little with clock adjustments, hence the slack.
STARTED_SLACK_S = 5.0


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    """True for a live process; zombies count as dead, and our own exited children are reaped."""
    with contextlib.suppress(ChildProcessError):
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def started_at(pid: int) -> float | None:
    """When ``pid`` started (epoch seconds), from /proc; None where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
        return int(boot.split()[1]) + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return None


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if it names a live process that is the one the file was written for."""
    try:
        pid = int(pid_file.read_text().strip())
        written = pid_file.stat().st_mtime
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    started = started_at(pid)
    if started is not None and started > written + STARTED_SLACK_S:
        return None  # the pid was reused by a process started after the file was written
    return pid


def write_pid(pid_file: Path, pid: int) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid}\n")


def terminate(pid: int, timeout: float, poll: float = 0.05) -> bool:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL. True when it stopped on its own."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(poll)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while pid_alive(pid):
        time.sleep(poll)
    return False
