"""The workers' side of the serde contract: outages retried, encoders bound to a topic, batches as columns.

Workers never decide a format themselves: the same worker code runs over Avro topics in production
and over JSON copies of the pipeline in quick tests, through :mod:`kstream_lab.schemas.serde`'s
``value_decoder``/``value_serializer``. Every decode failure is a DeserializationError/InvalidRecordError
carrying topic/partition/offset, which the workers route to the DLQ; a schema registry that cannot
answer (WriterSchemaUnavailable) becomes :class:`RetryBatch` here, so it is waited out, never
dead-lettered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kstream_lab.errors import DeserializationError, InvalidRecordError, RecordError, WriterSchemaUnavailable
from kstream_lab.kafka.transactional import RetryBatch
from kstream_lab.pipeline_spec import TopicSpec
from kstream_lab.schemas.serde import Decoder, SerdeContext, value_decoder, value_serializer
from kstream_lab.settings import Settings

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


def retry_the_batch(exc: WriterSchemaUnavailable) -> RetryBatch:
    """A registry that cannot answer is not the records' fault: retry the batch, never dead-letter it."""
    return RetryBatch(exc.message)


def retrying_outages(decode: Decoder) -> Decoder:
    """``decode`` with a registry outage raised as RetryBatch (the per-record workers' decoder)."""

    def decoder(value: bytes | None, ctx: SerdeContext) -> dict:
        try:
            return decode(value, ctx)
        except WriterSchemaUnavailable as exc:
            raise retry_the_batch(exc) from None

    return decoder


def value_encoder(settings: Settings, spec: TopicSpec, schema: Any = None) -> Encoder:
    """``dict -> bytes`` for the topic's format (Avro registers the schema, or ``schema``, up front)."""
    serialize = value_serializer(settings, spec, schema)
    ctx = SerdeContext(spec.name)

    def encode(obj: dict) -> bytes:
        return serialize(obj, ctx)

    return encode


def require(
    record: Mapping, types: Mapping[str, type | tuple[type, ...]], *, topic: str, partition: int, offset: int
) -> None:
    """Business-level shape check after decoding: each named field present with the right type.

    A field the record does not have is ``missing_field``; one it has with another type (null,
    a bool where an int belongs, a string for a number) is ``wrong_type``: a record written with
    another registered schema decodes fine and only fails here.
    """
    for name, typ in types.items():
        value = record.get(name)
        if not isinstance(value, typ) or isinstance(value, bool):
            expected = getattr(typ, "__name__", typ)
            missing = name not in record
            raise InvalidRecordError(
                f"field {name!r} is missing, expected {expected}"
                if missing
                else f"field {name!r} is {value!r}, expected {expected}",
                topic=topic,
                partition=partition,
                offset=offset,
                reason="missing_field" if missing else "wrong_type",
            )


def column_decoder(
    settings: Settings, spec: TopicSpec, *, ints: Sequence[str], others: Sequence[str] = ()
) -> ColumnDecoder:
    """``(values, topic, partitions, offsets) -> Columns`` of the fields ``ints`` (required integers)
    and ``others`` (any type, may be null), for workers that fold whole batches.

    Avro decodes in bulk (the container trick, about ten times per-record fastavro); JSON goes
    record by record (it serves quick test copies of the pipeline, not volume). Either way a
    registry that cannot answer is :class:`RetryBatch`, never a dead letter.
    """
    if spec.value_format == "avro":
        from kstream_lab.kafka.schema_registry import SchemaRegistry

        registry = SchemaRegistry(settings)
        return lambda values, topic, partitions, offsets: _avro_columns(
            registry, values, topic, partitions, offsets, ints, others
        )
    decode = retrying_outages(value_decoder(settings, spec))
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
            record = decode(value, SerdeContext(topic, partitions[i], offsets[i]))
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
    from kstream_lab.schemas.bulk import decode_avro_batch

    try:
        batch = decode_avro_batch(values, registry)
    except WriterSchemaUnavailable as exc:
        raise retry_the_batch(exc) from None
    errors: dict[int, RecordError] = {
        f.index: DeserializationError(
            f.reason, topic=topic, partition=partitions[f.index], offset=offsets[f.index], reason=f.code
        )
        for f in batch.failures
    }
    frame, rows = batch.frame, batch.indices.tolist()
    bad = _bad_int_rows(frame, ints)
    if bad and len(batch.schema_ids) > 1:
        return _columns_per_writer_schema(registry, values, topic, partitions, offsets, ints, others)
    if bad:
        for j, (code, message) in bad.items():
            i = rows[j]
            errors[i] = InvalidRecordError(
                message, topic=topic, partition=partitions[i], offset=offsets[i], reason=code
            )
        keep = [j for j in range(len(rows)) if j not in bad]
        frame, rows = frame[keep], [rows[j] for j in keep]
    columns = {
        name: frame[name].to_list() if name in frame.columns else [None] * len(rows) for name in (*ints, *others)
    }
    return Columns(columns, rows, errors)


def _columns_per_writer_schema(
    registry: Any,
    values: list[bytes | None],
    topic: str,
    partitions: list[int],
    offsets: list[int],
    ints: Sequence[str],
    others: Sequence[str],
) -> Columns:
    """:func:`_avro_columns` once per writer schema id, merged back into input order.

    The bulk decoder concatenates the frames of different writer schemas with relaxed types: one
    record written with a schema whose ``total_cents`` is a string turns the whole column into
    strings, and every good record of the batch would be dead-lettered with it (found by the bad
    input tests). Split by schema id, only the records of the wrong schema fail, each with its own
    reason (``wrong_type``, or ``missing_field`` where the schema lacks the field). A rare path (a
    batch with more than one writer schema and a bad row), so plain Python is fine here.
    """
    groups: dict[bytes, list[int]] = {}
    for i, value in enumerate(values):
        groups.setdefault(value[1:5] if value is not None else b"", []).append(i)
    merged: list[tuple[int, list[Any]]] = []
    errors: dict[int, RecordError] = {}
    names = (*ints, *others)
    for idx in groups.values():
        part = _avro_columns(
            registry,
            [values[i] for i in idx],
            topic,
            [partitions[i] for i in idx],
            [offsets[i] for i in idx],
            ints,
            others,
        )
        errors.update({idx[k]: exc for k, exc in part.errors.items()})
        merged += [(idx[k], [part.columns[n][j] for n in names]) for j, k in enumerate(part.rows)]
    merged.sort(key=lambda row: row[0])
    columns = {n: [row[c] for _, row in merged] for c, n in enumerate(names)}
    return Columns(columns, [i for i, _ in merged], errors)


def _bad_int_rows(frame: Any, ints: Sequence[str]) -> dict[int, tuple[str, str]]:
    """Rows whose required integer fields are missing, null or not integers: row -> (reason, message),
    with the reasons :func:`require` gives the same records."""
    bad: dict[int, tuple[str, str]] = {}
    for name in ints:
        if name not in frame.columns:
            return {j: ("missing_field", f"field {name!r} is missing, expected int") for j in range(frame.height)}
        column = frame[name]
        if not column.dtype.is_integer():
            return {j: ("wrong_type", f"field {name!r} is {column.dtype}, expected int") for j in range(frame.height)}
        for j in column.is_null().arg_true().to_list():
            bad.setdefault(j, ("wrong_type", f"field {name!r} is None, expected int"))
    return bad
