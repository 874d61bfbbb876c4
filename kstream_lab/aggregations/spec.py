"""The declarative aggregation spec read from ``pipelines/*.yaml``.

Pure data: no Kafka, no Polars. The streaming fold and the batch plan are both compiled from it, so
the live aggregator and the back-test cannot drift apart. The window kinds, metrics, filter and
derived fields are defined in docs/semantics.md §3 and §7.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kstream_lab.durations import parse_duration_ms

WindowKind = Literal["tumbling", "hopping", "sliding", "session"]
METRIC_OPS = ("sum", "count", "min", "max", "mean", "count_distinct", "first", "last")
#: Ops whose field is read as a 64-bit integer (cast, in both engines alike); count_distinct takes any type.
INTEGER_OPS = frozenset({"sum", "min", "max", "mean", "first", "last"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class WindowSpec(BaseModel):
    """An event-time window with a grace period for late records (docs/semantics.md §3.1, §7).

    ``tumbling``: ``size``, epoch-aligned. ``hopping``: ``size`` and ``advance``, windows start at
    multiples of ``advance``. ``sliding``: ``size`` is the maximum time difference (inclusive) of two
    records in one window, Kafka Streams' SlidingWindows. ``session``: ``gap`` of inactivity.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    type: WindowKind = "tumbling"
    size_ms: int = Field(alias="size", default=0, ge=0)
    advance_ms: int | None = Field(alias="advance", default=None, gt=0)
    gap_ms: int | None = Field(alias="gap", default=None, gt=0)
    grace_ms: int = Field(alias="grace", default=10_000, ge=0)

    @field_validator("size_ms", "advance_ms", "gap_ms", "grace_ms", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration_ms(value) if isinstance(value, str | int) else value

    @model_validator(mode="after")
    def _shape(self) -> WindowSpec:
        kind = self.type
        if kind == "session":
            if self.gap_ms is None:
                raise ValueError("a session window needs `gap` (the inactivity gap, e.g. 5m)")
            if "size_ms" in self.model_fields_set:
                raise ValueError("a session window has no `size` (its extent comes from `gap`)")
        else:
            if self.size_ms <= 0:
                raise ValueError(f"a {kind} window needs `size` > 0 (e.g. 60s)")
            if self.gap_ms is not None:
                raise ValueError(f"`gap` is for session windows, not {kind}")
        if kind == "hopping":
            if self.advance_ms is None:
                raise ValueError("a hopping window needs `advance` (e.g. 1m)")
            if self.advance_ms > self.size_ms:
                raise ValueError(f"`advance` ({self.advance_ms} ms) must not exceed `size` ({self.size_ms} ms)")
        elif self.advance_ms is not None:
            raise ValueError(f"`advance` is for hopping windows, not {kind}")
        return self

    @property
    def hop_ms(self) -> int:
        """The distance between window starts of a fixed-window kind (tumbling: the size)."""
        return self.advance_ms if self.type == "hopping" and self.advance_ms else self.size_ms

    def state_key(self) -> str:
        """The window's part of the state key; the tumbling form is the one changelogs always had."""
        if self.type == "tumbling":
            return f"{self.size_ms}|{self.grace_ms}"
        return f"{self.type}:{self.size_ms}:{self.advance_ms}:{self.gap_ms}|{self.grace_ms}"


class MetricSpec(BaseModel):
    """One output column: exactly one of the ops (docs/semantics.md §3.6, §7.6)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sum: str | None = None
    count: Literal["*"] | None = None
    min: str | None = None
    max: str | None = None
    mean: str | None = None
    count_distinct: str | None = None
    first: str | None = None
    last: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MetricSpec:
        chosen = [k for k in METRIC_OPS if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(f"a metric needs exactly one of {', '.join(METRIC_OPS)}")
        return self

    @cached_property
    def op(self) -> str:
        """Cached: the streaming fold asks for it for every record and metric."""
        return next(k for k in METRIC_OPS if getattr(self, k) is not None)

    @cached_property
    def field(self) -> str | None:
        return None if self.op == "count" else getattr(self, self.op)


class AggregationSpec(BaseModel):
    """Per-partition windowed group-by (docs/semantics.md §3), with an optional filter and derived
    fields: SQL expressions over the record's fields (§7.5), compiled by kstream_lab.aggregations.inputs."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str = ""
    source: str
    time_field: str = "timestamp"
    window: WindowSpec
    filter: str | None = Field(default=None, min_length=1)
    fields: dict[str, str] = Field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    metrics: dict[str, MetricSpec]

    @field_validator("metrics")
    @classmethod
    def _non_empty(cls, value: dict[str, MetricSpec]) -> dict[str, MetricSpec]:
        if not value:
            raise ValueError("an aggregation needs at least one metric")
        return value

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, expr in value.items():
            if not _NAME.match(name):
                raise ValueError(f"derived field name {name!r} is not an identifier (letters, digits, _)")
            if not isinstance(expr, str) or not expr.strip():
                raise ValueError(f"derived field {name!r} needs a SQL expression")
        return value

    @model_validator(mode="after")
    def _references(self) -> AggregationSpec:
        if self.time_field in self.fields:
            raise ValueError(f"the time field {self.time_field!r} cannot be a derived field")
        reserved = {"source_partition", "window_start", "window_end", "final"}
        clash = sorted(reserved & (set(self.group_by) | set(self.metrics)))
        if clash:
            raise ValueError(f"{', '.join(clash)} name(s) output columns of every aggregate; rename them")
        both = sorted(set(self.group_by) & set(self.metrics))
        if both:
            raise ValueError(f"{', '.join(both)} is both a group_by field and a metric name")
        return self

    @property
    def derived(self) -> frozenset[str]:
        return frozenset(self.fields)

    def state_key(self) -> str:
        """Changes whenever a parameter that shapes the state changes (guards stale changelogs).

        The form of a tumbling spec without filter or derived fields is the one changelogs always
        carried, so existing state restores unchanged.
        """
        parts = [
            self.name,
            self.time_field,
            *self.window.state_key().split("|"),
            ",".join(self.group_by),
            ",".join(f"{k}={m.op}:{m.field}" for k, m in sorted(self.metrics.items())),
        ]
        if self.filter is not None or self.fields:
            parts += [self.filter or "", ",".join(f"{k}={v}" for k, v in sorted(self.fields.items()))]
        return "|".join(parts)

    def with_window(self, *, size_ms: int | None = None, grace_ms: int | None = None) -> AggregationSpec:
        """A what-if copy with another window size (or session gap) or grace, same window kind."""
        w = self.window
        data: dict[str, object] = {"type": w.type, "grace": grace_ms if grace_ms is not None else w.grace_ms}
        if w.type == "session":
            data["gap"] = size_ms if size_ms is not None else w.gap_ms
        else:
            data["size"] = size_ms if size_ms is not None else w.size_ms
        if w.type == "hopping":
            data["advance"] = w.advance_ms
        return self.model_copy(update={"window": WindowSpec.model_validate(data)})
