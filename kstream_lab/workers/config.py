"""Typed configuration of the pipeline's workers and apps: the ``workers:`` section of pipelines/*.yaml.

Topic names, group ids, transactional ids and ports live in the pipeline file next to the topics
they refer to, so one file describes the whole system and tests can run an isolated copy of it
(renamed topics, free ports) without touching code.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kstream_lab.durations import parse_duration_ms
from kstream_lab.errors import ConfigError
from kstream_lab.pipeline_spec import PipelineSpec


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Durations(_Base):
    @field_validator("*", mode="before")
    @classmethod
    def _durations(cls, value: object, info) -> object:
        if info.field_name.endswith("_ms") and isinstance(value, str):
            return parse_duration_ms(value)
        return value


class CustomerServiceConfig(_Durations):
    host: str = "127.0.0.1"
    port: int = 8601


class OrderServiceConfig(_Durations):
    host: str = "127.0.0.1"
    port: int = 8600
    output: str = "orders_raw"


class EnricherConfig(_Durations):
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


class AggregatorConfig(_Durations):
    input: str = "orders_enriched"
    aggregation: str | None = None
    output: str = "sales_aggregates"
    late: str = "orders_late"
    dlq: str = "orders_dlq"
    changelog: str = "order-aggregator-changelog"
    group_id: str = "order-aggregator"
    transactional_id: str = "order-aggregator"
    group_columns: dict[str, str] = Field(default_factory=lambda: {"loyalty_tier": "tier"})
    batch_size: int = Field(default=10_000, gt=0)
    metrics_port: int | None = 9402


class SinkConfig(_Durations):
    input: str = "sales_aggregates"
    group_id: str = "order-sink"
    dlq: str = "orders_dlq"
    target: str | None = Field(
        default=None, description="duckdb:///path or postgresql://...; default: <data_dir>/sink/sales.duckdb"
    )
    batch_size: int = Field(default=5000, gt=0)
    metrics_port: int | None = 9403


class WorkersConfig(_Base):
    customer_service: CustomerServiceConfig = CustomerServiceConfig()
    order_service: OrderServiceConfig = OrderServiceConfig()
    enricher: EnricherConfig = EnricherConfig()
    aggregator: AggregatorConfig = AggregatorConfig()
    sink: SinkConfig = SinkConfig()

    @property
    def customer_service_url(self) -> str:
        cs = self.customer_service
        return self.enricher.customer_service_url or f"http://{cs.host}:{cs.port}"


def workers_config(spec: PipelineSpec) -> WorkersConfig:
    """The typed ``workers:`` section; errors name the pipeline file and the key."""
    try:
        return WorkersConfig.model_validate(spec.workers)
    except ValidationError as exc:
        msgs = [f"{spec.path}: workers.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("; ".join(msgs), hint="fix the workers section of the pipeline file") from None
