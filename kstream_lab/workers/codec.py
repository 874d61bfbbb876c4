"""Value (de)serializers chosen by a topic's declared ``value_format`` (pipelines/*.yaml).

Workers never decide a format themselves: the same worker code runs over Avro topics in production
and over JSON copies of the pipeline in quick tests. Every decode failure is a
DeserializationError/ValidationError carrying topic/partition/offset, which the workers route to the DLQ.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kstream_lab.errors import ConfigError, DeserializationError, RecordError, ValidationError
from kstream_lab.kafka.transactional import RetryBatch
from kstream_lab.pipeline_spec import TopicSpec
from kstream_lab.schemas.serde import value_serializer
from kstream_lab.settings import Settings

Decoder = Callable[[bytes | None, str, int, int], dict]
Encoder = Callable[[dict], bytes]


@dataclass
class Columns:
    """Decoded fields of a batch, column-wise: ``rows[j]`` is the input position of row j.

    ``errors`` maps input positions that did not decode or lack a required integer field to the
    RecordError (with coordinates) that sends them to the DLQ.
    """

    columns: dict[str, list[Any]]
    rows: list[int]
    errors: dict[int, RecordError] = field(default_factory=dict)


ColumnDecoder = Callable[[list[bytes | None], str, list[int], list[int]], Columns]


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


def registry_down(exc: Exception) -> RetryBatch:
    """A registry that cannot answer is not the records' fault: retry the batch, never dead-letter it."""
    return RetryBatch(f"schema registry unavailable: {getattr(exc, 'message', exc)}")


def value_decoder(settings: Settings, spec: TopicSpec) -> Decoder:
    """``(value, topic, partition, offset) -> dict`` for the topic's format."""
    if spec.value_format == "json":
        return _json_decoder
    if spec.value_format == "avro":
        from kstream_lab.kafka.registry import RegistryError, SchemaRegistry
        from kstream_lab.schemas.avro import AvroRecordDecoder

        decode = AvroRecordDecoder(SchemaRegistry(settings))

        def avro_decoder(value: bytes | None, topic: str, partition: int, offset: int) -> dict:
            try:
                return decode(value, topic=topic, partition=partition, offset=offset)
            except RegistryError as exc:  # unreachable or 5xx: retry the batch, never dead-letter it
                raise registry_down(exc) from None
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


def require(
    record: Mapping, types: Mapping[str, type | tuple[type, ...]], *, topic: str, partition: int, offset: int
) -> None:
    """Business-level shape check after decoding: each named field present with the right type."""
    for name, typ in types.items():
        value = record.get(name)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise ValidationError(
                f"field {name!r} is {value!r}, expected {getattr(typ, '__name__', typ)}",
                topic=topic,
                partition=partition,
                offset=offset,
            )


def column_decoder(
    settings: Settings, spec: TopicSpec, *, ints: Sequence[str], others: Sequence[str] = ()
) -> ColumnDecoder:
    """``(values, topic, partitions, offsets) -> Columns`` of the fields ``ints`` (required integers)
    and ``others`` (any type, may be null), for workers that fold whole batches.

    Avro decodes in bulk (the container trick, about ten times per-record fastavro); a registry
    that cannot be reached is :class:`RetryBatch`, never a dead letter. JSON goes record by record
    (it serves quick test copies of the pipeline, not volume).
    """
    if spec.value_format == "avro":
        from kstream_lab.kafka.registry import SchemaRegistry

        registry = SchemaRegistry(settings)
        return lambda values, topic, partitions, offsets: _avro_columns(
            registry, values, topic, partitions, offsets, ints, others
        )
    decode = value_decoder(settings, spec)
    return lambda values, topic, partitions, offsets: records_to_columns(
        decode, values, topic, partitions, offsets, ints, others
    )


def records_to_columns(
    decode: Decoder,
    values: list[bytes | None],
    topic: str,
    partitions: list[int],
    offsets: list[int],
    ints: Sequence[str],
    others: Sequence[str],
) -> Columns:
    """Decode record by record with ``decode`` and check ``ints``; the generic path."""
    types = {name: int for name in ints}
    out = Columns({name: [] for name in (*ints, *others)}, [])
    for i, value in enumerate(values):
        try:
            record = decode(value, topic, partitions[i], offsets[i])
            if any(type(record.get(f)) is not int for f in ints):
                require(record, types, topic=topic, partition=partitions[i], offset=offsets[i])
        except RecordError as exc:
            out.errors[i] = exc
            continue
        out.rows.append(i)
        for name, column in out.columns.items():
            column.append(record.get(name))
    return out


def _avro_columns(
    registry: Any,
    values: list[bytes | None],
    topic: str,
    partitions: list[int],
    offsets: list[int],
    ints: Sequence[str],
    others: Sequence[str],
) -> Columns:
    from kstream_lab.kafka.registry import RegistryError
    from kstream_lab.schemas.bulk import decode_avro_batch

    try:
        batch = decode_avro_batch(values, registry)
    except RegistryError as exc:  # unreachable or 5xx: the registry's fault, not the records'
        raise registry_down(exc) from None
    errors: dict[int, RecordError] = {
        f.index: DeserializationError(f.reason, topic=topic, partition=partitions[f.index], offset=offsets[f.index])
        for f in batch.failures
    }
    frame, rows = batch.frame, batch.indices.tolist()
    bad = _bad_int_rows(frame, ints)
    if bad:
        for j, reason in bad.items():
            i = rows[j]
            errors[i] = ValidationError(reason, topic=topic, partition=partitions[i], offset=offsets[i])
        keep = [j for j in range(len(rows)) if j not in bad]
        frame, rows = frame[keep], [rows[j] for j in keep]
    columns = {
        name: frame[name].to_list() if name in frame.columns else [None] * len(rows) for name in (*ints, *others)
    }
    return Columns(columns, rows, errors)


def _bad_int_rows(frame: Any, ints: Sequence[str]) -> dict[int, str]:
    """Rows whose required integer fields are missing, null or not integers: row -> reason."""
    bad: dict[int, str] = {}
    for name in ints:
        if name not in frame.columns:
            return {j: f"field {name!r} is missing, expected int" for j in range(frame.height)}
        column = frame[name]
        if not column.dtype.is_integer():
            return {j: f"field {name!r} is {column.dtype}, expected int" for j in range(frame.height)}
        for j in column.is_null().arg_true().to_list():
            bad.setdefault(j, f"field {name!r} is None, expected int")
    return bad
