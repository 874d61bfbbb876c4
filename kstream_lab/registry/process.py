"""Start, stop and inspect the local registry process (`kstream-lab registry up|down|status`).

State lives under ``<data_dir>/registry``: the pid file and the log. The registry itself keeps no
files; its data is the `_schemas` topic, so deleting this directory loses nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from kstream_lab.kafka.admin import ping
from kstream_lab.kafka.registry import RegistryError
from kstream_lab.processes import port_free, read_pid, terminate
from kstream_lab.settings import Settings


@dataclass(frozen=True)
class RegistryStatus:
    running: bool
    pid: int | None
    url: str
    subjects: list[str]
    log_file: Path


class LocalRegistry:
    """One local registry process per data dir, serving on ``registry_port``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.data_dir.resolve() / "registry"
        self.pid_file = self.home / "registry.pid"
        self.log_file = self.home / "registry.log"
        self.url = f"http://127.0.0.1:{settings.registry_port}"

    def up(self, *, timeout: float = 60.0) -> str:
        """Start in the background after checking port and broker; wait until it answers HTTP."""
        if (pid := self.pid()) is not None:
            raise RegistryError(
                f"the local registry is already running (pid {pid}) at {self.url}",
                hint="use it as is, or stop it with `kstream-lab registry down`",
            )
        if not port_free(self.settings.registry_port):
            raise RegistryError(
                f"port {self.settings.registry_port} on 127.0.0.1 is already in use",
                hint="stop whatever listens there or set KSTREAM_REGISTRY_PORT to a free port",
            )
        ping(self.settings, timeout=5)  # BrokerError with a hint when Kafka is down
        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "KSTREAM_BOOTSTRAP_SERVERS": self.settings.bootstrap,
            "KSTREAM_REGISTRY_PORT": str(self.settings.registry_port),
            "KSTREAM_DATA_DIR": str(self.settings.data_dir.resolve()),
        }
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kstream_lab.registry"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        self._wait_ready(proc, timeout)
        return self.url

    def down(self, *, timeout: float = 15.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``; True when it stopped cleanly or was not running."""
        pid = self.pid()
        clean = True if pid is None else terminate(pid, timeout, poll=0.1)
        self.pid_file.unlink(missing_ok=True)
        return clean

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def status(self) -> RegistryStatus:
        pid = self.pid()
        subjects: list[str] = []
        if pid is not None:
            try:
                subjects = httpx.get(f"{self.url}/subjects", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                subjects = []
        return RegistryStatus(pid is not None, pid, self.url, subjects, self.log_file)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def _wait_ready(self, proc: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                last = self.log_tail(5).splitlines()
                raise RegistryError(
                    f"the registry exited during start-up (code {proc.returncode}): "
                    f"{last[-1] if last else 'no output'}",
                    hint=f"full log: {self.log_file}",
                )
            try:
                if httpx.get(f"{self.url}/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.down(timeout=5)
        raise RegistryError(
            f"the registry did not answer within {timeout:.0f}s; stopped it again", hint=f"see {self.log_file}"
        )
