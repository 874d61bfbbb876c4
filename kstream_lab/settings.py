"""One typed settings object for the whole package.

Everything configurable comes from ``KSTREAM_*`` environment variables (or a ``.env`` file); code
receives a :class:`Settings` instance instead of reading globals, so tests and notebooks can point
the same code at another cluster by constructing or overriding one object.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KAFKA_VERSION = "4.4.0"


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
    ssl_ca_location: Path | None = None
    client_config: dict[str, str] = Field(
        default_factory=dict, description="Extra librdkafka properties, as JSON in KSTREAM_CLIENT_CONFIG."
    )

    schema_registry_url: str | None = Field(
        default=None, description="Schema registry URL; default: the local registry on registry_port."
    )
    registry_port: int = 8081
    schema_registry_user: str | None = Field(default=None, description="HTTP basic auth user for the registry.")
    schema_registry_password: SecretStr | None = Field(
        default=None, description="Its password (or KSTREAM_SCHEMA_REGISTRY_PASSWORD_FILE)."
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

    broker_port: int = 9092
    controller_port: int = 9093
    broker_heap_mb: int = Field(default=512, ge=256, le=512)
    kafka_cache_dir: Path = Path.home() / ".cache" / "kstream_lab" / f"kafka-{KAFKA_VERSION}"
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
    def _secret_files(cls, data: Any) -> Any:
        """``KSTREAM_<SECRET>_FILE`` names a file holding a secret (how Kubernetes mounts Secrets); the
        variable itself or an explicit value wins. Trailing newlines are dropped."""
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            if field.annotation != SecretStr | None or data.get(name) is not None:
                continue
            path = os.environ.get(f"KSTREAM_{name.upper()}_FILE")
            if path:
                data[name] = read_secret_file(Path(path), f"KSTREAM_{name.upper()}_FILE")
        return data

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
    def uses_local_broker(self) -> bool:
        return self.bootstrap_servers is None

    def librdkafka_security(self) -> dict[str, str]:
        """Client security options, passed through to librdkafka unchanged."""
        conf: dict[str, str] = {"security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            conf["sasl.mechanisms"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = str(self.ssl_ca_location)
        conf.update(self.client_config)
        return conf


def read_secret_file(path: Path, what: str) -> str:
    """A secret from a file; a clear error (never the content) when it cannot be read."""
    from kstream_lab.errors import ConfigError

    try:
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}", hint="point it at a readable file") from None


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides winning."""
    return Settings(**overrides)  # type: ignore[arg-type]
