"""Avro values in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body.

Producing goes through confluent-kafka's AvroSerializer (via :mod:`kstream_lab.kafka.schema_registry`), so
the bytes are exactly what every Confluent consumer expects and the subject is ``<topic>-value``
(TopicNameStrategy). Consuming one record at a time uses :class:`AvroRecordDecoder`, which checks the
header itself and decodes with fastavro so each failure has a precise reason (no magic byte, unknown
schema id, truncated body, trailing bytes) and carries topic/partition/offset for the DLQ. Decoded
event times are plain integer epoch milliseconds, as the aggregation engines expect.
"""

from __future__ import annotations

import io
import json
from typing import Any, NamedTuple, Protocol, cast

import fastavro
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate

from kstream_lab.errors import AuthorizationError, DeserializationError, SerializationError, WriterSchemaUnavailable
from kstream_lab.kafka.schema_registry import RegistryError, SchemaRegistry
from kstream_lab.pipeline_spec import TopicSpec
from kstream_lab.schemas.catalog import SchemaFile, schema_for_topic
from kstream_lab.schemas.serde import NO_CONTEXT, SerdeContext, Serializer
from kstream_lab.settings import Settings

MAGIC = 0
HEADER = 5


class WriterSchemas(Protocol):
    """Anything that maps a schema id to its schema text (a registry, or a fixed dict in notebooks)."""

    def writer_schema(self, schema_id: int) -> str: ...


class StaticSchemas:
    """Writer schemas known up front (offline decoding, tests): id -> schema text."""

    def __init__(self, schemas: dict[int, str]) -> None:
        self.schemas = schemas

    def writer_schema(self, schema_id: int) -> str:
        try:
            return self.schemas[schema_id]
        except KeyError:
            raise RegistryError(f"Schema {schema_id} not found", status=404, code=40403) from None


def fetch_writer_schema(schemas: WriterSchemas, schema_id: int) -> str:
    """The text of writer schema ``schema_id``, telling an outage from a refusal.

    A registry that cannot answer (unreachable, 5xx) raises WriterSchemaUnavailable: the record is
    fine and must be retried later. A refusal (unknown id, not an Avro schema) stays RegistryError:
    the record cannot be decoded (see :func:`refusal_reason`).
    """
    try:
        return schemas.writer_schema(schema_id)
    except RegistryError as exc:
        if exc.status in (401, 403):  # this client's credentials, not the record
            raise AuthorizationError(exc.message, hint=exc.hint) from None
        if exc.unavailable:
            raise WriterSchemaUnavailable(schema_id, exc) from None
        raise


class Problem(NamedTuple):
    """Why a value does not decode: ``reason`` is the stable name in the DLQ's ``error.reason``
    header (see :class:`kstream_lab.errors.RecordError`), ``message`` the sentence for people."""

    reason: str
    message: str


def refusal_reason(schema_id: int, exc: RegistryError) -> Problem:
    """Why a record framed with ``schema_id`` does not decode, the registry having refused the id."""
    if exc.code == 40403:
        return Problem("unknown_schema_id", f"unknown schema id {schema_id}: {exc.message}")
    return Problem("schema_refused", f"writer schema {schema_id} refused by the registry: {exc.message}")


def body_problem(schema_id: int, exc: Exception, *, ran_out: bool) -> Problem:
    """Why fastavro could not read an Avro body: ``truncated`` when it failed having read every byte
    (it needed more; fastavro says so with EOFError or IndexError alike), else ``corrupt_body`` (a bad
    union index, invalid UTF-8 in a string, a negative length, stopped mid-value)."""
    return Problem(
        "truncated" if ran_out else "corrupt_body",
        f"truncated or corrupt Avro body for schema id {schema_id} ({type(exc).__name__}: {exc})",
    )


def trailing_problem(schema_id: int, extra: int) -> Problem:
    """Bytes left after a complete Avro body: the value was written with another schema, or glued."""
    return Problem("trailing_bytes", f"{extra} trailing bytes after the Avro body for schema id {schema_id}")


TIME_LOGICAL_TYPES = {
    "timestamp-millis",
    "timestamp-micros",
    "local-timestamp-millis",
    "local-timestamp-micros",
    "time-millis",
    "time-micros",
    "date",
}


def plain_times(schema: Any) -> Any:
    """The schema with time logical types removed, so event times decode as plain integers.

    The encoding is the same (long/int), and the aggregation engines compare integer epoch ms; a
    datetime per record would cost time and invite timezone mistakes.
    """
    if isinstance(schema, list):
        return [plain_times(b) for b in schema]
    if isinstance(schema, dict):
        if schema.get("logicalType") in TIME_LOGICAL_TYPES and schema.get("type") in ("int", "long"):
            return schema["type"]
        out = dict(schema)
        if "fields" in out:
            out["fields"] = [{**f, "type": plain_times(f["type"])} for f in out["fields"]]
        for key in ("items", "values"):
            if key in out:
                out[key] = plain_times(out[key])
        if isinstance(out.get("type"), dict | list):
            out["type"] = plain_times(out["type"])
        return out
    return schema


