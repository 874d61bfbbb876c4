"""Protobuf schemas: descriptors from the registry, compatibility, and decoding into columns.

The registry stores a Protobuf schema as a base64 ``FileDescriptorProto`` -- the form
confluent-kafka's ProtobufSerializer registers and asks back for (``format=serialized``); each
``import`` is a reference (name = the imported file's path, subject, version), except the files
bundled with the protobuf runtime (``google/protobuf/*``, ``google/type/*``), which resolve without
one. ``.proto`` source text is refused: parsing it needs protoc, which the local registry does not
ship (docs/schemas.md).

Compatibility compares two files message by message and field number by field number, with the
difference names of Confluent Schema Registry's Protobuf diff.

The wire format (Confluent): magic byte 0, 4-byte schema id, the message indexes (a zigzag varint
count, then zigzag varint indexes; a single 0 byte for the first message of the file), the body.
"""

from __future__ import annotations

import base64
import binascii
import importlib
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from google.protobuf.message import DecodeError

from kstream_lab.schemas.compat import InvalidSchema, Parsed, Source

_WELL_KNOWN = (
    "any_pb2",
    "api_pb2",
    "descriptor_pb2",
    "duration_pb2",
    "empty_pb2",
    "field_mask_pb2",
    "source_context_pb2",
    "struct_pb2",
    "timestamp_pb2",
    "type_pb2",
    "wrappers_pb2",
)


def is_builtin(name: str) -> bool:
    """Files that resolve without a reference (as confluent-kafka's serializers treat them)."""
    return name.startswith(("google/protobuf/", "google/type/", "confluent/"))


def _builtin_file(name: str) -> descriptor_pb2.FileDescriptorProto | None:
    if name.startswith("google/protobuf/"):
        for module in _WELL_KNOWN:
            importlib.import_module(f"google.protobuf.{module}")
    elif name.startswith("google/type/"):
        try:
            importlib.import_module("google.type." + name.rsplit("/", 1)[-1].removesuffix(".proto") + "_pb2")
        except ImportError:
            return None
    try:
        fd = descriptor_pool.Default().FindFileByName(name)
    except KeyError:
        return None
    return descriptor_pb2.FileDescriptorProto.FromString(fd.serialized_pb)


def file_proto(text: str, name: str | None = None) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto of a registered schema string (base64), named ``name`` if given."""
    stripped = text.strip()
    try:
        raw = base64.b64decode(stripped, validate=True)
        fdp = descriptor_pb2.FileDescriptorProto.FromString(raw)
    except (binascii.Error, ValueError, DecodeError) as exc:
        if any(word in stripped for word in ("syntax", "message ", "package ", "{")):
            raise InvalidSchema(
                "Invalid schema: .proto source text is not accepted by the local registry (it has no protoc); "
                "register the base64 FileDescriptorProto, as confluent-kafka's ProtobufSerializer does"
            ) from None
        raise InvalidSchema(f"Invalid schema: not a base64 FileDescriptorProto: {exc}") from None
    if name is not None:
        fdp.name = name
    elif not fdp.name:
        fdp.name = "default.proto"
    return fdp


def canonical_protobuf(text: str) -> str:
    """Deterministic re-serialisation, so the same descriptor is the same schema however encoded."""
    try:
        fdp = file_proto(text)
    except InvalidSchema:
        return text.strip()
    return base64.b64encode(fdp.SerializeToString(deterministic=True)).decode("ascii")


def _add(pool: descriptor_pool.DescriptorPool, fdp: descriptor_pb2.FileDescriptorProto, added: set[str]) -> None:
    if fdp.name in added:
        return
    for dep in fdp.dependency:
        if dep not in added:
            builtin = _builtin_file(dep) if is_builtin(dep) else None
            if builtin is None:
                raise InvalidSchema(
                    f"Invalid schema: {fdp.name or 'the schema'} imports {dep!r}, which is not among its references"
                )
            _add(pool, builtin, added)
    try:
        pool.Add(fdp)
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidSchema(f"Invalid schema: {fdp.name}: {exc}") from None
    added.add(fdp.name)


def _add_deps(pool: descriptor_pool.DescriptorPool, deps: tuple[tuple[str, Source], ...], added: set[str]) -> None:
    for name, dep in deps:
        if name in added:
            continue
        if (dep.schema_type or "").upper() != "PROTOBUF":
            raise InvalidSchema(f"Invalid schema: reference {name!r} is a {dep.schema_type} schema, not Protobuf")
        _add_deps(pool, dep.deps, added)
        _add(pool, file_proto(dep.text, name), added)


def parse_protobuf(source: Source) -> Parsed:
    """Build the file (and its imports, from the references) in a fresh pool; Parsed.schema is the
    FileDescriptor and Parsed.named the pool."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    _add_deps(pool, source.deps, added)
    fdp = file_proto(source.text)
    if fdp.name in added:  # a file named like one of its references: keep both apart
        fdp.name = f"__main__/{fdp.name}"
    _add(pool, fdp, added)
    try:
        fd = pool.FindFileByName(fdp.name)
    except KeyError as exc:
        raise InvalidSchema(f"Invalid schema: {exc}") from None
    return Parsed("PROTOBUF", fd, pool)


