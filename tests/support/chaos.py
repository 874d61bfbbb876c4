"""A broker of the chaos suite's own: killed with SIGKILL and restarted without touching the session's.

The chaos tests crash the broker under load, so they cannot share the session broker with the other
suites. :class:`ChaosKafka` runs a second local broker and registry on free ports in their own data
dir; ``env`` is what worker processes need to use it instead of the session's.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kstream_lab.broker import LocalBroker
from kstream_lab.local_registry import LocalRegistry
from kstream_lab.settings import Settings
from tests.support.paths import free_port


@dataclass
class ChaosKafka:
    settings: Settings
    broker: LocalBroker
    registry: LocalRegistry

    @classmethod
    def start(cls, data_dir: Path, **settings_overrides: Any) -> ChaosKafka:
        """Broker, then registry, on free ports in ``data_dir``; ``settings_overrides`` (e.g.
        ``broker_extra_listeners``) go into its :class:`Settings`."""
        settings = Settings(
            bootstrap_servers=None,
            schema_registry_url=None,
            data_dir=data_dir,
            broker_port=free_port(),
            controller_port=free_port(),
            registry_port=free_port(),
            **settings_overrides,
        )
        broker = LocalBroker(settings)
        broker.up(timeout=120)
        registry = LocalRegistry(settings)
        try:
            registry.up(timeout=60)
        except BaseException:
            broker.down(timeout=30)
            raise
        return cls(settings, broker, registry)

    def stop(self) -> None:
        try:
            self.registry.down(timeout=15)
        finally:
            self.broker.down(timeout=30)

    @property
    def env(self) -> dict[str, str]:
        """KSTREAM_* variables pointing a worker or CLI process at this broker and registry."""
        s = self.settings
        return {
            "KSTREAM_DATA_DIR": str(s.data_dir),
            "KSTREAM_BROKER_PORT": str(s.broker_port),
            "KSTREAM_CONTROLLER_PORT": str(s.controller_port),
            "KSTREAM_REGISTRY_PORT": str(s.registry_port),
        }

    def kill_broker(self) -> int:
        """SIGKILL the broker (no controlled shutdown, nothing flushed) and reap it; returns its pid."""
        pid = self.broker.pid()
        assert pid is not None, "the chaos broker is not running"
        os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)  # started by this process: reap it, or it lingers as a zombie that "runs"
        except ChildProcessError:
            while _alive(pid):
                time.sleep(0.05)
        return pid

    def restart_broker(self) -> None:
        """Start the killed broker again on the same ports and data dir (its log recovery runs first)."""
        self.broker.process.pid_file.unlink(missing_ok=True)
        deadline = time.monotonic() + 30
        while True:  # the killed JVM's listening sockets can take a moment to be released
            try:
                self.broker.up(timeout=120)
                return
            except Exception as exc:  # noqa: BLE001 -- retried only for "port in use"; anything else re-raised
                if "already in use" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
