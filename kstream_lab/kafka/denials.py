"""Authorization failures as one line naming principal, operation and resource.

librdkafka says ``Broker: Topic authorization failed``; users need to know *who* may not do *what*
to *which* resource, and that it is an ACL to grant, not an outage to wait for. Every client path
that can be denied (producing, the transactional loop, admin calls) turns the error into an
:class:`AuthorizationError` here.
"""

from __future__ import annotations

from confluent_kafka import KafkaError

from kstream_lab.errors import AuthorizationError
from kstream_lab.settings import Settings

DENIALS = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "group",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional-id",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
}


def is_denial(err: KafkaError | None) -> bool:
    return err is not None and err.code() in DENIALS


def principal(settings: Settings) -> str:
    """The principal the broker sees for these settings (SASL user, else whatever TLS/plaintext maps to)."""
    return f"User:{settings.sasl_username}" if settings.sasl_username else "User:ANONYMOUS"


def denied(
    settings: Settings, err: KafkaError, operation: str, resource: str, *, kind: str | None = None
) -> AuthorizationError:
    """``User:analyst may not WRITE topic orders_raw (Broker: Topic authorization failed)``.

    ``resource`` is the name; its type comes from the error code (a transactional producer denied its
    id says so even when the call was a produce).
    """
    kind = kind or DENIALS.get(err.code(), "resource")
    try:
        reason = err.str()
    except SystemError:  # confluent-kafka, inside a callback after a fatal error
        reason = err.name()
    return refusal(settings, operation, kind, resource, reason)


def refusal(settings: Settings, operation: str, kind: str, resource: str, reason: str) -> AuthorizationError:
    """The one line of every denial, whether it came with an error code or was learnt otherwise."""
    what = f"{operation} the cluster" if kind == "cluster" else f"{operation} {kind} {resource}"
    return AuthorizationError(
        f"{principal(settings)} may not {what} on {settings.bootstrap} ({reason})",
        hint="grant it in the pipeline file and run `kstream-lab acls apply`, or use another principal",
    )
