"""Loading ``pipelines/*.yaml`` into typed models, with errors that name the file, line and key.

Users edit these files by hand; a typo must point at the line, not produce a pydantic dump.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.durations import parse_duration_ms
from kstream_lab.errors import ConfigError, TopicError


class TopicSpec(BaseModel):
    """A topic as declared: partitions, retention, cleanup policy and value format."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = ""
    partitions: int = Field(gt=0)
    replication_factor: int = Field(default=1, gt=0)
    key: str | None = None
    value_format: Literal["avro", "json", "raw"] = "json"
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
        conf = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            conf["retention.ms"] = str(self.retention_ms)
        if self.min_compaction_lag_ms is not None:
            conf["min.compaction.lag.ms"] = str(self.min_compaction_lag_ms)
        return conf


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    pipeline: str
    topics: dict[str, TopicSpec]
    aggregations: dict[str, AggregationSpec] = Field(default_factory=dict)
    workers: dict[str, dict[str, Any]] = Field(default_factory=dict)
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
    lines = _line_index(node)
    try:
        return PipelineSpec.model_validate({**_inject_names(data), "path": path})
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
            key = ".".join(str(x) for x in loc)
            what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            msgs.append(f"{path}:{_line_for(lines, loc)}: {key}: {what}")
        raise ConfigError("; ".join(msgs), hint="fix the key(s) named above") from None
