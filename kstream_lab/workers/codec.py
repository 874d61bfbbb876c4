"""Value (de)serializers chosen by a topic's declared ``value_format`` (pipelines/*.yaml).

Workers never decide a format themselves: the same worker code runs over Avro topics in production
and over JSON copies of the pipeline in quick tests. Every decode failure is a
DeserializationError/ValidationError carrying topic/partition/offset, which the workers route to the DLQ.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from kstream_lab.errors import ConfigError, DeserializationError, ValidationError
from kstream_lab.kafka.transactional import RetryBatch
from kstream_lab.pipeline_spec import TopicSpec
from kstream_lab.schemas.serde import value_serializer
from kstream_lab.settings import Settings

Decoder = Callable[[bytes | None, str, int, int], dict]
Encoder = Callable[[dict], bytes]


def _json_decoder(value: bytes | None, topic: str, partition: int, offset: int) -> dict:
    where = {"topic": topic, "partition": partition, "offset": offset}
    if value is None:
        raise DeserializationError("null value where a JSON object was expected", **where)
    try:
        obj = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DeserializationError(f"not JSON: {exc}", **where) from None
    if not isinstance(obj, dict):
        raise DeserializationError(f"expected a JSON object, got {type(obj).__name__}", **where)
    return obj


def value_decoder(settings: Settings, spec: TopicSpec) -> Decoder:
    """``(value, topic, partition, offset) -> dict`` for the topic's format."""
    if spec.value_format == "json":
        return _json_decoder
    if spec.value_format == "avro":
        from kstream_lab.kafka.registry import SchemaRegistry
        from kstream_lab.schemas.avro import AvroRecordDecoder

        decode = AvroRecordDecoder(SchemaRegistry(settings))

        def avro_decoder(value: bytes | None, topic: str, partition: int, offset: int) -> dict:
            try:
                return decode(value, topic=topic, partition=partition, offset=offset)
            except DeserializationError as exc:
                if "writer schema unavailable" in exc.message:  # registry down: not the record's fault
                    raise RetryBatch(str(exc)) from None
                raise

        return avro_decoder
    raise ConfigError(f"topic {spec.name} has value_format {spec.value_format}; workers need json or avro")


def value_encoder(settings: Settings, spec: TopicSpec) -> Encoder:
    """``dict -> bytes`` for the topic's format (Avro registers the schema up front)."""
    serialize = value_serializer(settings, spec)
    topic = spec.name

    def encode(obj: dict) -> bytes:
        return serialize(obj, topic)

    return encode


def require(record: Mapping, types: Mapping[str, type | tuple[type, ...]], *, topic: str, partition: int,
            offset: int) -> None:
    """Business-level shape check after decoding: each named field present with the right type."""
    for name, typ in types.items():
        value = record.get(name)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise ValidationError(f"field {name!r} is {value!r}, expected {getattr(typ, '__name__', typ)}",
                                  topic=topic, partition=partition, offset=offset)