def parse_plain(text: str) -> Any:
    return fastavro.parse_schema(plain_times(json.loads(text)))


def frame(schema_id: int, body: bytes) -> bytes:
    return bytes([MAGIC]) + schema_id.to_bytes(4, "big") + body


def header_problem(value: bytes | None) -> Problem | None:
    """Why ``value`` cannot be a Confluent-framed record, or None when the header looks right."""
    if value is None:
        return Problem("tombstone", "null value (tombstone) where an Avro record was expected")
    if len(value) == 0:
        return Problem("empty_value", "empty value")
    if value[0] != MAGIC:
        return Problem(
            "not_avro", f"no magic byte: first byte is 0x{value[0]:02x}, expected 0x00 (not Confluent wire format)"
        )
    if len(value) < HEADER:
        return Problem("truncated", f"truncated header: {len(value)} bytes, the magic byte and schema id need 5")
    return None


def field_problem(schema: Any, obj: Any) -> str:
    """Name the fields of ``obj`` that do not match ``schema`` (parsed), e.g. ``total_cents``."""
    try:
        validate(obj, schema, raise_errors=True)
    except AvroValidationError as exc:
        parts = []
        for err in exc.errors:
            name = err.field.rsplit(".", 1)[-1] if err.field else "(record)"
            parts.append(f"field {name!r}: {err.datum!r} is not a valid {json.dumps(err.schema)}")
        return "; ".join(parts)
    return ""


def avro_serializer(settings: Settings, spec: TopicSpec, schema: SchemaFile | None = None) -> Serializer:
    """Serializer for a topic whose ``value_format`` is avro; registers ``<topic>-value`` up front.

    Registering eagerly makes an unreachable or refusing registry fail before the first record, with
    a one-line error, instead of somewhere inside a produce loop. ``schema``: this one instead of the
    file the topic declares (an aggregation's derived output schema, kstream_lab.schemas.aggregate).
    """
    schema_file = schema or schema_for_topic(settings, spec)
    registry = SchemaRegistry(settings)
    registry.register(f"{spec.name}-value", schema_file.text)
    serialize = registry.avro_serializer(schema_file.text)
    parsed = fastavro.parse_schema(json.loads(schema_file.text))

    def serializer(obj: dict, ctx: SerdeContext = NO_CONTEXT) -> bytes:
        topic = ctx.topic or spec.name
        try:
            return serialize(obj, topic)
        except RegistryError:
            raise
        except Exception as exc:  # fastavro raises ValueError/TypeError/KeyError/...; name the field
            detail = field_problem(parsed, obj) or f"{type(exc).__name__}: {exc}"
            err = SerializationError(f"value for topic {topic} does not match schema {schema_file.full_name}: {detail}")
            err.topic = topic  # produce time: no partition/offset yet, so keep them out of the message
            raise err from None

    return serializer


class AvroRecordDecoder:
    """Decode one Confluent-framed Avro value to a dict, optionally into a reader schema.

    A decoder of :mod:`kstream_lab.schemas.serde`'s contract. Writer schemas are fetched once per
    id (ids are immutable). Every failure of the record is a DeserializationError with its
    coordinates, so a worker can route it to the DLQ; a registry outage is WriterSchemaUnavailable.
    """

    def __init__(self, schemas: WriterSchemas, reader_schema: str | None = None) -> None:
        self.schemas = schemas
        self.reader = parse_plain(reader_schema) if reader_schema else None
        self._writers: dict[int, Any] = {}

    def writer(self, schema_id: int) -> Any:
        if schema_id not in self._writers:
            self._writers[schema_id] = parse_plain(fetch_writer_schema(self.schemas, schema_id))
        return self._writers[schema_id]

    def __call__(self, value: bytes | None, ctx: SerdeContext = NO_CONTEXT) -> dict:
        where = ctx.where()
        problem = header_problem(value)
        if problem:
            raise DeserializationError(problem.message, reason=problem.reason, **where)
        assert value is not None
        schema_id = int.from_bytes(value[1:HEADER], "big")
        try:
            writer = self.writer(schema_id)
        except RegistryError as exc:
            problem = refusal_reason(schema_id, exc)
            raise DeserializationError(problem.message, reason=problem.reason, **where) from None
        body = io.BytesIO(value)
        body.seek(HEADER)
        try:
            record = fastavro.schemaless_reader(body, writer, self.reader)
        except Exception as exc:  # EOFError, StopIteration, UnicodeDecodeError, IndexError ...
            problem = body_problem(schema_id, exc, ran_out=body.tell() >= len(value))
            raise DeserializationError(problem.message, reason=problem.reason, **where) from None
        if body.tell() != len(value):
            problem = trailing_problem(schema_id, len(value) - body.tell())
            raise DeserializationError(problem.message, reason=problem.reason, **where)
        return cast(dict, record)  # value schemas are records (a dict from fastavro); the stubs allow any datum
