"""The ACLs a pipeline needs, derived from its file: each service's principal gets exactly what its
typed worker config names (topics, group, transactional id), readers get READ and nothing to write
(plus DESCRIBE_CONFIGS on what they read: the replay cache must know whether a topic is compacted).

Pure data, no Kafka: `kstream-lab acls apply` hands these bindings to kafka/acls.py, and unit tests
check them without a broker. READ and WRITE imply DESCRIBE in Kafka's authorizer, so DESCRIBE is
only granted on its own where nothing else is (a reader's DESCRIBE on a worker's group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kstream_lab.pipeline_spec import PipelineSpec
from kstream_lab.settings import READ_GROUP_PREFIX, Settings

ResourceType = Literal["TOPIC", "GROUP", "TRANSACTIONAL_ID"]
Pattern = Literal["LITERAL", "PREFIXED"]
Operation = Literal["READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS", "CREATE"]
CONNECT_TOPICS = ("configs", "offsets", "status")  # a Connect worker's <group>-configs|-offsets|-status


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ALLOW rule: ``principal`` may ``operation`` the resource, from any host."""

    principal: str
    resource_type: ResourceType
    name: str
    pattern: Pattern
    operation: Operation

    def __str__(self) -> str:
        prefix = " (prefix)" if self.pattern == "PREFIXED" else ""
        kind = self.resource_type.lower().replace("_", "-")
        return f"{self.principal} may {self.operation} {kind} {self.name}{prefix}"


def _topic(principal: str, op: Operation, *names: str) -> list[AclBinding]:
    return [AclBinding(principal, "TOPIC", n, "LITERAL", op) for n in names]


def _group(principal: str, group: str, op: Operation = "READ") -> AclBinding:
    return AclBinding(principal, "GROUP", group, "LITERAL", op)


def _transactional_ids(principal: str, transactional_id: str) -> AclBinding:
    """Instance n uses ``<transactional_id>-<n>``: one prefix covers every instance and no other id."""
    return AclBinding(principal, "TRANSACTIONAL_ID", f"{transactional_id}-", "PREFIXED", "WRITE")


def _read_groups(principal: str) -> AclBinding:
    """The aggregator restores its state with a bounded read of the changelog, whose throw-away group
    librdkafka looks the coordinator up for: DESCRIBE only (it never joins or commits)."""
    return AclBinding(principal, "GROUP", READ_GROUP_PREFIX, "PREFIXED", "DESCRIBE")


def _connect_sink(principal: str, spec: PipelineSpec, connect_group: str) -> list[AclBinding]:
    """``kind: connect``: the Connect worker logs in as the sink's principal. Its connector reads the
    sink's input in the group Connect names ``connect-<connector>`` and dead-letters to the DLQ; the
    worker itself joins ``connect_group`` and keeps its config, offset and status topics, which it
    creates on first start and whose cleanup policy it checks (CREATE, DESCRIBE_CONFIGS)."""
    sink = spec.workers.sink
    internal = [f"{connect_group}-{t}" for t in CONNECT_TOPICS]
    return [
        *_topic(principal, "READ", sink.input, *internal),
        _group(principal, sink.consumer_group),
        _group(principal, connect_group),
        *_topic(principal, "WRITE", sink.dlq, *internal),
        *_topic(principal, "CREATE", *internal),
        *_topic(principal, "DESCRIBE_CONFIGS", *internal),
    ]


def derive_acls(spec: PipelineSpec, connect_group: str | None = None) -> list[AclBinding]:
    """Every binding the pipeline file asks for, sorted and without duplicates. ``connect_group``: the
    Kafka Connect worker's group (the ``connect_group_id`` setting, default its default) when the sink
    is ``kind: connect``."""
    connect_group = connect_group or str(Settings.model_fields["connect_group_id"].default)
    w = spec.workers
    out: list[AclBinding] = []
    if p := w.order_service.principal:
        out += _topic(p, "WRITE", w.order_service.output)
    if p := w.enricher.principal:
        e = w.enricher
        out += [*_topic(p, "READ", e.input), _group(p, e.group_id), *_topic(p, "WRITE", e.output, e.dlq)]
        out.append(_transactional_ids(p, e.transactional_id))
    if p := w.aggregator.principal:
        a = w.aggregator
        out += [*_topic(p, "READ", a.input, a.changelog), _group(p, a.group_id), _read_groups(p)]
        out += [*_topic(p, "WRITE", a.output, a.late, a.dlq, a.changelog), _transactional_ids(p, a.transactional_id)]
    if (p := w.sink.principal) and w.sink.kind == "connect":
        out += _connect_sink(p, spec, connect_group)
    elif p := w.sink.principal:
        out += [*_topic(p, "READ", w.sink.input), _group(p, w.sink.group_id), *_topic(p, "WRITE", w.sink.dlq)]
    for reader in spec.readers.values():
        topics = list(spec.topics) if reader.topics == "all" else reader.topics
        out += _topic(reader.principal, "READ", *topics) + _topic(reader.principal, "DESCRIBE_CONFIGS", *topics)
        out.append(AclBinding(reader.principal, "GROUP", reader.group_prefix, "PREFIXED", "READ"))
        groups = [
            w.sink.consumer_group if name == "sink" else getattr(w, name).group_id for name in reader.describe_groups
        ]
        out += [_group(reader.principal, g, "DESCRIBE") for g in groups]
    return sorted(set(out))


def principals(spec: PipelineSpec) -> list[str]:
    """The principals the file declares (whose ACLs `acls apply` manages)."""
    return sorted({b.principal for b in derive_acls(spec)})
