"""Start, stop and inspect the local registry process (`kstream-lab registry up|down|status`).

State lives under ``<data_dir>/registry``: the pid file and the log. The registry itself keeps no
files; its data is the `_schemas` topic, so deleting this directory loses nothing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from kstream_lab.kafka.admin import ping
from kstream_lab.kafka.schema_registry import RegistryError, registry_http_options
from kstream_lab.processes import ManagedProcess, ProcessOwner, http_probe, port_free
from kstream_lab.settings import Settings


@dataclass(frozen=True)
class RegistryStatus:
    running: bool
    pid: int | None
    url: str
    subjects: list[str]
    log_file: Path


def _server_files(settings: Settings) -> dict[str, str]:
    """The users file and TLS key pair the server reads (paths only; no secret in the environment)."""
    names = ("registry_users_file", "registry_tls_cert", "registry_tls_key")
    return {f"KSTREAM_{n.upper()}": str(Path(v).resolve()) for n in names if (v := getattr(settings, n))}


class LocalRegistry:
    """One local registry process per data dir, serving on ``registry_port`` (a :class:`ManagedProcess`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.data_dir.resolve() / "registry"
        self.url = f"{'https' if settings.registry_tls_cert else 'http'}://127.0.0.1:{settings.registry_port}"
        self.http = registry_http_options(settings)
        self.process = ManagedProcess(
            "registry",
            command=[sys.executable, "-m", "kstream_lab.local_registry"],
            pid_file=self.home / "registry.pid",
            log_file=self.home / "registry.log",
            ready=http_probe(f"{self.url}/", verify=self.http["verify"]),
            env={
                **settings.kafka_env(),  # its Kafka client logs in as this process does
                "KSTREAM_REGISTRY_PORT": str(settings.registry_port),
                **_server_files(settings),
            },
            error=RegistryError,
            stop_timeout=15.0,
        )

    @property
    def pid_file(self) -> Path:
        return self.process.pid_file

    @property
    def log_file(self) -> Path:
        return self.process.log_file

    def up(self, *, timeout: float = 60.0, owner: ProcessOwner | None = None) -> str:
        """Start in the background after checking port and broker; wait until it answers HTTP."""
        self.process.refuse_if_running(
            "the local registry", self.url, "use it as is, or stop it with `kstream-lab registry down`"
        )
        if not port_free(self.settings.registry_port):
            raise RegistryError(
                f"port {self.settings.registry_port} on 127.0.0.1 is already in use",
                hint="stop whatever listens there or set KSTREAM_REGISTRY_PORT to a free port",
            )
        ping(self.settings, timeout=5)  # BrokerError with a hint when Kafka is down
        self.process.up(timeout, owner=owner)
        return self.url

    def down(self, *, timeout: float = 15.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``; True when it stopped cleanly or was not running."""
        return self.process.stop(timeout) != "killed"

    def pid(self) -> int | None:
        return self.process.pid()

    def status(self) -> RegistryStatus:
        pid = self.pid()
        subjects: list[str] = []
        if pid is not None:
            try:
                res = httpx.get(f"{self.url}/subjects", timeout=5, **self.http)
                subjects = res.json() if res.status_code == 200 else []
            except (httpx.HTTPError, ValueError):
                subjects = []
        return RegistryStatus(pid is not None, pid, self.url, subjects, self.log_file)

    def log_tail(self, lines: int = 20) -> str:
        return self.process.log_tail(lines)
