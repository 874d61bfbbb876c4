"""One background process: pid file, detached start with its log file, readiness probe, status, stop.

The local broker, the local registry, each pipeline component and the demo's dashboard are all one of
these, so they share one set of rules:

- ``start`` runs the command in its own session (a terminal's Ctrl-C or hang-up never reaches it
  directly; whoever started it decides), appends its output to the log file and writes the pid file.
- ``wait_ready`` polls the readiness probe; a process that exits first, or never becomes ready within
  the timeout, is an error naming the log (after a timeout the process is stopped again).
- ``stop`` removes the pid file, then SIGTERM, then SIGKILL after the timeout. It is the only thing
  that removes a pid file: a pid file naming a dead process means the process died rather than was
  stopped, which is how ``pipeline watch`` knows what to restart.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from kstream_lab.errors import KStreamLabError
from kstream_lab.processes.pids import read_pid, terminate, write_pid

if TYPE_CHECKING:
    from kstream_lab.processes.owner import ProcessOwner

Probe = Callable[[], bool]
TAIL_LINES = 10


class StartCancelled(KStreamLabError):
    """A stop was asked for (a signal to the foreground command) while a process was starting."""


def child_env(changes: Mapping[str, str | None]) -> dict[str, str]:
    """The caller's environment with ``changes`` applied (a ``None`` value removes the variable)."""
    env = {**os.environ, **changes}
    return {k: v for k, v in env.items() if v is not None}


def http_probe(url: str, timeout: float = 1.0, *, verify: bool | str = True) -> Probe:
    """Ready when ``url`` answers 200 (``verify``: a CA bundle for https with a private CA)."""

    def ready() -> bool:
        try:
            return httpx.get(url, timeout=timeout, verify=verify).status_code == 200
        except httpx.HTTPError:
            return False

    return ready


def port_probe(port: int, host: str = "127.0.0.1") -> Probe:
    """Ready when something accepts TCP connections on ``host:port``."""

    def ready() -> bool:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
        except OSError:
            return False
        return True

    return ready


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int | None
    log_file: Path

    @property
    def running(self) -> bool:
        return self.pid is not None


@dataclass
class ManagedProcess:
    """``command`` run detached; ``name`` is what messages and status call it ("kafka", "enricher")."""

    name: str
    command: Sequence[str]
    pid_file: Path
    log_file: Path
    ready: Probe | None = None
    env: Mapping[str, str | None] = field(default_factory=dict)  # added to the caller's (None: removed)
    cwd: Path | None = None
    error: type[KStreamLabError] = KStreamLabError
    hint: str | None = None  # added to start-up errors, after the log file
    stop_timeout: float = 10.0  # SIGTERM -> SIGKILL, when ``stop`` is not given one
    poll_s: float = 0.2

    def pid(self) -> int | None:
        """The pid if the pid file names this live process."""
        return read_pid(self.pid_file)

    def status(self) -> ProcessStatus:
        return ProcessStatus(self.name, self.pid(), self.log_file)

    def refuse_if_running(self, what: str | None = None, where: str = "", hint: str | None = None) -> None:
        """Never a second copy: ``self.error`` naming ``what`` (default: the name), its pid and address."""
        if (pid := self.pid()) is not None:
            at = f" at {where}" if where else ""
            raise self.error(
                f"{what or self.name} is already running (pid {pid}){at}", hint=hint or "use it as is, or stop it first"
            )

    def start(self, *, owner: ProcessOwner | None = None) -> subprocess.Popen:
        """Spawn the command detached, log appended, pid file written; ``owner`` will stop it."""
        self.refuse_if_running()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(self.command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env(self.env),
                cwd=self.cwd,
                start_new_session=True,
            )
        write_pid(self.pid_file, proc.pid)
        if owner is not None:
            owner.own(self.name, self.stop)
        return proc

    def wait_ready(self, proc: subprocess.Popen, timeout: float, *, cancel: threading.Event | None = None) -> None:
        """Return once the probe says ready; raise if the process exits first or the timeout passes.

        ``cancel`` (the owner's stop event) ends the wait early with :class:`StartCancelled`; stopping
        the process is then the owner's job.
        """
        deadline = time.monotonic() + timeout
        while True:
            if (code := proc.poll()) is not None:
                raise self.error(
                    f"{self.name} exited with code {code} during start-up{self._tail()}", hint=self._hint()
                )
            if cancel is not None and cancel.is_set():
                raise StartCancelled(f"stopped while {self.name} was starting")
            if self.ready is None or self.ready():
                return
            if time.monotonic() >= deadline:
                break
            if cancel is None:
                time.sleep(self.poll_s)
            else:
                cancel.wait(self.poll_s)
        terminate(proc.pid, timeout=5)  # the pid file stays: it was meant to run and does not
        proc.poll()
        raise self.error(
            f"{self.name} did not become ready within {timeout:.0f}s; stopped it again{self._tail()}", hint=self._hint()
        )

    def up(self, timeout: float, *, owner: ProcessOwner | None = None) -> int:
        """``start`` and ``wait_ready``; returns the pid."""
        proc = self.start(owner=owner)
        self.wait_ready(proc, timeout, cancel=owner.stop if owner is not None else None)
        return proc.pid

    def stop(self, timeout: float | None = None) -> str:
        """Pid file first, then SIGTERM, SIGKILL after ``timeout``: "stopped", "killed" or "not running"."""
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return "not running"
        return "stopped" if terminate(pid, self.stop_timeout if timeout is None else timeout) else "killed"

    def log_tail(self, lines: int = 50) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _tail(self) -> str:
        tail = self.log_tail(TAIL_LINES).strip()
        return f":\n{tail}" if tail else " (no output)"

    def _hint(self) -> str:
        return f"full log: {self.log_file}" + (f"; {self.hint}" if self.hint else "")
