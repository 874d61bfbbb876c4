"""One typed settings object for the whole package.

Everything configurable comes from ``KSTREAM_*`` environment variables (or a ``.env`` file); code
receives a :class:`Settings` instance instead of reading globals, so tests and notebooks can point
the same code at another cluster by constructing or overriding one object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KAFKA_VERSION = "4.4.0"
ADMIN_USER = "admin"  # the secured local broker's one super user
SCRAM_MECHANISM = "SCRAM-SHA-512"
READ_GROUP_PREFIX = "kstream-lab-read-"  # bounded reads' throw-away consumer groups: <prefix><random>


def local_secure_dir(broker_home: Path) -> Path:
    """Where the secured local broker keeps its CA, certificate and admin password."""
    return broker_home / "secure"


def read_secret_file(path: Path, setting: str) -> str:
    """A secret mounted as a file (as Kubernetes mounts Secrets): its content without the trailing newline."""
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read {path}: {exc.strerror}") from None


class Settings(BaseSettings):
    """Where the broker and registry are, how to authenticate, and where local state lives."""

    model_config = SettingsConfigDict(env_prefix="KSTREAM_", env_file=".env", extra="ignore", frozen=True)

    bootstrap_servers: str | None = Field(
        default=None, description="Kafka bootstrap servers; default: the local broker on broker_port."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = Field(
        default=None, description="A file holding sasl_password (a mounted Secret); read at start-up."
    )
    ssl_ca_location: Path | None = None
    client_config: dict[str, str] = Field(
        default_factory=dict,
        repr=False,  # may carry secrets (sasl.password, ssl.key.password): never printed
        description="Extra librdkafka properties, as JSON in KSTREAM_CLIENT_CONFIG.",
    )
    broker_secure: bool = Field(
        default=False,
        description="Run the local broker secured (SASL_SSL SCRAM-SHA-512, ACLs); a data dir formatted "
        "secured stays secured, and clients of the local broker then default to its admin and CA.",
    )

    schema_registry_url: str | None = Field(
        default=None, description="Schema registry URL; default: the local registry on registry_port."
    )
    registry_port: int = 8081
    schema_registry_user: str | None = Field(default=None, description="HTTP basic auth user for the registry.")
    schema_registry_password: SecretStr | None = Field(
        default=None, description="Its password (or KSTREAM_SCHEMA_REGISTRY_PASSWORD_FILE)."
    )
    schema_registry_password_file: Path | None = Field(
        default=None, description="A file holding the registry password (a mounted Secret)."
    )
    schema_registry_ca_location: Path | None = Field(
        default=None, description="CA bundle that signed an https registry's certificate."
    )
    registry_users_file: Path | None = Field(
        default=None,
        description="The local registry's users (YAML: name: {role: read|write, password|password_file: ...}); "
        "unset: no authentication.",
    )
    registry_tls_cert: Path | None = Field(
        default=None, description="PEM certificate: the local registry serves https."
    )
    registry_tls_key: Path | None = Field(default=None, description="Its PEM private key.")

    data_dir: Path = Path(".kstream_lab")
    reports_dir: Path = Path("reports")
    notebooks_dir: Path = Path("notebooks")
    schedules_file: Path = Path("pipelines/schedules.yaml")
    lineage_file: Path | None = Field(
        default=None, description="Set by the notebook runner: replay appends the ranges it read here."
    )
    pipeline_file: Path = Path("pipelines/orders.yaml")
    replay_cache: bool | None = Field(
        default=None,
        description="Keep replayed ranges as Parquet under data_dir/replay-cache and read them back exactly; "
        "unset: on inside a Jupyter kernel (and notebook runs), off elsewhere (workers, CLI).",
    )
    replay_cache_max_bytes: int = Field(
        default=4 * 1024**3, ge=0, description="Size cap of the replay cache; least recently used segments go first."
    )
    replay_cache_memory_bytes: int = Field(
        default=1024**3, ge=0, description="Frames of the replay cache also kept in this process's memory (re-runs)."
    )
    traces_file: Path | None = Field(
        default=None, description="With OTEL_TRACES_EXPORTER=file: spans are appended here, one JSON object a line."
    )
    read_group_prefix: str = Field(
        default=READ_GROUP_PREFIX,
        min_length=1,
        description="Bounded reads (replay, back-tests, state restores) name their throw-away consumer group "
        "<prefix><random>; it is never committed to, but finding its coordinator needs DESCRIBE on it.",
    )

    broker_port: int = 9092
    controller_port: int = 9093
    broker_heap_mb: int = Field(default=512, ge=256, le=512)
    broker_extra_listeners: dict[int, str] = Field(
        default_factory=dict,
        description="More client listeners of the local broker, as JSON {local port: advertised host:port}: "
        "each listens on 127.0.0.1:<port> and tells its clients to come back at the advertised address "
        "(a proxy or NAT in front of it); broker_port stays as it is. Plaintext broker only.",
    )
    kafka_cache_dir: Path = Path.home() / ".cache" / "kstream_lab" / f"kafka-{KAFKA_VERSION}"
    connect_url: str | None = Field(
        default=None, description="Kafka Connect REST URL; default: the local Connect worker on connect_port."
    )
    connect_port: int = 8083
    connect_group_id: str = Field(
        default="kstream-lab-connect",
        min_length=1,
        description="The local Connect worker's group; its config, offset and status topics are "
        "<group>-configs, <group>-offsets and <group>-status.",
    )
    connect_heap_mb: int = Field(default=512, ge=256, le=2048)
    replay_fetch: Literal["auto", "native", "python"] = Field(
        default="auto",
        description="How replay fetches: the native C loop (built on first use), confluent-kafka's "
        "Python API, or auto (native when it can be built here).",
    )
    native_cache_dir: Path = Field(
        default=Path.home() / ".cache" / "kstream_lab" / "native",
        description="Where replay's native fetch library is built.",
    )

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: object) -> object:
        """``X_file`` fills secret ``X`` from a file; setting both is ambiguous and refused."""
        if not isinstance(data, dict):
            return data
        for name in [
            k for k in cls.model_fields if k.endswith("_file") and k.removesuffix("_file") in cls.model_fields
        ]:
            secret, path = name.removesuffix("_file"), data.get(name)
            if not path:
                continue
            if data.get(secret):
                env = f"KSTREAM_{secret.upper()}"
                raise ValueError(f"both {env} and {env}_FILE are set; set one")
            data = {**data, secret: read_secret_file(Path(path), f"KSTREAM_{name.upper()}")}
        return data

    @field_validator("broker_extra_listeners")
    @classmethod
    def _check_extra_listeners(cls, value: dict[int, str]) -> dict[int, str]:
        """Refused at start-up rather than by the broker: a bad address would only surface as clients
        that connect once and then never again."""
        for port, address in value.items():
            host, sep, advertised = address.rpartition(":")
            if (
                not 0 < port < 65536
                or not sep
                or not host
                or not advertised.isdigit()
                or not 0 < int(advertised) < 65536
            ):
                raise ValueError(
                    f"KSTREAM_BROKER_EXTRA_LISTENERS: {port}: {address!r} must be a local port 1-65535 mapped to "
                    'an advertised host:port, e.g. {"19092": "proxy.example:9092"}'
                )
        return value

    @field_validator("client_config", mode="before")
    @classmethod
    def _parse_client_config(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers clients dial (a plain property: ``model_copy(update=...)`` copies
        cached values, which would keep pointing at the old ports)."""
        return self.bootstrap_servers or f"127.0.0.1:{self.broker_port}"

    @property
    def registry_url(self) -> str:
        """The schema registry clients talk to."""
        scheme = "https" if self.registry_tls_cert else "http"
        return (self.schema_registry_url or f"{scheme}://127.0.0.1:{self.registry_port}").rstrip("/")

    @property
    def connect_rest_url(self) -> str:
        """The Kafka Connect REST API clients talk to."""
        return (self.connect_url or f"http://127.0.0.1:{self.connect_port}").rstrip("/")

    @property
    def uses_local_broker(self) -> bool:
        return self.bootstrap_servers is None

    @property
    def local_broker_home(self) -> Path:
        return self.data_dir.resolve() / "broker"

    @property
    def local_broker_secure(self) -> bool:
        """Clients talk to a secured local broker: asked for, or the data dir was formatted secured."""
        if not self.uses_local_broker:
            return False
        return self.broker_secure or (local_secure_dir(self.local_broker_home) / "admin.password").exists()

    def librdkafka_security(self) -> dict[str, str]:
        """Client security options, passed through to librdkafka unchanged.

        Against the secured local broker, what is not set explicitly defaults to that broker's: SASL_SSL,
        SCRAM-SHA-512, its CA, and its admin (password from its 0600 file) unless another user is named.
        """
        protocol: str = self.security_protocol
        mechanism: str | None = self.sasl_mechanism
        user, ca = self.sasl_username, self.ssl_ca_location
        password = self.sasl_password.get_secret_value() if self.sasl_password else None
        if self.local_broker_secure:
            secure = local_secure_dir(self.local_broker_home)
            protocol = protocol if "security_protocol" in self.model_fields_set else "SASL_SSL"
            mechanism, user, ca = mechanism or SCRAM_MECHANISM, user or ADMIN_USER, ca or secure / "ca.pem"
            if password is None and user == ADMIN_USER and (secure / "admin.password").exists():
                password = read_secret_file(secure / "admin.password", "admin password")
        conf: dict[str, str] = {"security.protocol": protocol}
        if mechanism:
            conf["sasl.mechanisms"] = mechanism
        if user:
            conf["sasl.username"] = user
        if password:
            conf["sasl.password"] = password
        if ca:
            conf["ssl.ca.location"] = str(ca)
        conf.update(self.client_config)
        return conf

    def kafka_env(self) -> dict[str, str | None]:
        """These settings' Kafka connection as ``KSTREAM_*`` variables for a child process (the local
        registry): where Kafka is and how to log in. ``None`` unsets an inherited variable, so a child
        of the local broker derives its defaults (CA, admin) the way this process did."""
        env: dict[str, str | None] = {"KSTREAM_DATA_DIR": str(self.data_dir.resolve())}
        if self.uses_local_broker:
            env |= {"KSTREAM_BOOTSTRAP_SERVERS": None, "KSTREAM_BROKER_PORT": str(self.broker_port)}
            env["KSTREAM_BROKER_SECURE"] = "true" if self.local_broker_secure else None
        else:
            env["KSTREAM_BOOTSTRAP_SERVERS"] = self.bootstrap_servers
        if "security_protocol" in self.model_fields_set:
            env["KSTREAM_SECURITY_PROTOCOL"] = self.security_protocol
        for name in ("sasl_mechanism", "sasl_username", "ssl_ca_location"):
            if (value := getattr(self, name)) is not None:
                env[f"KSTREAM_{name.upper()}"] = str(value)
        if self.sasl_password_file is not None:
            env |= {"KSTREAM_SASL_PASSWORD_FILE": str(self.sasl_password_file.resolve()), "KSTREAM_SASL_PASSWORD": None}
        elif self.sasl_password is not None:
            env |= {"KSTREAM_SASL_PASSWORD": self.sasl_password.get_secret_value(), "KSTREAM_SASL_PASSWORD_FILE": None}
        if self.client_config:
            env["KSTREAM_CLIENT_CONFIG"] = json.dumps(self.client_config)
        return env


def is_secret_setting(name: str) -> bool:
    """Settings whose values are never shown (SecretStr fields, and the free-form client config)."""
    field = Settings.model_fields.get(name)
    return name == "client_config" or (field is not None and "SecretStr" in str(field.annotation))


def get_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, with explicit overrides winning."""
    return Settings(**overrides)
