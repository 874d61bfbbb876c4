"""The one runtime for kstream_lab's own processes.

- :mod:`.pids`: pid files (stale ones detected), liveness, a polite SIGTERM-then-SIGKILL, free ports.
- :mod:`.managed`: :class:`ManagedProcess`, one detached process with its pid file, log, readiness
  probe, status and stop; the broker, the registry, the pipeline's components and the dashboard.
- :mod:`.owner`: :class:`ProcessOwner`, a foreground command that stops what it started on SIGINT,
  SIGTERM and SIGHUP alike (``kstream-lab demo``), and :func:`stop_on_signals` for the workers.
"""

from kstream_lab.processes.managed import (
    ManagedProcess,
    Probe,
    ProcessStatus,
    StartCancelled,
    http_probe,
    port_probe,
)
from kstream_lab.processes.owner import STOP_SIGNALS, ProcessOwner, say, stop_on_signals
from kstream_lab.processes.pids import pid_alive, port_free, read_pid, started_at, terminate, write_pid

__all__ = [
    "STOP_SIGNALS",
    "ManagedProcess",
    "Probe",
    "ProcessOwner",
    "ProcessStatus",
    "StartCancelled",
    "http_probe",
    "pid_alive",
    "port_free",
    "port_probe",
    "read_pid",
    "say",
    "started_at",
    "stop_on_signals",
    "terminate",
    "write_pid",
]
