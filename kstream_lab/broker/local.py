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
from typing import Any

from kstream_lab.broker.jars import fetch_jars, kafka_version
from kstream_lab.errors import BrokerError
from kstream_lab.kafka.admin import ping
from kstream_lab.processes import ManagedProcess, ProcessOwner, port_free
from kstream_lab.settings import ADMIN_USER, SCRAM_MECHANISM, Settings, local_secure_dir

LOG4J = Path(__file__).with_name("log4j2.properties")

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
controller.listener.names=CONTROLLER
{listeners}log.dirs={log_dir}
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

PLAINTEXT_LISTENERS = """\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
"""


def extra_listeners(block: str, extra: dict[int, str]) -> str:
    """The plaintext listener block with one more client listener per ``extra`` entry.

    Kafka answers a client's metadata request with the advertised address of the listener that client
    connected on, so a proxy (or NAT) in front of listener ``EXTERNAL_<port>`` keeps its clients coming
    back through it while every other client, and the broker itself, stays on ``broker_port``.
    """
    if not extra:
        return block
    names = {port: f"EXTERNAL_{port}" for port in sorted(extra)}
    listen = "".join(f",{name}://127.0.0.1:{port}" for port, name in names.items())
    advertise = "".join(f",{name}://{extra[port]}" for port, name in names.items())
    protocols = "".join(f",{name}:PLAINTEXT" for name in names.values())
    out = []
    for line in block.splitlines():
        key = line.split("=", 1)[0]
        line += {
            "listeners": listen,
            "advertised.listeners": advertise,
            "listener.security.protocol.map": protocols,
        }.get(key, "")
        out.append(line + "\n")
    return "".join(out)


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    kafka_version: str | None
    data_dir: Path
    data_bytes: int
    topics: list[str]
    security: str = "PLAINTEXT"
    ca_file: Path | None = None
    admin_user: str | None = None


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
        self.home = settings.local_broker_home
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
        self.process.refuse_if_running(
            "the local broker", self.bootstrap, "use it as is, or stop it first with `kstream-lab broker down`"
        )
        java = self._java()
        for port, name in (
            (self.settings.broker_port, "KSTREAM_BROKER_PORT"),
            (self.settings.controller_port, "KSTREAM_CONTROLLER_PORT"),
            *((port, "KSTREAM_BROKER_EXTRA_LISTENERS") for port in self.settings.broker_extra_listeners),
        ):
            if not port_free(port):
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is already in use",
                    hint=f"stop whatever listens there or set {name} to a free port",
                )
        lib = fetch_jars(self.settings.kafka_cache_dir)
        self.home.mkdir(parents=True, exist_ok=True)
        self._check_mode()
        props, scram = self._write_properties()
        self._format(java, lib, props, scram)
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
            **self._security_status(),
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

    @property
    def secure(self) -> bool:
        return self.settings.broker_secure or (local_secure_dir(self.home) / "admin.password").exists()

    def _security_status(self) -> dict[str, Any]:
        """What `broker status` shows about security (never a password)."""
        if not self.secure:
            return {}
        ca = local_secure_dir(self.home) / "ca.pem"
        return {"security": "SASL_SSL (SCRAM-SHA-512, ACLs)", "ca_file": ca, "admin_user": ADMIN_USER}

    def _check_mode(self) -> None:
        """A data dir formatted plaintext has no SCRAM users: it cannot simply be secured later."""
        if self.settings.broker_secure and (self.log_dir / "meta.properties").exists() and not self.secure:
            raise BrokerError(
                f"the local broker's data dir {self.home} was formatted without security",
                hint="use another KSTREAM_DATA_DIR for the secured broker, or wipe this one",
            )

    def _write_properties(self) -> tuple[Path, list[str]]:
        """server.properties (0600 when secured: it carries the admin's SCRAM login) and the storage
        tool's extra format arguments."""
        port, cport = self.settings.broker_port, self.settings.controller_port
        listeners = PLAINTEXT_LISTENERS.format(port=port, controller_port=cport)
        listeners, scram = extra_listeners(listeners, self.settings.broker_extra_listeners), []
        if self.secure and self.settings.broker_extra_listeners:
            raise BrokerError(
                "KSTREAM_BROKER_EXTRA_LISTENERS is supported on the plaintext local broker only",
                hint="unset it, or use a data dir without security",
            )
        if self.secure:
            from kstream_lab.broker.secure import scram_format_args, secure_listeners

            listeners, _, password = secure_listeners(self.home, port, cport)
            scram = scram_format_args(password)
        props = self.home / "server.properties"
        text = SERVER_PROPERTIES.format(listeners=listeners, log_dir=self.log_dir, controller_port=cport)
        if self.secure:
            from kstream_lab.broker.tls import write_private

            write_private(props, text.encode())
        else:
            props.write_text(text)
        return props, scram

    def _cluster_id(self) -> str:
        path = self.home / "cluster.id"
        if not path.exists():
            path.write_text(new_cluster_id())
        return path.read_text().strip()

    def _format(self, java: str, lib: Path, props: Path, scram: list[str]) -> None:
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
                *scram,
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            output = f"{proc.stdout[-800:]}{proc.stderr[-800:]}"
            for arg in scram:
                output = output.replace(arg, "--add-scram <hidden>")
            raise BrokerError(
                f"formatting the KRaft storage failed: {output}",
                hint=f"wipe {self.log_dir} if it belongs to another cluster",
            )

    def _answers(self) -> bool:
        try:
            ping(self._client_settings(), timeout=2)
        except BrokerError:
            return False
        return True

    def _client_settings(self) -> Settings:
        """This broker's own client view: its address and, when secured, its admin."""
        update: dict[str, object] = {"bootstrap_servers": self.bootstrap}
        if self.secure:
            from pydantic import SecretStr

            from kstream_lab.broker.secure import admin_password

            update.update(
                security_protocol="SASL_SSL",
                sasl_mechanism=SCRAM_MECHANISM,
                sasl_username=ADMIN_USER,
                sasl_password=SecretStr(admin_password(self.home)),
                ssl_ca_location=local_secure_dir(self.home) / "ca.pem",
            )
        return self.settings.model_copy(update=update)
