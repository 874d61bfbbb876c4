"""HTTP basic auth for the local registry: read-only and read-write users, answered like Confluent's.

Users come from a small YAML file (``KSTREAM_REGISTRY_USERS_FILE``)::

    admin:   {role: write, password_file: /run/secrets/registry-admin}
    analyst: {role: read,  password: s3cret}

No file, no authentication (the local default). With one, every request but the readiness probe
``GET /`` needs a known user and password (401, error code 40101, ``WWW-Authenticate: Basic``), and
a change (registering a schema, setting or deleting a compatibility level, deleting a subject or
version) needs the ``write`` role (403, error code 40301). Lookups and compatibility checks are
reads, as in Confluent's registry. Passwords are compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, model_validator

from kstream_lab.errors import ConfigError
from kstream_lab.settings import read_secret_file

Role = Literal["read", "write"]
OPEN_PATHS = frozenset({"/"})


class _UserEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Role
    password: SecretStr | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one_password(self) -> _UserEntry:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("give exactly one of `password` and `password_file`")
        return self


@dataclass(frozen=True)
class RegistryUser:
    name: str
    role: Role
    password: SecretStr


class Refused(Exception):
    """The request may not proceed: ``status`` 401 or 403 with Confluent's error code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class RegistryUsers:
    """Who may read and who may write; :meth:`check` is the whole policy."""

    def __init__(self, users: list[RegistryUser]) -> None:
        self.users = {u.name: u for u in users}

    @classmethod
    def load(cls, path: Path) -> RegistryUsers:
        """Read the users file; ConfigError naming the file and the user on any problem."""
        where = f"registry users file {path}"
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {where}: {exc.strerror}", hint="fix KSTREAM_REGISTRY_USERS_FILE") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(data, dict) or not data:
            raise ConfigError(f"{where}: expected a mapping `name: {{role: read|write, password: ...}}`")
        users = []
        for name, body in data.items():
            try:
                entry = _UserEntry.model_validate(body)
            except ValidationError as exc:
                err = exc.errors()[0]
                key = ".".join(map(str, err["loc"])) or "entry"
                raise ConfigError(f"{where}: user {name!r}: {key}: {err['msg']}") from None
            secret = entry.password
            if secret is None and entry.password_file is not None:
                try:
                    secret = SecretStr(read_secret_file(entry.password_file, f"{where}: user {name!r}"))
                except ValueError as exc:
                    raise ConfigError(str(exc), hint="point password_file at a readable file") from None
            assert secret is not None
            users.append(RegistryUser(str(name), entry.role, secret))
        return cls(users)

    def check(self, method: str, path: str, authorization: str | None) -> RegistryUser | None:
        """The authenticated user, None for the open probe; :class:`Refused` when not allowed."""
        if path in OPEN_PATHS and method == "GET":
            return None
        user = self._authenticate(authorization)
        if is_write(method, path) and user.role != "write":
            raise Refused(403, 40301, f"User '{user.name}' is read-only and may not {method} {path}")
        return user

    def _authenticate(self, authorization: str | None) -> RegistryUser:
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise Refused(401, 40101, "Unauthorized: this registry needs HTTP basic authentication")
        try:
            name, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Refused(401, 40101, "Unauthorized: malformed basic credentials") from None
        user = self.users.get(name)
        expected = user.password.get_secret_value() if user else ""
        if not sep or user is None or not hmac.compare_digest(password.encode(), expected.encode()):
            raise Refused(401, 40101, f"Unauthorized: wrong user or password for '{name}'")
        return user


def is_write(method: str, path: str) -> bool:
    """Changes the registry's content: POST .../versions (register), PUT /config, any DELETE."""
    if method == "DELETE" or method == "PUT":
        return True
    return method == "POST" and path.startswith("/subjects/") and path.rstrip("/").endswith("/versions")
