"""A small client of Kafka Connect's REST API: create or update connectors, read their state.

``apply`` is idempotent: ``PUT /connectors/NAME/config`` creates the connector or replaces its
config, and a config equal to the one Connect already holds is not sent again (a PUT of the same
config would still restart the connector's tasks).
"""

from __future__ import annotations

import time
from typing import Any, Literal

import httpx

from kstream_lab.errors import ConnectError

Outcome = Literal["created", "updated", "unchanged"]


class ConnectClient:
    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, json: Any = None, *, ok: tuple[int, ...] = (200,)) -> httpx.Response:
        try:
            response = httpx.request(method, f"{self.url}{path}", json=json, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ConnectError(
                f"Kafka Connect at {self.url} does not answer: {exc}",
                hint="start it with `kstream-lab connect up`, or set KSTREAM_CONNECT_URL to a running worker",
            ) from None
        if response.status_code not in ok:
            try:
                detail = response.json().get("message", response.text)
            except ValueError:
                detail = response.text
            raise ConnectError(f"Kafka Connect refused {method} {path}: HTTP {response.status_code}: {detail}")
        return response

    def version(self) -> str:
        return str(self._call("GET", "/").json().get("version"))

    def connectors(self) -> list[str]:
        return list(self._call("GET", "/connectors").json())

    def config(self, name: str) -> dict[str, str] | None:
        response = self._call("GET", f"/connectors/{name}/config", ok=(200, 404))
        return None if response.status_code == 404 else dict(response.json())

    def apply(self, name: str, config: dict[str, str]) -> Outcome:
        """Create connector ``name`` or make its config ``config``."""
        config = {**{k: str(v) for k, v in config.items()}, "name": name}
        current = self.config(name)
        if current == config:
            return "unchanged"
        response = self._call("PUT", f"/connectors/{name}/config", config, ok=(200, 201))
        return "created" if response.status_code == 201 else "updated"

    def delete(self, name: str) -> bool:
        return self._call("DELETE", f"/connectors/{name}", ok=(204, 404)).status_code == 204

    def status(self, name: str) -> dict[str, Any] | None:
        response = self._call("GET", f"/connectors/{name}/status", ok=(200, 404))
        return None if response.status_code == 404 else dict(response.json())

    def states(self) -> dict[str, str]:
        """Each connector's state, and the first failing task's state with its error's first line."""
        out = {}
        for name, body in self._call("GET", "/connectors?expand=status").json().items():
            out[name] = describe(body["status"])
        return out

    def wait_running(self, name: str, timeout: float = 60.0, *, tasks: int = 1) -> dict[str, Any]:
        """Wait until the connector and at least ``tasks`` tasks run; a FAILED one is an error at once."""
        deadline = time.monotonic() + timeout
        state = "not created"
        while True:
            body = self.status(name)
            if body is not None:
                state = describe(body)
                if "FAILED" in state:
                    raise ConnectError(f"connector {name} failed: {state}", hint="see `kstream-lab connect logs`")
                running = [t for t in body.get("tasks", []) if t.get("state") == "RUNNING"]
                if body["connector"]["state"] == "RUNNING" and len(running) >= tasks:
                    return body
            if time.monotonic() >= deadline:
                raise ConnectError(f"connector {name} not running after {timeout:.0f}s: {state}")
            time.sleep(0.5)


def describe(status: dict[str, Any]) -> str:
    """RUNNING, or e.g. "RUNNING; task 0 FAILED: org.apache...: the reason"."""
    out = status["connector"]["state"]
    for task in status.get("tasks", []):
        if task.get("state") != "RUNNING":
            trace = (task.get("trace") or "").strip().splitlines()
            out += f"; task {task['id']} {task['state']}" + (f": {trace[0][:300]}" if trace else "")
    return out
