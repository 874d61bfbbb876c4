"""Choosing the value serializer and decoder a topic declares in pipelines/*.yaml.

A serializer is a plain callable ``(obj, topic) -> bytes`` that raises SerializationError naming the
field when a value does not match its contract. A decoder is ``(value, topic=, partition=, offset=)
-> dict`` raising DeserializationError with the record's coordinates, so workers can send the
original bytes to the DLQ. Bulk decoding for replay lives in :mod:`kstream_lab.schemas.bulk`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from kstream_lab.errors import ConfigError, DeserializationError, SerializationError
from kstream_lab.pipeline_spec import TopicSpec
from kstream_lab.settings import Settings

Serializer = Callable[[dict, str], bytes]
Decoder = Callable[..., dict]


def json_serializer(obj: dict, topic: str) -> bytes:
    try:
        return json.dumps(obj, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"value is not JSON-serialisable: {exc}", topic=topic) from None


def json_decoder(
    value: bytes | None, *, topic: str | None = None, partition: int | None = None, offset: int | None = None
) -> dict:
    """Decode one JSON object value."""
    try:
        obj = json.loads(value) if value else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DeserializationError(f"not valid JSON: {exc}", topic=topic, partition=partition, offset=offset) from None
    if not isinstance(obj, dict):
        raise DeserializationError(
            f"expected a JSON object, got {type(obj).__name__}", topic=topic, partition=partition, offset=offset
        )
    return obj


def value_serializer(settings: Settings, spec: TopicSpec) -> Serializer:
    """The serializer for ``spec.value_format``."""
    if spec.value_format == "json":
        return json_serializer
    if spec.value_format == "avro":
        from kstream_lab.schemas.avro import avro_serializer  # needs the registry

        return avro_serializer(settings, spec)
    raise ConfigError(f"topic {spec.name} has value_format {spec.value_format}; nothing to serialize")


def value_decoder(settings: Settings, spec: TopicSpec, *, reader_schema: str | None = None) -> Decoder:
    """The per-record decoder for ``spec.value_format`` (Avro: writer schema from the registry)."""
    if spec.value_format == "json":
        return json_decoder
    if spec.value_format == "avro":
        from kstream_lab.kafka.registry import SchemaRegistry
        from kstream_lab.schemas.avro import AvroRecordDecoder

        return AvroRecordDecoder(SchemaRegistry(settings), reader_schema)
    raise ConfigError(f"topic {spec.name} has value_format {spec.value_format}; nothing to decode")
