"""Schemas as code: the ``pipelines/schemas/*.avsc`` files, found by record name.

A topic in pipelines/orders.yaml names its value schema (``schema: Order``); this module maps that
name to the file next to the pipeline file, so the schema a producer registers is the one reviewed in
the repository.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kstream_lab.errors import ConfigError
from kstream_lab.pipeline_spec import PipelineSpec, TopicSpec
from kstream_lab.schemas.compat import InvalidSchema, parse_avro
from kstream_lab.settings import Settings


@dataclass(frozen=True)
class SchemaFile:
    path: Path
    full_name: str
    text: str

    @property
    def name(self) -> str:
        return self.full_name.rsplit(".", 1)[-1]


def schema_dir(settings: Settings) -> Path:
    return settings.pipeline_file.parent / "schemas"


def read_schema_file(path: Path) -> SchemaFile:
    """Read and validate one .avsc file; ConfigError names the file and the parser's complaint."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read schema file {path}: {exc.strerror}") from None
    try:
        parsed = parse_avro(text)
    except InvalidSchema as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(parsed, dict) or "name" not in parsed:
        raise ConfigError(f"{path}: a topic value schema must be a named record")
    return SchemaFile(path, parsed["name"], json.dumps(json.loads(text), separators=(",", ":")))


def load_schemas(directory: Path) -> dict[str, SchemaFile]:
    """Record name (short and fully qualified) -> schema file, for every ``*.avsc`` in ``directory``."""
    out: dict[str, SchemaFile] = {}
    for path in sorted(directory.glob("*.avsc")):
        sf = read_schema_file(path)
        out[sf.full_name] = out[sf.name] = sf
    return out


def schema_for_topic(settings: Settings, topic: TopicSpec) -> SchemaFile:
    """The schema file a topic declares (``schema: Order``)."""
    directory = schema_dir(settings)
    schemas = load_schemas(directory)
    if not topic.schema_name or topic.schema_name not in schemas:
        known = sorted({s.name for s in schemas.values()})
        raise ConfigError(
            f"topic {topic.name} declares schema {topic.schema_name!r}, which is not in {directory}",
            hint=f"known: {', '.join(known) or 'none'}",
        )
    return schemas[topic.schema_name]


def topic_schemas(settings: Settings, spec: PipelineSpec) -> list[tuple[str, SchemaFile]]:
    """(subject, schema) for every Avro topic of the pipeline; subject = ``<topic>-value``."""
    return [
        (f"{t.name}-value", schema_for_topic(settings, t)) for t in spec.topics.values() if t.value_format == "avro"
    ]
