"""Loading ``pipelines/*.yaml`` into typed models, with errors that name the file, line and key.

Users edit these files by hand; a typo must point at the line, not produce a pydantic dump. Every
section -- topics, aggregations and the workers' settings -- is validated when the file is loaded,
so a bad key fails ``kstream-lab`` at once instead of later inside a worker process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.durations import parse_duration_ms
from kstream_lab.errors import ConfigError, TopicError
from kstream_lab.settings import READ_GROUP_PREFIX


class TopicSpec(BaseModel):
    """A topic as declared: partitions, retention, cleanup policy and value format."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = ""
    partitions: int = Field(gt=0)
    replication_factor: int = Field(default=1, gt=0)
    key: str | None = None
    value_format: Literal["avro", "json", "json_schema", "protobuf", "raw"] = "json"
    schema_name: str | None = Field(default=None, alias="schema")
    retention_ms: int | None = Field(default=None, ge=-1)
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    min_compaction_lag_ms: int | None = Field(default=None, ge=0)

    @field_validator("retention_ms", "min_compaction_lag_ms", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration_ms(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _avro_needs_schema(self) -> TopicSpec:
        if self.value_format == "avro" and not self.schema_name:
            raise ValueError("value_format avro needs a `schema` (a record name in pipelines/schemas)")
        return self

    def kafka_config(self) -> dict[str, str]:
        conf: dict[str, str] = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            conf["retention.ms"] = str(self.retention_ms)
        if self.min_compaction_lag_ms is not None:
            conf["min.compaction.lag.ms"] = str(self.min_compaction_lag_ms)
        return conf


class _WorkerSpec(BaseModel):
    """One worker kind's settings; ``*_ms`` fields take durations (``"3s"``) or milliseconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _durations(cls, value: object, info: ValidationInfo) -> object:
        if info.field_name and info.field_name.endswith("_ms") and isinstance(value, str):
            return parse_duration_ms(value)
        return value


def _principal(value: object) -> object:
    """``order-service`` means ``User:order-service`` (Kafka's principal for a SASL user)."""
    if isinstance(value, str) and ":" not in value:
        return f"User:{value}"
    return value


class _KafkaWorkerSpec(_WorkerSpec):
    """A worker that talks to Kafka: ``principal`` is the user it authenticates as; the ACLs it needs
    are derived from its topics, group and transactional id (kstream_lab/acls.py)."""

    principal: str | None = Field(default=None, pattern=r"^User:[^:\s]+$")

    @field_validator("principal", mode="before")
    @classmethod
    def _user_principal(cls, value: object) -> object:
        return _principal(value)


class _MetricsSpec(_KafkaWorkerSpec):
    """A Kafka worker that serves /metrics: ``metrics_host`` is the address it binds, loopback unless a
    scraper on another host must reach it (in a Kubernetes pod: ``0.0.0.0``, for the kubelet's probes
    and Prometheus)."""

    metrics_host: str = "127.0.0.1"


class CustomerServiceConfig(_WorkerSpec):
    host: str = "127.0.0.1"
    port: int = 8601


class OrderServiceConfig(_KafkaWorkerSpec):
    """Its overload rule: at most ``queue_max_orders`` orders wait for the broker's acknowledgement at
    once (librdkafka's producer queue bound); a POST beyond it is answered 503 with ``Retry-After``
    at once instead of queueing without bound, so memory stays bounded and a 202 still means stored."""

    host: str = "127.0.0.1"
    port: int = 8600
    output: str = "orders_raw"
    queue_max_orders: int = Field(
        default=10_000, gt=0, description="orders produced and not yet acknowledged; beyond: 503 + Retry-After"
    )
    delivery_timeout_ms: int = Field(
        default=10_000,
        gt=0,
        description="the broker's acknowledgement must come within this, else the order is answered 503",
    )
    retry_after_ms: int = Field(default=1000, gt=0, description="what Retry-After tells a refused client (whole s)")


class EnricherConfig(_MetricsSpec):
    input: str = "orders_raw"
    output: str = "orders_enriched"
    dlq: str = "orders_dlq"
    group_id: str = "order-enricher"
    transactional_id: str = "order-enricher"
    customer_service_url: str | None = Field(default=None, description="default: the customer service above")
    request_timeout_ms: int = 1000
    cache_ttl_ms: int = 60_000
    cache_size: int = 100_000
    retry_attempts: int = Field(default=3, ge=1)
    retry_initial_ms: int = 50
    retry_max_ms: int = 1000
    breaker_fail_max: int = Field(default=3, ge=1)
    breaker_reset_ms: int = 3000
    batch_size: int = Field(default=5000, gt=0)
    metrics_port: int | None = 9401
    # Bad input (kstream_lab/workers/order_rules.py): larger values, and event times further before or
    # after the record's own timestamp, are dead-lettered; null switches a check off.
    max_value_bytes: int | None = Field(default=65_536, gt=0)
    max_event_age_ms: int | None = Field(default=7 * 86_400_000, gt=0)
    max_event_lead_ms: int | None = Field(default=3_600_000, ge=0)


class AggregatorConfig(_MetricsSpec):
    input: str = "orders_enriched"
    aggregation: str | None = Field(default=None, description="a name under `aggregations:`; default: the only one")
    output: str = "sales_aggregates"
    late: str = "orders_late"
    dlq: str = "orders_dlq"
    changelog: str = "order-aggregator-changelog"
    group_id: str = "order-aggregator"
    transactional_id: str = "order-aggregator"
    group_columns: dict[str, str] = Field(default_factory=lambda: {"loyalty_tier": "tier"})
    batch_size: int = Field(default=10_000, gt=0)
    metrics_port: int | None = 9402


class SinkConfig(_MetricsSpec):
    input: str = "sales_aggregates"
    group_id: str = "order-sink"
    dlq: str = "orders_dlq"
    target: str | None = Field(
        default=None, description="duckdb:///path or postgresql://...; default: <data_dir>/sink/sales.duckdb"
    )
    batch_size: int = Field(default=5000, gt=0)
    metrics_port: int | None = 9403
    # Who writes the target: this Python worker, or Kafka Connect's JDBC sink (a PostgreSQL target
    # only; kstream_lab/connect/sink.py builds the connector from these settings, docs/connect.md).
    kind: Literal["python", "connect"] = "python"
    connector_name: str = Field(default="sales-aggregates-jdbc", pattern=r"^[A-Za-z0-9_.-]+$")
    connector_config: dict[str, str] = Field(
        default_factory=dict, description="Connect config keys added to or replacing the built connector's"
    )

    @property
    def consumer_group(self) -> str:
        """The group that reads ``input``: this worker's, or for ``kind: connect`` the one Kafka
        Connect names after the connector (``connect-<connector_name>``)."""
        return f"connect-{self.connector_name}" if self.kind == "connect" else self.group_id

    @model_validator(mode="after")
    def _connect_needs_postgres(self) -> SinkConfig:
        if self.kind == "connect" and not (self.target or "").startswith(("postgresql://", "postgres://")):
            raise ValueError("kind: connect writes PostgreSQL through the JDBC sink: set target: postgresql://...")
        return self


class WorkersConfig(BaseModel):
    """The ``workers:`` section: topic names, group and transactional ids and ports of each process.

    They live in the pipeline file next to the topics they refer to, so one file describes the whole
    system and tests can run an isolated copy of it (renamed topics, free ports) without touching code.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    customer_service: CustomerServiceConfig = CustomerServiceConfig()
    order_service: OrderServiceConfig = OrderServiceConfig()
    enricher: EnricherConfig = EnricherConfig()
    aggregator: AggregatorConfig = AggregatorConfig()
    sink: SinkConfig = SinkConfig()

    @property
    def customer_service_url(self) -> str:
        cs = self.customer_service
        return self.enricher.customer_service_url or f"http://{cs.host}:{cs.port}"


class ReaderAccess(BaseModel):
    """A principal that reads and writes nothing (notebooks, replay, back-tests, the dashboard).

    ``topics``: the declared topics it may READ (and so DESCRIBE), ``all`` by default;
    ``group_prefix``: the consumer groups it may use (bounded reads name theirs
    ``<KSTREAM_READ_GROUP_PREFIX><id>``, default ``kstream-lab-read-``: keep the two equal);
    ``describe_groups``: workers whose group it may DESCRIBE -- the back-test reads the aggregator's
    committed offsets to know which range the live aggregator has processed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    principal: str = Field(pattern=r"^User:[^:\s]+$")
    topics: Literal["all"] | list[str] = "all"
    group_prefix: str = Field(default=READ_GROUP_PREFIX, min_length=1)
    describe_groups: list[Literal["enricher", "aggregator", "sink"]] = Field(default_factory=list)

    @field_validator("principal", mode="before")
    @classmethod
    def _user_principal(cls, value: object) -> object:
        return _principal(value)


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    pipeline: str
    topics: dict[str, TopicSpec]
    aggregations: dict[str, AggregationSpec] = Field(default_factory=dict)
    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    readers: dict[str, ReaderAccess] = Field(default_factory=dict)
    path: Path | None = None

    def topic(self, name: str) -> TopicSpec:
        try:
            return self.topics[name]
        except KeyError:
            raise TopicError(
                f"topic {name!r} is not declared in {self.path}", hint=f"declared: {', '.join(self.topics)}"
            ) from None

    def aggregation(self, name: str | None = None) -> AggregationSpec:
        if name is None and len(self.aggregations) == 1:
            return next(iter(self.aggregations.values()))
        try:
            return self.aggregations[name or ""]
        except KeyError:
            raise ConfigError(
                f"aggregation {name!r} is not declared in {self.path}", hint=f"declared: {', '.join(self.aggregations)}"
            ) from None


def _line_index(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map each key path to its 1-based line in the file."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            out[sub] = key.start_mark.line + 1
            _line_index(value, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), out)
    return out


def _line_for(lines: dict[tuple, int], loc: tuple) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _inject_names(data: dict) -> dict:
    for section in ("topics", "aggregations"):
        for name, body in (data.get(section) or {}).items():
            if isinstance(body, dict):
                body.setdefault("name", name)
    return data


def load_pipeline(path: str | Path) -> PipelineSpec:
    """Parse and validate a pipeline file; raise ConfigError naming ``file:line: key``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read pipeline file {path}: {exc.strerror}", hint="pass the path of a pipelines/*.yaml file"
        ) from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict) or node is None:
        raise ConfigError(f"{path}: expected a mapping with `pipeline:` and `topics:`")
    try:
        spec = PipelineSpec.model_validate({**_inject_names(data), "path": path})
    except ValidationError as exc:
        problems = [(_key_path(err["loc"]), _what(err)) for err in exc.errors()]
    else:
        problems = _reference_problems(spec)
    if problems:
        lines = _line_index(node)
        raise ConfigError(
            "; ".join(f"{path}:{_line_for(lines, loc)}: {'.'.join(map(str, loc))}: {what}" for loc, what in problems),
            hint="fix the key(s) named above",
        )
    return spec


def _key_path(loc: tuple) -> tuple:
    """A pydantic error location as the file's key path (validator names dropped)."""
    return tuple(x for x in loc if not (isinstance(x, str) and x.startswith("function-")))


def _what(err: ErrorDetails) -> str:
    return "unknown key" if err["type"] == "extra_forbidden" else err["msg"]


def _reference_problems(spec: PipelineSpec) -> list[tuple[tuple, str]]:
    """(key path, problem) for names that must refer to another section of the file."""
    problems: list[tuple[tuple, str]] = []
    name = spec.workers.aggregator.aggregation
    if name is not None and name not in spec.aggregations:
        declared = ", ".join(spec.aggregations) or "none"
        problems.append(
            (("workers", "aggregator", "aggregation"), f"no aggregation named {name!r} (declared: {declared})")
        )
    problems += _changelog_partition_problems(spec)
    problems += _expression_problems(spec)
    for reader, access in spec.readers.items():
        for i, topic in enumerate(access.topics if access.topics != "all" else []):
            if topic not in spec.topics:
                problems.append((("readers", reader, "topics", i), f"no topic named {topic!r} is declared"))
    return problems


def _expression_problems(spec: PipelineSpec) -> list[tuple[tuple, str]]:
    """Filters and derived fields are compiled at load, so a bad expression names its key and line."""
    problems: list[tuple[tuple, str]] = []
    for name, agg in spec.aggregations.items():
        if agg.filter is None and not agg.fields:
            continue
        from kstream_lab.aggregations.inputs import ExpressionError, compile_inputs  # Polars only when needed

        try:
            compile_inputs(agg)
        except ExpressionError as exc:
            problems.append((("aggregations", name, *exc.key), str(exc)))
    return problems


def _changelog_partition_problems(spec: PipelineSpec) -> list[tuple[tuple, str]]:
    """The aggregator's changelog must have as many partitions as its input (docs/semantics.md §2.1).

    The state of input partition p lives in changelog partition p (Kafka Streams' rule): with fewer
    changelog partitions, the state of the higher input partitions has nowhere to go. Caught at
    load, before ``topics apply`` creates topics of the wrong shape, so every command refuses the
    file with one line (file, line, both counts) instead of the aggregator stopping after start.
    """
    cfg = spec.workers.aggregator
    src, changelog = spec.topics.get(cfg.input), spec.topics.get(cfg.changelog)
    if src is None or changelog is None or src.partitions == changelog.partitions:
        return []
    return [
        (
            ("topics", changelog.name, "partitions"),
            f"the aggregator's changelog {changelog.name} has {changelog.partitions} partitions but its input "
            f"{src.name} has {src.partitions}; they must be equal (state for partition p lives in changelog "
            f"partition p)",
        )
    ]
