"""The secured broker used by tests: admin settings, users made on demand, env for CLI subprocesses.

Its local registry takes basic auth with two users: ``ops`` may register schemas (the workers and the
admin use it), ``reader`` may only read (the analyst uses it).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from kstream_lab.settings import SCRAM_MECHANISM, Settings

REGISTRY_WRITER, REGISTRY_READER = "ops", "reader"
CAPTURED: list[str] = []  # CLI outputs the security tests saw, for the leak check
LOGS: list[Path] = []  # worker logs written outside the secured data dir, for the leak check


@dataclass
class SecureKafka:
    """A running secured local broker (SASL_SSL, SCRAM-SHA-512, StandardAuthorizer)."""

    settings: Settings  # as the admin super user (and the registry's read-write user)
    passwords: list[str] = field(default_factory=list)  # every password handed out, for leak checks
    registry_passwords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def with_registry_users(cls, settings: Settings) -> SecureKafka:
        """Write the registry's users file (random passwords) into the data dir; admin settings use ``ops``."""
        passwords = {REGISTRY_WRITER: secrets.token_urlsafe(18), REGISTRY_READER: secrets.token_urlsafe(18)}
        users = Path(settings.data_dir) / "registry-users.yaml"
        users.write_text(
            f"{REGISTRY_WRITER}: {{role: write, password: {passwords[REGISTRY_WRITER]}}}\n"
            f"{REGISTRY_READER}: {{role: read, password: {passwords[REGISTRY_READER]}}}\n"
        )
        users.chmod(0o600)
        admin = settings.model_copy(
            update={
                "registry_users_file": users,
                "schema_registry_user": REGISTRY_WRITER,
                "schema_registry_password": SecretStr(passwords[REGISTRY_WRITER]),
            }
        )
        return cls(admin, list(passwords.values()), passwords)

    @property
    def admin_password(self) -> str:
        return (self.settings.local_broker_home / "secure" / "admin.password").read_text().strip()

    @property
    def ca_file(self) -> str:
        return str(self.settings.local_broker_home / "secure" / "ca.pem")

    def env(
        self, user: str | None = None, password: str | None = None, *, registry_user: str = REGISTRY_WRITER
    ) -> dict[str, str]:
        """KSTREAM_* variables for a CLI subprocess talking to this broker (as admin unless ``user``)."""
        s = self.settings
        out = {
            "KSTREAM_DATA_DIR": str(s.data_dir),
            "KSTREAM_BROKER_PORT": str(s.broker_port),
            "KSTREAM_CONTROLLER_PORT": str(s.controller_port),
            "KSTREAM_REGISTRY_PORT": str(s.registry_port),
            "KSTREAM_BROKER_SECURE": "true",
            "KSTREAM_SCHEMA_REGISTRY_USER": registry_user,
            "KSTREAM_SCHEMA_REGISTRY_PASSWORD": self.registry_passwords[registry_user],
        }
        if user is not None:
            out["KSTREAM_SASL_USERNAME"] = user
        if password is not None:
            out["KSTREAM_SASL_PASSWORD"] = password
        return out

    def as_user(self, user: str, password: str, *, registry_user: str = REGISTRY_WRITER) -> Settings:
        """Settings of a client logging in as ``user``."""
        return self.settings.model_copy(
            update={
                "sasl_username": user,
                "sasl_password": SecretStr(password),
                "schema_registry_user": registry_user,
                "schema_registry_password": SecretStr(self.registry_passwords[registry_user]),
            }
        )

    def make_user(self, prefix: str = "user", password: str | None = None) -> tuple[str, str, Settings]:
        """A new SCRAM user (unique name); returns name, password and its client settings."""
        name = f"{prefix}-{secrets.token_hex(4)}"
        password = self.set_password(name, password)
        return name, password, self.as_user(name, password)

    def set_password(self, name: str, password: str | None = None) -> str:
        """Create ``name`` or give it a new password (random unless given); returns the password."""
        from kstream_lab.kafka.users import set_password

        password = password or secrets.token_urlsafe(18)
        self.passwords.append(password)
        set_password(self.settings, name, password, mechanism=SCRAM_MECHANISM)
        return password
