"""The declarative aggregation spec read from ``pipelines/*.yaml``.

Pure data: no Kafka, no Polars. The streaming fold and the batch plan are both compiled from it, so
the live aggregator and the back-test cannot drift apart.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kstream_lab.durations import parse_duration_ms


class WindowSpec(BaseModel):
    """Tumbling event-time window aligned to the epoch, with a grace period for late records."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["tumbling"] = "tumbling"
    size_ms: int = Field(alias="size", gt=0)
    grace_ms: int = Field(alias="grace", default=10_000, ge=0)

    @field_validator("size_ms", "grace_ms", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration_ms(value) if isinstance(value, str | int) else value


class MetricSpec(BaseModel):
    """One output column: exactly one of sum/count/min/max over an integer field."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sum: str | None = None
    count: Literal["*"] | None = None
    min: str | None = None
    max: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MetricSpec:
        chosen = [k for k in ("sum", "count", "min", "max") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("a metric needs exactly one of sum, count, min, max")
        return self

    @cached_property
    def op(self) -> str:
        """Cached: the streaming fold asks for it for every record and metric."""
        return next(k for k in ("sum", "count", "min", "max") if getattr(self, k) is not None)

    @cached_property
    def field(self) -> str | None:
        return None if self.op == "count" else getattr(self, self.op)


class AggregationSpec(BaseModel):
    """Per-partition windowed group-by (docs/semantics.md §3)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str = ""
    source: str
    time_field: str = "timestamp"
    window: WindowSpec
    group_by: tuple[str, ...] = ()
    metrics: dict[str, MetricSpec]

    @field_validator("metrics")
    @classmethod
    def _non_empty(cls, value: dict[str, MetricSpec]) -> dict[str, MetricSpec]:
        if not value:
            raise ValueError("an aggregation needs at least one metric")
        return value

    def state_key(self) -> str:
        """Changes whenever a parameter that shapes the state changes (guards stale changelogs)."""
        parts = [
            self.name,
            self.time_field,
            str(self.window.size_ms),
            str(self.window.grace_ms),
            ",".join(self.group_by),
            ",".join(f"{k}={m.op}:{m.field}" for k, m in sorted(self.metrics.items())),
        ]
        return "|".join(parts)

    def with_window(self, *, size_ms: int | None = None, grace_ms: int | None = None) -> AggregationSpec:
        """A what-if copy with another window size or grace."""
        window = WindowSpec(
            size=size_ms if size_ms is not None else self.window.size_ms,
            grace=grace_ms if grace_ms is not None else self.window.grace_ms,
        )
        return self.model_copy(update={"window": window})
