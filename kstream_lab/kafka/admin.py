"""Cluster-level reads through the admin client: reachability, topics, offsets, groups and lag."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from kstream_lab.errors import BrokerError, TopicError
from kstream_lab.kafka.clients import client_config, make_admin, make_consumer
from kstream_lab.kafka.failures import await_metadata, plaintext_on_tls
from kstream_lab.settings import Settings


def ping(settings: Settings, timeout: float = 5.0) -> list[str]:
    """Return the topic names if the cluster answers a metadata request, else raise BrokerError.

    Asks in short slices and serves the client's error callbacks in between, so a refused login or a
    failed TLS handshake is a SecurityError within a second, not a timeout; a plaintext client on a
    TLS port is named as such."""
    overrides: dict[str, Any] = {"socket.connection.setup.timeout.ms": 2000}
    md = await_metadata(make_admin(settings, **overrides), timeout)
    if md is not None:
        return sorted(md.topics)
    failure = plaintext_on_tls(client_config(settings, **overrides))
    if failure is not None:
        raise failure
    raise BrokerError(
        f"Kafka at {settings.bootstrap} did not answer within {timeout:g}s",
        hint="start it with `kstream-lab broker up` or set KSTREAM_BOOTSTRAP_SERVERS",
    )


def list_topics(settings: Settings, *, include_internal: bool = False) -> dict[str, int]:
    """Topic name -> partition count."""
    md = make_admin(settings).list_topics(timeout=10)
    return {
        name: len(t.partitions)
        for name, t in sorted(md.topics.items())
        if include_internal or not name.startswith("__")
    }


@dataclass(frozen=True)
class PartitionOffsets:
    partition: int
    low: int
    high: int

    @property
    def messages(self) -> int:
        """Offsets between low and high (transaction markers count as offsets)."""
        return self.high - self.low


@dataclass(frozen=True)
class GroupLag:
    group: str
    committed: dict[int, int]
    lag: dict[int, int]

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())


@dataclass
class TopicDescription:
    name: str
    partitions: list[PartitionOffsets]
    config: dict[str, str] = field(default_factory=dict)
    groups: list[GroupLag] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return sum(p.messages for p in self.partitions)


def topic_partitions(client, topic: str, timeout: float = 10.0) -> list[int]:
    """The topic's partition ids (sorted), from a consumer's or admin client's metadata; TopicError if unknown."""
    tmd = client.list_topics(topic, timeout=timeout).topics.get(topic)
    if tmd is None or tmd.error is not None or not tmd.partitions:
        raise TopicError(f"unknown topic {topic!r}", hint="see `kstream-lab topics list`")
    return sorted(tmd.partitions)


def watermarks(settings: Settings, topic: str, timeout: float = 10.0) -> list[PartitionOffsets]:
    """Low/high watermarks per partition (high is the next offset to be written)."""
    consumer = make_consumer(settings, "kstream-lab-watermarks", read_committed=False)
    try:
        out = []
        for p in topic_partitions(consumer, topic, timeout):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            out.append(PartitionOffsets(p, low, high))
        return out
    finally:
        consumer.close()


def group_lags(settings: Settings, topic: str, highs: dict[int, int]) -> list[GroupLag]:
    """Consumer groups that have committed offsets on ``topic``, with lag per partition."""
    admin = make_admin(settings)
    groups = admin.list_consumer_groups(request_timeout=10).result(timeout=15)
    out: list[GroupLag] = []
    for g in sorted(groups.valid, key=lambda g: g.group_id):
        req = [ConsumerGroupTopicPartitions(g.group_id, [TopicPartition(topic, p) for p in highs])]
        try:
            res = admin.list_consumer_group_offsets(req)[g.group_id].result(timeout=15)
        except KafkaException:
            continue
        committed = {tp.partition: tp.offset for tp in res.topic_partitions if tp.offset >= 0}
        if committed:
            lag = {p: max(0, highs[p] - committed.get(p, 0)) for p in highs}
            out.append(GroupLag(g.group_id, committed, lag))
    return out


