"""Toxiproxy for the chaos tests: ``toxiproxy-server`` as a managed process, its proxies and toxics.

Toxiproxy is a TCP proxy whose faults ("toxics") are switched on and off over an HTTP API while the
connections through it stay up: latency, bandwidth limits, connections reset (RST) or black-holed.
``make setup`` builds the pinned version into the venv (scripts/toxiproxy.sh). A toxic acts on one
direction: ``upstream`` is client -> server, ``downstream`` server -> client (a reset on the
downstream lets the request through and cuts the connection when the answer comes back: the server
did the work, the client cannot know).
"""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from kstream_lab.errors import KStreamLabError
from kstream_lab.processes import ManagedProcess, http_probe
from tests.support.paths import free_port

Stream = Literal["upstream", "downstream"]
STREAMS: tuple[Stream, ...] = ("upstream", "downstream")


def server_binary() -> str:
    """The venv's toxiproxy-server (what ``make setup`` builds), else one on PATH."""
    beside = Path(sys.executable).parent / "toxiproxy-server"
    found = str(beside) if beside.exists() else shutil.which("toxiproxy-server")
    if found is None:
        raise KStreamLabError(
            "toxiproxy-server not found beside the venv's python or on PATH",
            hint="run `make setup` (it builds Toxiproxy from its Go module with scripts/toxiproxy.sh)",
        )
    return found


@dataclass
class Proxy:
    """One listening port forwarding to ``upstream``; toxics come and go while connections stay."""

    api: httpx.Client
    name: str
    port: int
    upstream: str

    def add(self, kind: str, stream: Stream = "downstream", toxicity: float = 1.0, **attributes: Any) -> str:
        """Switch a toxic on (``kind``: latency, bandwidth, reset_peer, timeout, ...); its name."""
        name = f"{kind}-{stream}-{uuid.uuid4().hex[:6]}"
        body = {"name": name, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        self.api.post(f"/proxies/{self.name}/toxics", json=body).raise_for_status()
        return name

    def remove(self, toxic: str) -> None:
        self.api.delete(f"/proxies/{self.name}/toxics/{toxic}").raise_for_status()

    def toxics(self) -> list[dict]:
        return self.api.get(f"/proxies/{self.name}/toxics").json()

    def clear(self) -> None:
        for toxic in self.toxics():
            self.remove(toxic["name"])

    @contextmanager
    def toxic(self, kind: str, streams: tuple[Stream, ...] = ("downstream",), **attributes: Any) -> Iterator[None]:
        """The toxic on each of ``streams`` for the duration of the block."""
        names = [self.add(kind, stream, **attributes) for stream in streams]
        try:
            yield
        finally:
            for name in names:
                self.remove(name)


class Toxiproxy:
    """``toxiproxy-server`` on a free 127.0.0.1 port, its pid file and log under ``home``."""

    def __init__(self, home: Path, seed: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [server_binary(), "-host", "127.0.0.1", "-port", str(self.port), "-seed", str(seed)]
        self.process = ManagedProcess(
            "toxiproxy",
            command=command,
            pid_file=home / "toxiproxy.pid",
            log_file=home / "toxiproxy.log",
            ready=http_probe(f"{self.url}/version"),
            env={"LOG_LEVEL": "warn"},  # info and below log every connection and toxic update
            hint="tests/support/toxiproxy.py",
        )
        self.api = httpx.Client(base_url=self.url, timeout=10)

    def up(self, timeout: float = 20.0) -> None:
        self.process.up(timeout)

    def down(self) -> None:
        self.api.close()
        self.process.stop(5)

    def proxy(self, name: str, upstream: str, port: int | None = None) -> Proxy:
        """A new proxy listening on 127.0.0.1:``port`` (default a free one) in front of ``upstream``."""
        port = port or free_port()
        body = {"name": name, "listen": f"127.0.0.1:{port}", "upstream": upstream, "enabled": True}
        self.api.post("/proxies", json=body).raise_for_status()
        return Proxy(self.api, name, port, upstream)
