"""The secured broker used by tests: admin settings, users made on demand, env for CLI subprocesses."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from pydantic import SecretStr

from kstream_lab.settings import SCRAM_MECHANISM, Settings


@dataclass
class SecureKafka:
    """A running secured local broker (SASL_SSL, SCRAM-SHA-512, StandardAuthorizer)."""

    settings: Settings  # as the admin super user
    passwords: list[str] = field(default_factory=list)  # every password handed out, for leak checks

    @property
    def admin_password(self) -> str:
        return (self.settings.local_broker_home / "secure" / "admin.password").read_text().strip()

    @property
    def ca_file(self) -> str:
        return str(self.settings.local_broker_home / "secure" / "ca.pem")

    def env(self, user: str | None = None, password: str | None = None) -> dict[str, str]:
        """KSTREAM_* variables for a CLI subprocess talking to this broker (as admin unless ``user``)."""
        s = self.settings
        out = {
            "KSTREAM_DATA_DIR": str(s.data_dir),
            "KSTREAM_BROKER_PORT": str(s.broker_port),
            "KSTREAM_CONTROLLER_PORT": str(s.controller_port),
            "KSTREAM_BROKER_SECURE": "true",
        }
        if user is not None:
            out["KSTREAM_SASL_USERNAME"] = user
        if password is not None:
            out["KSTREAM_SASL_PASSWORD"] = password
        return out

    def as_user(self, user: str, password: str) -> Settings:
        """Settings of a client logging in as ``user``."""
        return self.settings.model_copy(update={"sasl_username": user, "sasl_password": SecretStr(password)})

    def make_user(self, prefix: str = "user", password: str | None = None) -> tuple[str, str, Settings]:
        """A new SCRAM user (unique name); returns name, password and its client settings."""
        from kstream_lab.kafka.users import set_password

        name = f"{prefix}-{secrets.token_hex(4)}"
        password = password or secrets.token_urlsafe(18)
        self.passwords.append(password)
        set_password(self.settings, name, password, mechanism=SCRAM_MECHANISM)
        return name, password, self.as_user(name, password)