def describe_topic(settings: Settings, topic: str) -> TopicDescription:
    parts = watermarks(settings, topic)
    admin = make_admin(settings)
    from confluent_kafka.admin import ConfigResource, ResourceType

    res = ConfigResource(ResourceType.TOPIC, topic)
    cfg = admin.describe_configs([res])[res].result(timeout=10)
    interesting = ("cleanup.policy", "retention.ms", "retention.bytes", "min.insync.replicas")
    config = {k: v.value for k, v in cfg.items() if k in interesting}
    groups = group_lags(settings, topic, {p.partition: p.high for p in parts})
    return TopicDescription(topic, parts, config, groups)


def offsets_for_times(
    settings: Settings, topic: str, timestamps: dict[int, int], timeout: float = 10.0
) -> dict[int, int]:
    """Earliest offset whose timestamp >= ts, per partition (-1 -> high watermark)."""
    admin = make_admin(settings)
    req = {TopicPartition(topic, p): OffsetSpec.for_timestamp(ts) for p, ts in timestamps.items()}
    res = admin.list_offsets(req, request_timeout=timeout)
    return {tp.partition: fut.result(timeout=timeout).offset for tp, fut in res.items()}


def committed_offsets(
    settings: Settings, group_id: str, topic: str, partitions: list[int], timeout: float = 10.0
) -> dict[int, int]:
    """The group's committed offset per partition (partitions it never committed are left out)."""
    admin = make_admin(settings)
    req = [ConsumerGroupTopicPartitions(group_id, [TopicPartition(topic, p) for p in partitions])]
    try:
        res = admin.list_consumer_group_offsets(req)[group_id].result(timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"cannot read committed offsets of group {group_id!r}: {exc}") from None
    return {tp.partition: tp.offset for tp in res.topic_partitions if tp.offset >= 0}


def authorized_operations(settings: Settings, topic: str, timeout: float = 10.0) -> set[str] | None:
    """What the settings' principal may do to ``topic``, as the broker's ACLs say (``{"READ", ...}``).

    Kafka answers this for the caller itself (no DESCRIBE_ACLS needed), so a denied client can name the
    operation it lacks even when librdkafka lost the refusal's error code. None when the broker does
    not say (an older broker, the topic unknown or not even describable).
    """
    from confluent_kafka import TopicCollection

    admin = make_admin(settings)
    try:
        futures = admin.describe_topics(TopicCollection([topic]), include_authorized_operations=True)
        desc = futures[topic].result(timeout=timeout)
    except (KafkaException, TimeoutError):
        return None
    ops = getattr(desc, "authorized_operations", None)
    return None if ops is None else {op.name for op in ops}


@dataclass(frozen=True)
class TopicIdentity:
    """What makes a topic's offsets mean the same records: its cluster and its topic id (a topic
    deleted and re-created under the same name gets a new id and restarts its offsets)."""

    cluster_id: str
    topic_id: str
    cleanup_policy: str


def topic_identity(settings: Settings, topic: str, timeout: float = 10.0) -> TopicIdentity:
    """The cluster id, topic id and cleanup policy of ``topic`` (three small admin requests, sent
    together: a replay-cache lookup waits for one round trip, not three).

    A denial names the operation the principal lacks (DESCRIBE, or DESCRIBE_CONFIGS for the policy)."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import ConfigResource, ResourceType

    from kstream_lab.kafka.denials import denied, is_denial

    admin = make_admin(settings)
    step = "DESCRIBE"
    try:
        res = ConfigResource(ResourceType.TOPIC, topic)
        cluster_f = admin.describe_cluster(request_timeout=timeout)
        desc_f = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic]
        config_f = admin.describe_configs([res], request_timeout=timeout)[res]
        cluster = cluster_f.result(timeout=timeout)
        desc = desc_f.result(timeout=timeout)
        step = "DESCRIBE_CONFIGS"
        policy = config_f.result(timeout=timeout)["cleanup.policy"].value
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if err is not None and is_denial(err):
            raise denied(settings, err, step, topic, kind="topic") from None
        raise TopicError(f"cannot describe topic {topic!r}: {exc}", hint="does it exist?") from None
    return TopicIdentity(str(cluster.cluster_id), str(desc.topic_id), str(policy))
