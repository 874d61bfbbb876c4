"""Topics as code: diff declared topics against the cluster and apply the difference.

Creating topics, adding partitions and changing configs are safe. Shrinking partitions is
impossible in Kafka; with ``force`` the topic is deleted and recreated (losing its data), otherwise
the change is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from kstream_lab.errors import TopicError
from kstream_lab.kafka.clients import make_admin
from kstream_lab.pipeline_spec import TopicSpec
from kstream_lab.settings import Settings


@dataclass(frozen=True)
class TopicChange:
    topic: str
    action: str  # create | add-partitions | alter-config | recreate | unchanged
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.action:<15} {self.topic}" + (f"  ({self.detail})" if self.detail else "")


def plan_changes(settings: Settings, specs: list[TopicSpec], *, force: bool = False) -> list[TopicChange]:
    """What ``apply_topics`` would do, without doing it."""
    admin = make_admin(settings)
    existing = admin.list_topics(timeout=10).topics
    changes: list[TopicChange] = []
    configs = _current_configs(admin, [s.name for s in specs if s.name in existing])
    for spec in specs:
        if spec.name not in existing:
            changes.append(TopicChange(spec.name, "create", f"{spec.partitions} partitions"))
            continue
        have = len(existing[spec.name].partitions)
        if spec.partitions < have:
            if not force:
                raise TopicError(
                    f"{spec.name} has {have} partitions, the spec asks for {spec.partitions}",
                    hint="Kafka cannot shrink a topic; pass --force to delete and recreate it (data is lost)",
                )
            changes.append(TopicChange(spec.name, "recreate", f"{have} -> {spec.partitions} partitions"))
            continue
        if spec.partitions > have:
            changes.append(TopicChange(spec.name, "add-partitions", f"{have} -> {spec.partitions}"))
        diff = {k: v for k, v in spec.kafka_config().items() if configs[spec.name].get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: {configs[spec.name].get(k)} -> {v}" for k, v in sorted(diff.items()))
            changes.append(TopicChange(spec.name, "alter-config", detail))
        if spec.partitions == have and not diff:
            changes.append(TopicChange(spec.name, "unchanged"))
    return changes


def apply_topics(settings: Settings, specs: list[TopicSpec], *, force: bool = False) -> list[TopicChange]:
    """Create or update the declared topics idempotently; return what changed."""
    changes = plan_changes(settings, specs, force=force)
    by_name = {s.name: s for s in specs}
    admin = make_admin(settings)
    recreate = [c.topic for c in changes if c.action == "recreate"]
    if recreate:
        _wait(admin.delete_topics(recreate, operation_timeout=30))
        _wait_gone(admin, recreate)
    create = [by_name[c.topic] for c in changes if c.action in ("create", "recreate")]
    if create:
        _wait(
            admin.create_topics(
                [
                    NewTopic(
                        s.name,
                        num_partitions=s.partitions,
                        replication_factor=s.replication_factor,
                        config=s.kafka_config(),
                    )
                    for s in create
                ],
                operation_timeout=30,
            )
        )
    grow = [NewPartitions(c.topic, by_name[c.topic].partitions) for c in changes if c.action == "add-partitions"]
    if grow:
        _wait(admin.create_partitions(grow, operation_timeout=30))
    for c in changes:
        if c.action == "alter-config":
            res = ConfigResource(
                ResourceType.TOPIC,
                c.topic,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in by_name[c.topic].kafka_config().items()
                ],
            )
            _wait(admin.incremental_alter_configs([res]))
    return changes


def delete_topics(settings: Settings, names: list[str]) -> None:
    admin = make_admin(settings)
    _wait(admin.delete_topics(names, operation_timeout=30))
    _wait_gone(admin, names)


def _current_configs(admin, names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
    out = {}
    for res, fut in admin.describe_configs(resources).items():
        out[res.name] = {k: v.value for k, v in fut.result(timeout=10).items()}
    return out


def _wait(futures: dict) -> None:
    for key, fut in futures.items():
        try:
            fut.result(timeout=60)
        except KafkaException as exc:
            raise TopicError(f"{key}: {exc.args[0].str() if exc.args else exc}") from None


def _wait_gone(admin, names: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not set(names) & set(admin.list_topics(timeout=10).topics):
            return
        time.sleep(0.2)
