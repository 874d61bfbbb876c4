"""Choosing the value serializer a topic declares in pipelines/*.yaml.

A serializer is a plain callable ``(obj, topic) -> bytes`` that raises SerializationError naming the
field when a value does not match its contract.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from kstream_lab.errors import ConfigError, SerializationError
from kstream_lab.pipeline_spec import TopicSpec
from kstream_lab.settings import Settings

Serializer = Callable[[dict, str], bytes]


def json_serializer(obj: dict, topic: str) -> bytes:
    try:
        return json.dumps(obj, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"value is not JSON-serialisable: {exc}", topic=topic) from None


def value_serializer(settings: Settings, spec: TopicSpec) -> Serializer:
    """The serializer for ``spec.value_format``."""
    if spec.value_format == "json":
        return json_serializer
    if spec.value_format == "avro":
        from kstream_lab.schemas.avro import avro_serializer  # needs the registry

        return avro_serializer(settings, spec)
    raise ConfigError(f"topic {spec.name} has value_format {spec.value_format}; nothing to serialize")
