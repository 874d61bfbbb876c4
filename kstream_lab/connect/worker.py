"""The local Kafka Connect worker (distributed mode): `kstream-lab connect up|down|status|logs`.

One Apache Kafka Connect process per data dir, a :class:`~kstream_lab.processes.ManagedProcess`
named "connect", on the same Kafka version as the broker. Its state is in Kafka (the config,
offset and status topics ``<connect_group_id>-configs|-offsets|-status`` on our broker), so a
restarted worker -- after a crash or a SIGKILL -- resumes every connector where its committed
offsets say. Under ``<data_dir>/connect`` live only the generated worker properties (0600: they may
carry the broker login), the pid file and the log. REST answers on ``127.0.0.1:<connect_port>``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from kstream_lab.connect.jars import fetch_connect, lib_dir, plugin_dir
from kstream_lab.connect.rest import ConnectClient
from kstream_lab.errors import ConnectError
from kstream_lab.processes import ManagedProcess, ProcessOwner, http_probe, port_free
from kstream_lab.settings import Settings

LOG4J = Path(__file__).with_name("log4j2.properties")

WORKER_PROPERTIES = """\
bootstrap.servers={bootstrap}
group.id={group}
config.storage.topic={group}-configs
offset.storage.topic={group}-offsets
status.storage.topic={group}-status
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.storage.partitions=5
status.storage.partitions=1
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
listeners=http://127.0.0.1:{port}
rest.advertised.host.name=127.0.0.1
rest.advertised.port={port}
plugin.path={plugins}
plugin.discovery=hybrid_warn
offset.flush.interval.ms=1000
scheduled.rebalance.max.delay.ms=0
connector.client.config.override.policy=All
"""


@dataclass(frozen=True)
class ConnectStatus:
    running: bool
    pid: int | None
    url: str
    version: str | None
    connectors: dict[str, str]  # name -> "RUNNING", "FAILED: <trace's first line>", ...
    log_file: Path

    @property
    def answers(self) -> bool:
        """Its REST API answered (a worker serves ``url``, started here or not)."""
        return self.version is not None


def java_security(settings: Settings) -> dict[str, str]:
    """The Kafka Java clients' security properties for the connection ``settings`` describe.

    librdkafka's and the Java client's names differ; this maps the ones kstream_lab sets (protocol,
    SASL PLAIN/SCRAM with a password, a PEM CA). Other librdkafka-only options have no mapping and
    are refused rather than silently dropped.
    """
    conf = settings.librdkafka_security()
    out = {"security.protocol": conf.pop("security.protocol", "PLAINTEXT")}
    if mechanism := conf.pop("sasl.mechanisms", None):
        user, password = conf.pop("sasl.username", ""), conf.pop("sasl.password", "")
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        quote = lambda text: text.replace("\\", "\\\\").replace('"', '\\"')  # noqa: E731
        out["sasl.mechanism"] = mechanism
        out["sasl.jaas.config"] = f'{module} required username="{quote(user)}" password="{quote(password)}";'
    if ca := conf.pop("ssl.ca.location", None):
        out["ssl.truststore.type"] = "PEM"
        out["ssl.truststore.location"] = str(Path(ca).resolve())
    if conf:
        raise ConnectError(
            f"client settings {', '.join(sorted(conf))} have no Kafka Connect (Java client) equivalent here",
            hint="unset them for the Connect worker, or run Connect yourself and set KSTREAM_CONNECT_URL",
        )
    return out


class LocalConnect:
    """The local Connect worker for one data dir."""

    def __init__(
        self,
        settings: Settings,
        *,
        home: Path | None = None,
        name: str = "connect",
        pid_file: Path | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.settings = settings
        self.home = home or settings.data_dir.resolve() / "connect"
        self.url = f"http://127.0.0.1:{settings.connect_port}"
        self.client = ConnectClient(self.url)
        self.process = ManagedProcess(
            name,
            command=(),  # set by ``prepare``: the classpath is known once the jars are fetched
            pid_file=pid_file or self.home / "connect.pid",
            log_file=log_file or self.home / "connect.log",
            ready=http_probe(f"{self.url}/connectors"),  # 200 only once the worker joined its group
            cwd=self.home,
            error=ConnectError,
            stop_timeout=30.0,  # a clean stop commits the sink tasks' offsets
        )

    @property
    def log_file(self) -> Path:
        return self.process.log_file

    def pid(self) -> int | None:
        return self.process.pid()

    def up(self, *, timeout: float = 120.0, owner: ProcessOwner | None = None) -> str:
        """Start the worker in the background and wait until its REST API lists connectors."""
        self.process.refuse_if_running(
            "the local Connect worker", self.url, "use it as is, or stop it first with `kstream-lab connect down`"
        )
        java = shutil.which("java")
        if java is None:
            raise ConnectError("Java not found on PATH; Kafka Connect needs Java 17+", hint="install openjdk-17")
        if not port_free(self.settings.connect_port):
            raise ConnectError(
                f"port {self.settings.connect_port} on 127.0.0.1 is already in use",
                hint="stop whatever listens there or set KSTREAM_CONNECT_PORT to a free port",
            )
        self.prepare(java)
        self.process.up(timeout, owner=owner)
        return self.url

    def prepare(self, java: str | None = None) -> ManagedProcess:
        """Jars fetched, worker properties written, the command set: the process, ready to start
        (the pipeline's supervisor starts it this way when ``workers.sink.kind`` is connect)."""
        java = java or shutil.which("java")
        if java is None:
            raise ConnectError("Java not found on PATH; Kafka Connect needs Java 17+", hint="install openjdk-17")
        fetch_connect(self.settings.kafka_cache_dir)
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.write_properties()
        heap = self.settings.connect_heap_mb
        self.process.command = [
            java,
            f"-Xms{min(256, heap)}m",
            f"-Xmx{heap}m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J}",
            "-cp",
            f"{lib_dir(self.settings.kafka_cache_dir)}/*",
            "org.apache.kafka.connect.cli.ConnectDistributed",
            str(props),
        ]
        return self.process

    def write_properties(self) -> Path:
        text = WORKER_PROPERTIES.format(
            bootstrap=self.settings.bootstrap,
            group=self.settings.connect_group_id,
            port=self.settings.connect_port,
            plugins=plugin_dir(self.settings.kafka_cache_dir),
        )
        security = java_security(self.settings)
        lines = [text]
        if security["security.protocol"] != "PLAINTEXT":
            # the worker's own clients, then the ones it makes for connectors and the dead-letter queue
            for prefix in ("", "producer.", "consumer.", "admin."):
                lines += [f"{prefix}{k}={v}\n" for k, v in security.items()]
        props = self.home / "connect-distributed.properties"
        self.home.mkdir(parents=True, exist_ok=True)
        props.touch(mode=0o600, exist_ok=True)
        props.chmod(0o600)
        props.write_text("".join(lines))
        return props

    def down(self, *, timeout: float = 30.0) -> bool:
        """SIGTERM (tasks commit their offsets), SIGKILL after ``timeout``; True when it stopped cleanly."""
        return self.process.stop(timeout) != "killed"

    def status(self) -> ConnectStatus:
        """This data dir's worker (pid), and what the REST API on ``connect_port`` answers -- also when
        another data dir's worker, or the pipeline's Connect sink, serves it."""
        pid = self.pid()
        version, connectors = None, {}
        try:
            version = self.client.version()
            connectors = self.client.states()
        except ConnectError:
            pass
        return ConnectStatus(pid is not None, pid, self.url, version, connectors, self.log_file)

    def log_tail(self, lines: int = 50) -> str:
        return self.process.log_tail(lines)
