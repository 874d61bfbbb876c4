"""The serde contract, and choosing the serializer and decoder a topic declares in pipelines/*.yaml.

As in confluent-kafka's serialization API, both are plain callables that take a context:

- a serializer is ``(obj, ctx) -> bytes`` and raises SerializationError naming the field when a
  value does not match its contract;
- a decoder is ``(value, ctx) -> dict`` and raises DeserializationError with the record's
  coordinates (from ``ctx``), so workers can send the original bytes to the DLQ. A schema registry
  that cannot answer is :class:`~kstream_lab.errors.WriterSchemaUnavailable` instead: nothing is
  wrong with the record, so it must be retried, never dead-lettered.

Bulk decoding for replay and the aggregator lives in :mod:`kstream_lab.schemas.bulk`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from kstream_lab.errors import ConfigError, DeserializationError, SerializationError
from kstream_lab.pipeline_spec import TopicSpec
from kstream_lab.settings import Settings


class SerdeContext(NamedTuple):
    """Where a value comes from (or goes to): what errors name so a bad record is findable.

    At produce time only the topic is known; decoders get partition and offset too. Immutable, and
    a NamedTuple rather than a frozen dataclass because workers build one per record (3x cheaper).
    """

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    headers: Sequence[tuple[str, bytes]] | None = None

    def where(self) -> dict[str, Any]:
        """The coordinates as RecordError keyword arguments."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


NO_CONTEXT = SerdeContext()
Serializer = Callable[[dict, SerdeContext], bytes]
Decoder = Callable[[bytes | None, SerdeContext], dict]


def json_serializer(obj: dict, ctx: SerdeContext = NO_CONTEXT) -> bytes:
    try:
        return json.dumps(obj, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"value is not JSON-serialisable: {exc}", topic=ctx.topic) from None


def json_decoder(value: bytes | None, ctx: SerdeContext = NO_CONTEXT) -> dict:
    """Decode one JSON object value; a tombstone, invalid JSON or a non-object is a DeserializationError."""
    if value is None:
        raise DeserializationError(
            "null value (tombstone) where a JSON object was expected", reason="tombstone", **ctx.where()
        )
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DeserializationError(f"not valid JSON: {exc}", reason="not_json", **ctx.where()) from None
    if not isinstance(obj, dict):
        raise DeserializationError(
            f"expected a JSON object, got {type(obj).__name__}", reason="not_json_object", **ctx.where()
        )
    return obj


def value_serializer(settings: Settings, spec: TopicSpec, schema: Any = None) -> Serializer:
    """The serializer for ``spec.value_format`` (Avro: ``schema``, a SchemaFile, instead of the declared one)."""
    if spec.value_format == "json":
        return json_serializer
    if spec.value_format == "avro":
        from kstream_lab.schemas.avro import avro_serializer  # needs the registry

        return avro_serializer(settings, spec, schema)
    if spec.value_format in ("protobuf", "json_schema"):
        raise ConfigError(
            f"topic {spec.name} has value_format {spec.value_format}, whose schema is code, not a file here",
            hint="produce with kstream_lab.schemas.formats.protobuf_serializer(settings, MessageClass) "
            "or json_schema_serializer(settings, schema_text)",
        )
    raise ConfigError(f"topic {spec.name} has value_format {spec.value_format}; nothing to serialize")


def value_decoder(settings: Settings, spec: TopicSpec, *, reader_schema: str | None = None) -> Decoder:
    """The per-record decoder for ``spec.value_format`` (Avro: writer schema from the registry)."""
    if spec.value_format == "json":
        return json_decoder
    if spec.value_format == "avro":
        from kstream_lab.kafka.schema_registry import SchemaRegistry
        from kstream_lab.schemas.avro import AvroRecordDecoder

        return AvroRecordDecoder(SchemaRegistry(settings), reader_schema)
    if spec.value_format in ("protobuf", "json_schema"):
        from kstream_lab.kafka.schema_registry import SchemaRegistry
        from kstream_lab.schemas.formats import ConfluentRecordDecoder

        return ConfluentRecordDecoder(SchemaRegistry(settings), spec.value_format)
    raise ConfigError(
        f"topic {spec.name} has value_format {spec.value_format}; nothing to decode",
        hint="records are decoded from json, avro, json_schema or protobuf",
    )
