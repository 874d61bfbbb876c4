"""Kafka ACLs through the admin client: list, and apply a declared set idempotently.

The declared bindings come from kstream_lab/acls.py (derived from the pipeline file). Applying them
creates what is missing and reports, but keeps, bindings of the same principals that the file no
longer declares -- removing access is an operator's decision (``force``). Bindings of principals the
file does not mention are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, get_args

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding as KafkaAclBinding,
)
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from kstream_lab.acls import AclBinding, Operation
from kstream_lab.errors import BrokerError
from kstream_lab.kafka.clients import make_admin
from kstream_lab.kafka.denials import denied, is_denial
from kstream_lab.settings import Settings

TIMEOUT = 30.0


@dataclass
class AclChanges:
    created: list[AclBinding] = field(default_factory=list)
    removed: list[AclBinding] = field(default_factory=list)
    undeclared: list[AclBinding] = field(default_factory=list)  # kept: no --force
    unchanged: int = 0


def _to_kafka(b: AclBinding) -> KafkaAclBinding:
    return KafkaAclBinding(
        ResourceType[b.resource_type],
        b.name,
        ResourcePatternType[b.pattern],
        b.principal,
        "*",
        AclOperation[b.operation],
        AclPermissionType.ALLOW,
    )


def _exact_filter(b: AclBinding) -> AclBindingFilter:
    """A filter matching this one binding and nothing else."""
    k = _to_kafka(b)
    return AclBindingFilter(
        k.restype, k.name, k.resource_pattern_type, k.principal, k.host, k.operation, k.permission_type
    )


def _from_kafka(k: KafkaAclBinding) -> AclBinding | None:
    """Ours when it is an ALLOW from any host of a kind we declare; None for anything else."""
    if k.permission_type != AclPermissionType.ALLOW or k.host != "*":
        return None
    # A binding the broker returns carries enum members; the stubs also allow the str/int inputs.
    names = (_name(k.restype), _name(k.resource_pattern_type), _name(k.operation))
    if names[0] not in ("TOPIC", "GROUP", "TRANSACTIONAL_ID") or names[1] not in ("LITERAL", "PREFIXED"):
        return None
    if names[2] not in get_args(Operation):  # the operations we declare, one list
        return None
    return AclBinding(k.principal, names[0], k.name, names[1], names[2])  # type: ignore[arg-type]


def _name(member: Any) -> str:
    return member.name


def _failure(settings: Settings, what: str, exc: KafkaException) -> Exception:
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError) and is_denial(err):
        return denied(settings, err, "ALTER" if what != "listing ACLs" else "DESCRIBE", "")
    if isinstance(err, KafkaError) and err.code() == KafkaError.SECURITY_DISABLED:
        return BrokerError(
            f"{what} on {settings.bootstrap}: the broker has no authorizer",
            hint="ACLs need a secured broker (`kstream-lab broker up --secure`)",
        )
    return BrokerError(f"{what} on {settings.bootstrap} failed: {err.str() if isinstance(err, KafkaError) else exc}")


def list_acls(settings: Settings, principal: str | None = None) -> list[AclBinding]:
    """Every ALLOW binding on the cluster (of ``principal`` when given), sorted."""
    # None matches any name, principal or host (the stubs say str).
    anything: Any = None
    flt = AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        principal or anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    admin = make_admin(settings)  # kept referenced until the future resolves (a dropped client cancels it)
    try:
        found = admin.describe_acls(flt, request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    except KafkaException as exc:
        raise _failure(settings, "listing ACLs", exc) from None
    return sorted(b for b in map(_from_kafka, found) if b is not None)


def apply_acls(settings: Settings, declared: list[AclBinding], *, force: bool = False) -> AclChanges:
    """Create the missing bindings; with ``force`` also delete the managed principals' undeclared ones."""
    want = set(declared)
    managed = {b.principal for b in want}
    have = {b for b in list_acls(settings) if b.principal in managed}
    changes = AclChanges(unchanged=len(want & have))
    admin = make_admin(settings)
    missing = sorted(want - have)
    if missing:
        _wait(settings, "creating ACLs", admin.create_acls([_to_kafka(b) for b in missing], request_timeout=TIMEOUT))
        changes.created = missing
    extra = sorted(have - want)
    if extra and force:
        _wait(settings, "deleting ACLs", admin.delete_acls([_exact_filter(b) for b in extra], request_timeout=TIMEOUT))
        changes.removed = extra
    elif extra:
        changes.undeclared = extra
    return changes


def _wait(settings: Settings, what: str, futures: dict[Any, Any]) -> None:
    """Wait for every future of one admin request; a failure names what was being done."""
    try:
        for fut in futures.values():
            fut.result(timeout=TIMEOUT)
    except KafkaException as exc:
        raise _failure(settings, what, exc) from None
