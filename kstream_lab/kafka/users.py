"""SCRAM users through the Admin API: add, rotate, remove, list (as a principal allowed to, e.g. admin).

Passwords arrive as arguments of these functions only (the CLI reads them from a prompt, a file or
stdin) and never appear in an error: a failure names the user, the mechanism and the broker.
"""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from kstream_lab.errors import BrokerError, ConfigError
from kstream_lab.kafka.clients import make_admin
from kstream_lab.settings import SCRAM_MECHANISM, Settings

ITERATIONS = 8192  # Kafka's minimum for SCRAM-SHA-512 is 4096
_MECHANISMS = {"SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256, "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512}


def _mechanism(name: str) -> ScramMechanism:
    try:
        return _MECHANISMS[name]
    except KeyError:
        raise ConfigError(f"unknown SCRAM mechanism {name!r}", hint=f"use one of {', '.join(_MECHANISMS)}") from None


def _alter(settings: Settings, user: str, change, what: str, mechanism: str, timeout: float) -> None:
    admin = make_admin(settings)  # kept referenced until the future resolves (else the handle dies first)
    try:
        admin.alter_user_scram_credentials([change])[user].result(timeout=timeout)
    except KafkaException as exc:
        err = exc.args[0]
        why = err.str() if hasattr(err, "str") else str(err)
        raise BrokerError(
            f"cannot {what} user {user!r} ({mechanism}) on {settings.bootstrap}: {why}",
            hint="users are managed as a principal allowed to ALTER the cluster (the local broker's admin)",
        ) from None


def set_password(
    settings: Settings, user: str, password: str, *, mechanism: str = SCRAM_MECHANISM, timeout: float = 15.0
) -> None:
    """Create the user's SCRAM credential, or replace it (rotation: the old password stops working)."""
    if not user or not password:
        raise ConfigError("a SCRAM user needs a non-empty name and password")
    info = ScramCredentialInfo(_mechanism(mechanism), ITERATIONS)
    _alter(settings, user, UserScramCredentialUpsertion(user, info, password.encode()), "set", mechanism, timeout)


def remove_user(settings: Settings, user: str, *, mechanism: str = SCRAM_MECHANISM, timeout: float = 15.0) -> None:
    """Delete the user's credential for ``mechanism`` (an unknown user is an error, named)."""
    _alter(settings, user, UserScramCredentialDeletion(user, _mechanism(mechanism)), "remove", mechanism, timeout)


def list_users(settings: Settings, *, timeout: float = 15.0) -> dict[str, list[str]]:
    """User name -> the SCRAM mechanisms it has credentials for."""
    admin = make_admin(settings)
    try:
        found = admin.describe_user_scram_credentials().result(timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"cannot list SCRAM users on {settings.bootstrap}: {exc.args[0].str()}") from None
    names = {v: k for k, v in _MECHANISMS.items()}
    return {
        user: sorted(names.get(info.mechanism, str(info.mechanism)) for info in desc.scram_credential_infos)
        for user, desc in sorted(found.items())
    }
