"""``kstream-lab pipeline up|down|status``: the pipeline's processes in the background.

Each component (:mod:`kstream_lab.workers.components`: the two apps and the three workers) runs as
``python -m kstream_lab worker NAME``, a :class:`~kstream_lab.processes.ManagedProcess` with its pid
file and log under ``<data_dir>/pipeline``. ``up`` is idempotent (running components are left alone)
and waits until every component answers on its port; ``down`` sends SIGTERM in reverse start order,
so producers stop before their consumers, and escalates to SIGKILL only after the timeout. ``watch``
stays in the foreground and restarts components that die (a crash, a SIGKILL, a worker's fatal exit
3), with a back-off per component.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from threading import Event

from kstream_lab.connect import LocalConnect
from kstream_lab.connect.sink import apply_sink
from kstream_lab.errors import KStreamLabError
from kstream_lab.pipeline_spec import PipelineSpec
from kstream_lab.processes import ManagedProcess, ProcessOwner, http_probe
from kstream_lab.settings import Settings
from kstream_lab.workers.components import component, names, worker_command

COMPONENTS = names()
# watch: a component that died is restarted after 1 s, doubling per failed or short-lived run up to
# 60 s; one that stays up for STABLE_S starts over at 1 s.
RESTART_S, RESTART_MAX_S, STABLE_S = 1.0, 60.0, 60.0
CONNECT_START_S = 180.0


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    running: bool
    url: str
    log: Path


class Supervisor:
    """Starts, stops and reports the pipeline's processes for one data dir."""

    def __init__(self, settings: Settings, spec: PipelineSpec) -> None:
        if spec.path is None:
            raise KStreamLabError("the pipeline spec must come from a file to run its workers")
        self.settings, self.spec = settings, spec
        self.home = settings.data_dir / "pipeline"
        self.config = spec.workers

    def pid_file(self, name: str) -> Path:
        return self.home / "pids" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    @property
    def connect_sink(self) -> bool:
        """``workers.sink.kind: connect``: the sink component is a Kafka Connect worker running the
        JDBC sink connector (kstream_lab/connect), not ``kstream-lab worker sink``."""
        return self.config.sink.kind == "connect"

    def connect(self) -> LocalConnect:
        """The sink's Connect worker: pid file and log beside the other components', state in Kafka."""
        return LocalConnect(
            self.settings,
            home=self.home / "connect",
            name="sink",
            pid_file=self.pid_file("sink"),
            log_file=self.log_file("sink"),
        )

    def url(self, name: str) -> str:
        """Where the component answers once it runs ("" for a worker without a metrics port)."""
        if name == "sink" and self.connect_sink:
            return f"{self.connect().url}/connectors"
        return component(name).health_url(self.config) or ""

    def process(self, name: str) -> ManagedProcess:
        """Component ``name`` as ``python -m kstream_lab worker NAME`` with its pid file, log and probe
        (the sink as a Connect worker when the pipeline says so)."""
        if name == "sink" and self.connect_sink:
            return self.connect().process
        url = self.url(name)
        assert self.spec.path is not None, "the supervisor runs a pipeline loaded from a file"
        return ManagedProcess(
            name,
            command=worker_command(name, Path(self.spec.path).resolve()),
            pid_file=self.pid_file(name),
            log_file=self.log_file(name),
            ready=http_probe(url) if url else None,
            env={"KSTREAM_DATA_DIR": str(self.settings.data_dir.resolve())},
        )

    def pid(self, name: str) -> int | None:
        return self.process(name).pid()

    def status(self) -> list[ComponentStatus]:
        out = []
        for name in COMPONENTS:
            pid = self.pid(name)
            out.append(ComponentStatus(name, pid, pid is not None, self.url(name), self.log_file(name)))
        return out

    def up(
        self, components: tuple[str, ...] = COMPONENTS, *, timeout: float = 60.0, owner: ProcessOwner | None = None
    ) -> list[ComponentStatus]:
        """Start what is not running, then wait until each component answers on its port.

        With an ``owner`` each component started here is registered with it as soon as it is spawned,
        so a signal during the wait stops it too."""
        started: dict[str, subprocess.Popen] = {}
        for name in components:
            if self.pid(name) is None:
                started[name] = self._spawn(name, owner=owner)
        cancel = owner.stop if owner is not None else None
        for name, proc in started.items():
            wait = max(timeout, CONNECT_START_S) if name == "sink" and self.connect_sink else timeout
            self.process(name).wait_ready(proc, wait, cancel=cancel)  # plugin scanning takes a while
        if "sink" in components and self.connect_sink:
            apply_sink(self.settings, self.spec)  # idempotent: an unchanged connector is left alone
        return self.status()

    def _spawn(self, name: str, *, owner: ProcessOwner | None = None) -> subprocess.Popen:
        if name == "sink" and self.connect_sink:
            return self.connect().prepare().start(owner=owner)
        return self.process(name).start(owner=owner)

    def _wait_ready(self, name: str, proc: subprocess.Popen, timeout: float) -> None:
        wait = max(timeout, CONNECT_START_S) if name == "sink" and self.connect_sink else timeout
        self.process(name).wait_ready(proc, wait)

    def down(self, *, timeout: float = 10.0) -> dict[str, str]:
        """SIGTERM in reverse order; SIGKILL after ``timeout``. Returns name -> stopped|killed|not running.

        The pid file goes first, so a ``watch`` running meanwhile sees a component stopped on purpose,
        not one that died."""
        return {name: self.process(name).stop(timeout) for name in reversed(COMPONENTS)}

    def died(self) -> list[str]:
        """Components that were started and are gone without ``down``: pid file there, process not."""
        return [name for name in COMPONENTS if self.pid_file(name).exists() and self.pid(name) is None]

    def watch(
        self, stop: Event, *, interval: float = 1.0, timeout: float = 60.0, report: Callable[[str], None] = print
    ) -> None:
        """Restart components that die until ``stop`` is set (then return; the components keep running).

        Each death is reported with the last line of the component's log, each restart with its new
        pid. Restarts back off per component (``RESTART_S`` doubling to ``RESTART_MAX_S``), so one
        that cannot start -- a bad config, a port taken -- is retried without spinning.
        """
        failures: dict[str, int] = {}
        due: dict[str, float] = {}
        started: dict[str, float] = {}
        while not stop.wait(interval):
            now = time.monotonic()
            for name in [n for n, t in started.items() if now - t >= STABLE_S and self.pid(n) is not None]:
                failures.pop(name, None)
                started.pop(name)
            dead = self.died()
            for name in [n for n in due if n not in dead]:  # started meanwhile (e.g. by `pipeline up`)
                del due[name]
            for name in dead:
                if name not in due:
                    delay = min(RESTART_MAX_S, RESTART_S * 2 ** failures.get(name, 0))
                    due[name] = now + delay
                    report(f"{name} exited ({self._last_log_line(name)}); restarting in {delay:g}s")
                elif now >= due[name]:
                    del due[name]
                    failures[name] = failures.get(name, 0) + 1
                    started[name] = now
                    try:
                        self._wait_ready(name, self._spawn(name), timeout)
                        report(f"{name} restarted (pid {self.pid(name)})")
                    except KStreamLabError as exc:
                        report(f"{name} did not come back: {exc.message.splitlines()[0]}")

    def _last_log_line(self, name: str) -> str:
        try:
            lines = self.log_file(name).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1][:300] if lines else "empty log"
