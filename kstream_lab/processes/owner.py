"""A foreground command that owns background processes: SIGINT, SIGTERM and SIGHUP all stop them.

``kstream-lab demo`` starts the broker, the registry, the pipeline and the dashboard, each detached in
its own session (so a terminal's signals never reach them). Closing the terminal sends the demo a
SIGHUP, ``kill`` a SIGTERM, Ctrl-C a SIGINT; each of the three only sets :attr:`ProcessOwner.stop`,
the command winds down as it does at the end of a run, and leaving the ``with`` block stops every
owned process in reverse start order. Once the terminal is gone, writing to it fails; :func:`say`
then sends the rest of the output to /dev/null so the clean-up still runs to the end and exits 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from kstream_lab.processes.managed import StartCancelled

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_on_signals(
    stop: threading.Event | None = None, *, on_signal: Callable[[str], None] | None = None
) -> threading.Event:
    """An event set by SIGINT, SIGTERM or SIGHUP (main thread only); ``on_signal`` gets the signal's name.

    A SIGHUP that is ignored already (``nohup``) stays ignored: the user asked to outlive the terminal.
    """
    stop = stop if stop is not None else threading.Event()

    def handle(signum: int, _frame: object) -> None:
        if on_signal is not None:
            on_signal(signal.Signals(signum).name)
        stop.set()

    for sig in STOP_SIGNALS:
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue
        signal.signal(sig, handle)
    return stop


def say(message: str) -> None:
    """Print a line that survives a closed terminal: on a write error, stdout and stderr go to /dev/null."""
    try:
        print(message, flush=True)
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                os.dup2(devnull, stream.fileno())
        os.close(devnull)


class ProcessOwner:
    """Processes a foreground command started, stopped in reverse order when its ``with`` block ends.

    ``own(name, stop)`` registers a stopper (``ManagedProcess.stop``); ``report(name, outcome)`` hears
    each outcome ("stopped", "killed", "not running"). A stopper that raises is reported, and the
    others still run.
    """

    def __init__(self, *, report: Callable[[str, str], None] | None = None) -> None:
        self.stop = threading.Event()
        self.signal: str | None = None
        self.report = report
        self._owned: list[tuple[str, Callable[[], str]]] = []
        self._previous: dict[int, Callable[[int, FrameType | None], Any] | int | signal.Handlers | None] = {}

    def own(self, name: str, stop: Callable[[], str]) -> None:
        self._owned.append((name, stop))

    @property
    def owned(self) -> list[str]:
        return [name for name, _ in self._owned]

    def check(self) -> None:
        """Raise :class:`StartCancelled` once a stop was asked for (between start-up steps)."""
        if self.stop.is_set():
            raise StartCancelled(f"stopped by {self.signal or 'request'} during start-up")

    def stop_all(self) -> dict[str, str]:
        """Stop every owned process, last started first; name -> outcome."""
        outcomes: dict[str, str] = {}
        while self._owned:
            name, stop = self._owned.pop()
            try:
                outcomes[name] = stop()
            except Exception as exc:  # one stopper failing must not leave the others running
                outcomes[name] = f"not stopped: {exc}"
            if self.report is not None:
                self.report(name, outcomes[name])
        return outcomes

    def __enter__(self) -> ProcessOwner:
        self._previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        stop_on_signals(self.stop, on_signal=self._remember)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self.stop.set()  # a poster or wait still running sees the end too
        self.stop_all()  # signals stay caught meanwhile: a second Ctrl-C cannot cut the clean-up short
        for sig, handler in self._previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(sig, handler)
        return exc_type is StartCancelled  # stopped during start-up: a clean end, exit 0

    def _remember(self, name: str) -> None:
        self.signal = self.signal or name
