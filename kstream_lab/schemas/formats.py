"""Protobuf and JSON Schema values in the Confluent wire format, per record, beside Avro.

Producing goes through confluent-kafka's ProtobufSerializer and JSONSerializer (wrapped in
:mod:`kstream_lab.kafka.schema_registry`): magic byte 0, 4-byte schema id, then for Protobuf the
message indexes and the body, for JSON the UTF-8 JSON document. Decoding one record uses
:class:`ConfluentRecordDecoder`, which reads the writer schema's type from the registry (so one
decoder reads a topic of any of the three formats) and fails with a precise reason, like
:class:`~kstream_lab.schemas.avro.AvroRecordDecoder`:

============================  ============================================================
``error.reason``              when
============================  ============================================================
``tombstone``/``empty_value``  no value
``not_protobuf``/``not_json_schema``/``not_avro``  no magic byte (the expected format named)
``truncated``                 fewer than 5 header bytes; a Protobuf body cut short
``unknown_schema_id``         the registry does not know the id
``schema_refused``            the id's schema is of another format than expected, or invalid
``bad_message_index``         Protobuf message indexes that name no message of the file
``corrupt_body``              a Protobuf body that does not parse
``not_json``                  a JSON body that is not JSON (or not UTF-8)
``schema_violation``          a JSON value the writer's schema rejects (the message names where)
============================  ============================================================

Decoded values are plain dicts: Protobuf enums by name, unset message fields and unset
``optional``/oneof members None, 64-bit integers as ints (not strings, unlike protobuf's JSON
mapping), so a Protobuf record equals its Avro twin's dict.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from kstream_lab.errors import AuthorizationError, DeserializationError, SerializationError, WriterSchemaUnavailable
from kstream_lab.kafka.schema_registry import RegisteredSchema, RegistryError, SchemaRegistry
from kstream_lab.schemas.avro import HEADER, MAGIC, Problem, refusal_reason
from kstream_lab.schemas.compat import InvalidSchema, Parsed, Source, parse_source
from kstream_lab.schemas.serde import NO_CONTEXT, SerdeContext, Serializer
from kstream_lab.settings import Settings

FORMAT_OF_TYPE = {"AVRO": "avro", "JSON": "json_schema", "PROTOBUF": "protobuf"}


class Schemas(Protocol):
    """What decoding needs from a registry (SchemaRegistry, or a fixed one in tests)."""

    def schema(self, schema_id: int) -> RegisteredSchema: ...

    def referenced(self, subject: str, version: int) -> RegisteredSchema: ...

    def writer_schema(self, schema_id: int) -> str: ...


class StaticRegistry:
    """Schemas known up front: id -> RegisteredSchema, (subject, version) -> RegisteredSchema."""

    def __init__(
        self,
        by_id: dict[int, RegisteredSchema],
        versions: dict[tuple[str, int], RegisteredSchema] | None = None,
    ) -> None:
        self.by_id, self.versions = by_id, versions or {}

    def schema(self, schema_id: int) -> RegisteredSchema:
        try:
            return self.by_id[schema_id]
        except KeyError:
            raise RegistryError(f"Schema {schema_id} not found", status=404, code=40403) from None

    def referenced(self, subject: str, version: int) -> RegisteredSchema:
        try:
            return self.versions[(subject, version)]
        except KeyError:
            raise RegistryError(f"Subject '{subject}' version {version} not found", status=404, code=40402) from None

    def writer_schema(self, schema_id: int) -> str:
        sch = self.schema(schema_id)
        if sch.schema_type != "AVRO":
            raise RegistryError(
                f"schema id {schema_id} is a {sch.schema_type} schema, not Avro", status=422, code=42201
            )
        return sch.schema


def source_of(registry: Schemas, sch: RegisteredSchema, depth: int = 0) -> Source:
    """The schema with its references fetched (recursively) from the registry."""
    if depth > 32:
        raise InvalidSchema("references nest more than 32 deep")
    deps = tuple(
        (name, source_of(registry, registry.referenced(subject, version), depth + 1))
        for name, subject, version in sch.references
    )
    return Source(sch.schema_type, sch.schema, deps)


def fetch_schema(registry: Schemas, schema_id: int) -> RegisteredSchema:
    """Schema ``schema_id`` and its references' schemas fetched, telling an outage from a refusal
    (as :func:`~kstream_lab.schemas.avro.fetch_writer_schema`): an outage raises
    WriterSchemaUnavailable, a 401/403 AuthorizationError, a refusal stays RegistryError."""
    try:
        return registry.schema(schema_id)
    except RegistryError as exc:
        if exc.status in (401, 403):
            raise AuthorizationError(exc.message, hint=exc.hint) from None
        if exc.unavailable:
            raise WriterSchemaUnavailable(schema_id, exc) from None
        raise


def schema_type_of(registry: Schemas, schema_id: int) -> str:
    """AVRO, JSON or PROTOBUF: the type of writer schema ``schema_id``."""
    return fetch_schema(registry, schema_id).schema_type


@dataclass(frozen=True)
class Writer:
    """A parsed writer schema and what decoding needs from it."""

    schema_id: int
    parsed: Parsed
    validator: Any = None


class WriterCache:
    """Parsed writer schemas by id, fetched once (ids are immutable); outages raise, refusals are Problems."""

    def __init__(self, registry: Schemas) -> None:
        self.registry = registry
        self._parsed: dict[int, Writer | Problem] = {}

    def get(self, schema_id: int) -> Writer | Problem:
        if schema_id not in self._parsed:
            try:
                sch = fetch_schema(self.registry, schema_id)
                try:
                    source = source_of(self.registry, sch)
                except RegistryError as exc:
                    if exc.unavailable:
                        raise WriterSchemaUnavailable(schema_id, exc) from None
                    raise
                parsed = parse_source(source)
            except RegistryError as exc:
                self._parsed[schema_id] = refusal_reason(schema_id, exc)
            except InvalidSchema as exc:
                self._parsed[schema_id] = Problem("schema_refused", f"writer schema {schema_id} is invalid: {exc}")
            else:
                validator = None
                if parsed.kind == "JSON":
                    from kstream_lab.schemas.json_schema import validator as make_validator

                    validator = make_validator(parsed)
                self._parsed[schema_id] = Writer(schema_id, parsed, validator)
        return self._parsed[schema_id]


def framing_problem(value: bytes | None, expected: str) -> Problem | None:
    """Why ``value`` is not a Confluent-framed record (``expected``: the format's name)."""
    if value is None:
        return Problem("tombstone", f"null value (tombstone) where a {expected} record was expected")
    if len(value) == 0:
        return Problem("empty_value", "empty value")
    if value[0] != MAGIC:
        return Problem(
            f"not_{expected}",
            f"no magic byte: first byte is 0x{value[0]:02x}, expected 0x00 (not Confluent wire format)",
        )
    if len(value) < HEADER:
        return Problem("truncated", f"truncated header: {len(value)} bytes, the magic byte and schema id need 5")
    return None


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint at ``pos``: (value, next position); IndexError when cut, ValueError when too long."""
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def message_indexes(value: bytes) -> tuple[list[int], int]:
    """The Confluent message indexes after the header, and where the body starts."""
    if value[HEADER] == 0:
        return [0], HEADER + 1
    count, pos = read_varint(value, HEADER)
    if count < 0 or count > 64:
        raise ValueError(f"message index count {count}")
    out = []
    for _ in range(count):
        index, pos = read_varint(value, pos)
        out.append(index)
    return out, pos


def runs_out(body: bytes) -> bool:
    """Whether the top-level fields of a Protobuf body run past its end (it was cut short)."""
    pos, n = 0, len(body)
    try:
        while pos < n:
            key, pos = _plain_varint(body, pos)
            wire = key & 7
            if wire == 0:
                _, pos = _plain_varint(body, pos)
            elif wire == 1:
                pos += 8
            elif wire == 2:
                size, pos = _plain_varint(body, pos)
                pos += size
            elif wire == 5:
                pos += 4
            elif wire not in (3, 4):
                return False  # no such wire type: corrupt, not cut
    except IndexError:
        return True
    return pos > n


def _plain_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def body_problem(schema_id: int, body: bytes, exc: Exception) -> Problem:
    """``truncated`` when the body's fields run past its end, else ``corrupt_body``."""
    return Problem(
        "truncated" if runs_out(body) else "corrupt_body",
        f"Protobuf body for schema id {schema_id} does not parse: {exc}",
    )


def message_dict(msg: Message) -> dict[str, Any]:
    """A Protobuf message as the dict its Avro twin decodes to (see the module docstring)."""
    out: dict[str, Any] = {}
    for f in msg.DESCRIPTOR.fields:
        out[f.name] = field_value(msg, f)
    return out


def _has_presence(f: FieldDescriptor) -> bool:
    return bool(getattr(f, "has_presence", False)) and not _repeated(f)


def _repeated(f: FieldDescriptor) -> bool:
    if hasattr(f, "is_repeated"):
        return bool(f.is_repeated)
    return bool(f.label == FieldDescriptor.LABEL_REPEATED)


def _scalar(f: FieldDescriptor, v: Any) -> Any:
    if f.type == FieldDescriptor.TYPE_ENUM:
        enum = f.enum_type.values_by_number.get(v)
        return enum.name if enum is not None else str(v)
    if f.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
        return message_dict(v)
    return v


def field_value(msg: Message, f: FieldDescriptor) -> Any:
    v = getattr(msg, f.name)
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        value_field = f.message_type.fields_by_name["value"]
        return {k: _scalar(value_field, v[k]) for k in v}
    if _repeated(f):
        return [_scalar(f, x) for x in v]
    if _has_presence(f) and not msg.HasField(f.name):
        return None
    return _scalar(f, v)


class ConfluentRecordDecoder:
    """Decode one Confluent-framed value of any registered format (Avro, JSON Schema, Protobuf).

    A decoder of :mod:`kstream_lab.schemas.serde`'s contract. ``expected`` (``protobuf``,
    ``json_schema``, ``avro``, or None for whatever the registry says) names the format in the
    no-magic-byte reason and refuses writer schemas of other formats (``schema_refused``).
    """

    def __init__(self, registry: Schemas, expected: str | None = None) -> None:
        self.registry, self.expected = registry, expected
        self.writers = WriterCache(registry)
        self._avro: Any = None
        self._classes: dict[tuple[int, tuple[int, ...]], Any] = {}

    def __call__(self, value: bytes | None, ctx: SerdeContext = NO_CONTEXT) -> dict:
        where = ctx.where()
        problem = framing_problem(value, self.expected or "confluent")
        if problem:
            raise DeserializationError(problem.message, reason=problem.reason, **where)
        assert value is not None
        schema_id = int.from_bytes(value[1:HEADER], "big")
        writer = self.writers.get(schema_id)
        if isinstance(writer, Problem):
            raise DeserializationError(writer.message, reason=writer.reason, **where)
        fmt = FORMAT_OF_TYPE[writer.parsed.kind]
        if self.expected and fmt != self.expected:
            raise DeserializationError(
                f"schema id {schema_id} is a {writer.parsed.kind} schema, not {self.expected}",
                reason="schema_refused",
                **where,
            )
        try:
            if fmt == "protobuf":
                return self._protobuf(value, writer)
            if fmt == "json_schema":
                return self._json(value, writer)
        except _Bad as bad:
            raise DeserializationError(bad.problem.message, reason=bad.problem.reason, **where) from None
        if self._avro is None:
            from kstream_lab.schemas.avro import AvroRecordDecoder

            self._avro = AvroRecordDecoder(self.registry)
        return self._avro(value, ctx)

    def message_class(self, writer: Writer, indexes: list[int]) -> Any:
        key = (writer.schema_id, tuple(indexes))
        if key not in self._classes:
            from kstream_lab.schemas.protobuf import message_at, message_class

            try:
                desc: Descriptor = message_at(writer.parsed.schema, indexes)
            except IndexError:
                raise _Bad(
                    Problem(
                        "bad_message_index",
                        f"message indexes {indexes} name no message of schema id {writer.schema_id}",
                    )
                ) from None
            self._classes[key] = message_class(desc)
        return self._classes[key]

    def _protobuf(self, value: bytes, writer: Writer) -> dict:
        if len(value) == HEADER:
            raise _Bad(Problem("truncated", "no message indexes after the header"))
        try:
            indexes, start = message_indexes(value)
        except (IndexError, ValueError) as exc:
            raise _Bad(Problem("bad_message_index", f"unreadable message indexes: {exc}")) from None
        cls = self.message_class(writer, indexes)
        try:
            msg = cls.FromString(value[start:])
        except DecodeError as exc:
            raise _Bad(body_problem(writer.schema_id, value[start:], exc)) from None
        return message_dict(msg)

    def _json(self, value: bytes, writer: Writer) -> dict:
        try:
            obj = json.loads(value[HEADER:])
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Bad(Problem("not_json", f"not valid JSON after the header: {exc}")) from None
        error = next(iter(writer.validator.iter_errors(obj)), None) if writer.validator is not None else None
        if error is not None:
            path = "/".join(map(str, error.absolute_path)) or "(root)"
            raise _Bad(
                Problem(
                    "schema_violation",
                    f"value does not match schema id {writer.schema_id} at {path}: {error.message}",
                )
            )
        if not isinstance(obj, dict):
            raise _Bad(Problem("schema_violation", f"expected a JSON object, got {type(obj).__name__}"))
        return obj


class _Bad(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


# ---- producing ---------------------------------------------------------------------------------------


def _guard(serialize: Callable[[Any, str], bytes], default_topic: str | None, what: str) -> Serializer:
    def serializer(obj: Any, ctx: SerdeContext = NO_CONTEXT) -> bytes:
        topic = ctx.topic or default_topic
        if topic is None:
            raise SerializationError("no topic to serialize for (the subject is <topic>-value)")
        try:
            return serialize(obj, topic)
        except RegistryError:
            raise
        except Exception as exc:  # jsonschema's ValidationError, protobuf's TypeError, ...
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            err = SerializationError(f"value for topic {topic} does not match its {what} schema: {message}")
            err.topic = topic
            raise err from None

    return serializer


def protobuf_serializer(settings: Settings, message_class: type, topic: str | None = None) -> Serializer:
    """A serializer of Protobuf messages of ``message_class`` (confluent-kafka's ProtobufSerializer)."""
    return _guard(SchemaRegistry(settings).protobuf_serializer(message_class), topic, "Protobuf")


def json_schema_serializer(
    settings: Settings, schema: str, topic: str | None = None, references: tuple[tuple[str, str, int], ...] = ()
) -> Serializer:
    """A serializer of dicts validated against JSON ``schema`` (confluent-kafka's JSONSerializer)."""
    return _guard(SchemaRegistry(settings).json_serializer(schema, references), topic, "JSON")