def message_at(fd: FileDescriptor, indexes: list[int]) -> Descriptor:
    """The message the Confluent message indexes name (first index: top-level, then nested)."""
    if not indexes:
        indexes = [0]
    types: Any = fd.message_types_by_name
    desc = list(types.values())[indexes[0]]
    for i in indexes[1:]:
        desc = desc.nested_types[i]
    return desc


def message_class(desc: Descriptor) -> Any:
    return message_factory.GetMessageClass(desc)


# ---- compatibility ---------------------------------------------------------------------------------

_GROUPS = [
    {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_INT64}
    | {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_BOOL},
    {FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64},
    {FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_SFIXED32},
    {FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64},
    {FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES},
]
_KINDS = {FieldDescriptor.TYPE_MESSAGE: "message", FieldDescriptor.TYPE_GROUP: "message"}


def _kind(f: FieldDescriptor) -> str:
    return "enum" if f.type == FieldDescriptor.TYPE_ENUM else _KINDS.get(f.type, "scalar")


def _scalar_compatible(a: int, b: int) -> bool:
    return a == b or any(a in g and b in g for g in _GROUPS)


def _messages(fd: FileDescriptor) -> dict[str, Descriptor]:
    out: dict[str, Descriptor] = {}

    def walk(desc: Descriptor, prefix: str) -> None:
        name = f"{prefix}{desc.name}"
        out[name] = desc
        for nested in desc.nested_types:
            if not nested.GetOptions().map_entry:
                walk(nested, f"{name}.")

    for desc in fd.message_types_by_name.values():
        walk(desc, "")
    return out


def _required(f: FieldDescriptor) -> bool:
    if hasattr(f, "is_required"):
        return bool(f.is_required)
    return bool(f.label == FieldDescriptor.LABEL_REQUIRED)


def _oneof(f: FieldDescriptor) -> str | None:
    oneof = f.containing_oneof
    if oneof is None or oneof.name.startswith("_") and len(oneof.fields) == 1:  # proto3 optional
        return None
    return str(oneof.name)


def protobuf_read_problems(reader: Parsed, writer: Parsed) -> list[str]:
    """Differences from ``writer`` (the original) to ``reader`` (the update) that break reading."""
    problems: list[str] = []
    original, update = writer.schema, reader.schema
    if original.package != update.package:
        problems.append(f"PACKAGE_CHANGED: package {original.package!r} -> {update.package!r}")
    new = _messages(update)
    for name, old in _messages(original).items():
        if name not in new:
            problems.append(f"MESSAGE_REMOVED: message {name} is gone")
            continue
        problems += _message_problems(name, old, new[name])
    return list(dict.fromkeys(problems))


def _message_problems(name: str, old: Descriptor, new: Descriptor) -> list[str]:
    problems: list[str] = []
    olds, news = old.fields_by_number, new.fields_by_number
    moved: dict[str, list[int]] = {}
    for number, of in olds.items():
        where = f"{name}.{of.name} (field {number})"
        nf = news.get(number)
        if nf is None:
            if _oneof(of):
                problems.append(f"ONEOF_FIELD_REMOVED: {where} left oneof {_oneof(of)}")
            if _required(of):
                problems.append(f"REQUIRED_FIELD_REMOVED: {where}")
            continue
        if _kind(of) != _kind(nf):
            problems.append(f"FIELD_KIND_CHANGED: {where}: {_kind(of)} -> {_kind(nf)}")
        elif _kind(of) == "scalar" and not _scalar_compatible(of.type, nf.type):
            problems.append(f"FIELD_SCALAR_KIND_CHANGED: {where}: type {of.type} -> {nf.type}")
        elif _kind(of) == "message" and of.message_type.full_name != nf.message_type.full_name:
            problems.append(
                f"FIELD_NAMED_TYPE_CHANGED: {where}: {of.message_type.full_name} -> {nf.message_type.full_name}"
            )
        elif _kind(of) == "enum" and of.enum_type.full_name != nf.enum_type.full_name:
            problems.append(f"FIELD_NAMED_TYPE_CHANGED: {where}: {of.enum_type.full_name} -> {nf.enum_type.full_name}")
        if _oneof(nf) and not _oneof(of):
            moved.setdefault(_oneof(nf) or "", []).append(number)
    for number, nf in news.items():
        if number not in olds and _required(nf):
            problems.append(f"REQUIRED_FIELD_ADDED: {name}.{nf.name} (field {number})")
    old_oneofs = {o.name for o in old.oneofs}
    for oneof, numbers in moved.items():
        if oneof in old_oneofs:
            problems.append(f"FIELD_MOVED_TO_EXISTING_ONEOF: {name}: fields {numbers} moved into oneof {oneof}")
        elif len(numbers) > 1:
            problems.append(f"MULTIPLE_FIELDS_MOVED_TO_ONEOF: {name}: fields {numbers} moved into oneof {oneof}")
    return problems
