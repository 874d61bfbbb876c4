"""Start, stop and inspect the local single-node Kafka (KRaft combined broker+controller).

State lives under ``<data_dir>/broker``: the cluster id (kept forever, so restarts reuse the
formatted log dirs), the generated server.properties, the pid file and the broker log.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from kstream_lab.broker.jars import fetch_jars, kafka_version
from kstream_lab.errors import BrokerError
from kstream_lab.kafka.admin import ping
from kstream_lab.processes import ManagedProcess, ProcessOwner, port_free
from kstream_lab.settings import Settings

LOG4J = Path(__file__).with_name("log4j2.properties")

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={log_dir}
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
auto.create.topics.enable=false
log.flush.interval.messages=9223372036854775807
controlled.shutdown.enable=true
"""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    kafka_version: str | None
    data_dir: Path
    data_bytes: int
    topics: list[str]


def new_cluster_id() -> str:
    """A random Kafka cluster id (URL-safe base64 of a UUID, no padding).

    Like Kafka's own Uuid.randomUuid, ids starting with "-" are drawn again: the storage tool's
    argument parser would take such an id for an option.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _dir_size(path: Path) -> int:
    """Bytes on disk (Kafka preallocates index files, so apparent sizes overstate)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) if path.exists() else 0


class LocalBroker:
    """One local Kafka process per data dir (a :class:`ManagedProcess` named "kafka")."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.data_dir.resolve() / "broker"
        self.log_dir = self.home / "kraft-logs"
        self.bootstrap = f"127.0.0.1:{settings.broker_port}"
        self.process = ManagedProcess(
            "kafka",
            command=(),  # set by ``up``: the classpath is known once the jars are fetched
            pid_file=self.home / "broker.pid",
            log_file=self.home / "broker.log",
            ready=self._answers,
            cwd=self.home,
            error=BrokerError,
            stop_timeout=30.0,  # a controlled shutdown moves leadership and flushes first
        )

    @property
    def pid_file(self) -> Path:
        return self.process.pid_file

    @property
    def log_file(self) -> Path:
        return self.process.log_file

    # ---- lifecycle -------------------------------------------------------------------------
    def up(self, *, timeout: float = 90.0, owner: ProcessOwner | None = None) -> str:
        """Start the broker in the background and wait until it answers metadata requests."""
        if (pid := self.pid()) is not None:
            raise BrokerError(
                f"the local broker is already running (pid {pid}) at {self.bootstrap}",
                hint="use it as is, or stop it first with `kstream-lab broker down`",
            )
        java = self._java()
        for port, name in (
            (self.settings.broker_port, "KSTREAM_BROKER_PORT"),
            (self.settings.controller_port, "KSTREAM_CONTROLLER_PORT"),
        ):
            if not port_free(port):
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is already in use",
                    hint=f"stop whatever listens there or set {name} to a free port",
                )
        lib = fetch_jars(self.settings.kafka_cache_dir)
        self.home.mkdir(parents=True, exist_ok=True)
        props = self._write_properties()
        self._format(java, lib, props)
        self.process.command = [*self._jvm(java, lib), "kafka.Kafka", str(props)]
        self.process.up(timeout, owner=owner)
        return self.bootstrap

    def down(self, *, timeout: float = 30.0) -> bool:
        """SIGTERM, wait for a controlled shutdown, SIGKILL only as a last resort.

        Returns True when the broker stopped cleanly (or was not running).
        """
        return self.process.stop(timeout) != "killed"

    def status(self) -> BrokerStatus:
        pid = self.pid()
        topics: list[str] = []
        if pid is not None:
            try:
                topics = [t for t in ping(self._client_settings(), timeout=5) if not t.startswith("__")]
            except BrokerError:
                topics = []
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap=self.bootstrap,
            kafka_version=kafka_version(self.settings.kafka_cache_dir),
            data_dir=self.home,
            data_bytes=_dir_size(self.log_dir),
            topics=topics,
        )

    def pid(self) -> int | None:
        """The broker's pid if its pid file names a live process."""
        return self.process.pid()

    def log_tail(self, lines: int = 50) -> str:
        return self.process.log_tail(lines)

    # ---- internals -------------------------------------------------------------------------
    @staticmethod
    def _java() -> str:
        java = shutil.which("java")
        if java is None:
            raise BrokerError(
                "Java not found on PATH; the local Kafka broker needs Java 17+",
                hint="install openjdk-17-jre-headless, or point KSTREAM_BOOTSTRAP_SERVERS at an existing cluster",
            )
        return java

    def _jvm(self, java: str, lib: Path) -> list[str]:
        heap = self.settings.broker_heap_mb
        return [
            java,
            f"-Xms{min(256, heap)}m",
            f"-Xmx{heap}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J}",
            "-cp",
            f"{lib}/*",
        ]

    def _write_properties(self) -> Path:
        props = self.home / "server.properties"
        props.write_text(
            SERVER_PROPERTIES.format(
                port=self.settings.broker_port, controller_port=self.settings.controller_port, log_dir=self.log_dir
            )
        )
        return props

    def _cluster_id(self) -> str:
        path = self.home / "cluster.id"
        if not path.exists():
            path.write_text(new_cluster_id())
        return path.read_text().strip()

    def _format(self, java: str, lib: Path, props: Path) -> None:
        if (self.log_dir / "meta.properties").exists():
            return
        proc = subprocess.run(
            [
                *self._jvm(java, lib),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                self._cluster_id(),
                "-c",
                str(props),
                "--standalone",
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise BrokerError(
                f"formatting the KRaft storage failed: {proc.stdout[-800:]}{proc.stderr[-800:]}",
                hint=f"wipe {self.log_dir} if it belongs to another cluster",
            )

    def _answers(self) -> bool:
        try:
            ping(self._client_settings(), timeout=2)
        except BrokerError:
            return False
        return True

    def _client_settings(self) -> Settings:
        return self.settings.model_copy(update={"bootstrap_servers": self.bootstrap})
