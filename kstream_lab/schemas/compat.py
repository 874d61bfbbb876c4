"""Schema parsing and compatibility: Avro by the Avro specification's schema-resolution rules,
JSON Schema and Protobuf by the rules in :mod:`kstream_lab.schemas.json_schema` and
:mod:`kstream_lab.schemas.protobuf` (modelled on Confluent Schema Registry's; docs/schemas.md).

The registry enforces a compatibility level per subject. "Can a reader with schema R read data
written with schema W?" is the only question; the levels just choose which pairs to ask about:
BACKWARD = new schema reads data of the previous version, FORWARD = the previous version reads the
new schema's data, FULL = both, ``*_TRANSITIVE`` = against every earlier version, NONE = no check.
Messages name the field (with its path) so a refused registration says what to fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException, UnknownType

LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE")
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
PROMOTIONS = {  # writer type -> reader types that can read it (Avro spec, "Schema Resolution")
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


SCHEMA_TYPES = ("AVRO", "JSON", "PROTOBUF")


class InvalidSchema(ValueError):
    """Schema text that is not a valid schema of its type (the parser's message)."""


@dataclass(frozen=True)
class Source:
    """A schema to parse: its type, its text and the schemas its references name, resolved
    (reference name -> Source, each with its own references), as the registry stores them."""

    schema_type: str
    text: str
    deps: tuple[tuple[str, Source], ...] = ()


@dataclass(frozen=True)
class Parsed:
    """A parsed schema: ``kind`` (AVRO, JSON, PROTOBUF), the parsed form, and what its references
    brought (Avro: named types by full name; JSON: a ``referencing`` registry; Protobuf: the pool)."""

    kind: str
    schema: Any
    named: Any = field(default=None, compare=False)


def parse_source(source: Source) -> Parsed:
    """Parse and validate a schema of any supported type with its references."""
    kind = (source.schema_type or "AVRO").upper()
    if kind == "AVRO":
        named: dict[str, Any] = {}
        _avro_deps(source.deps, named, set())
        return Parsed("AVRO", parse_avro(source.text, named), dict(named))
    if kind == "JSON":
        from kstream_lab.schemas.json_schema import parse_json_schema

        return parse_json_schema(source)
    if kind == "PROTOBUF":
        from kstream_lab.schemas.protobuf import parse_protobuf

        return parse_protobuf(source)
    raise InvalidSchema(f"Invalid schema: unknown schemaType {source.schema_type!r}; one of {', '.join(SCHEMA_TYPES)}")


def _avro_deps(deps: tuple[tuple[str, Source], ...], named: dict[str, Any], seen: set[str]) -> None:
    for name, dep in deps:
        if name in seen:
            continue
        seen.add(name)
        if (dep.schema_type or "AVRO").upper() != "AVRO":
            raise InvalidSchema(f"Invalid schema: reference {name!r} is a {dep.schema_type} schema, not Avro")
        _avro_deps(dep.deps, named, seen)
        parse_avro(dep.text, named)


def canonical_text(schema_type: str, text: str) -> str:
    """The form two schemas of a type are compared in to decide they are the same schema."""
    kind = (schema_type or "AVRO").upper()
    if kind == "PROTOBUF":
        from kstream_lab.schemas.protobuf import canonical_protobuf

        return canonical_protobuf(text)
    try:
        return canonical(text)
    except ValueError:
        return text


def parse_avro(text: str, named: dict[str, Any] | None = None) -> Any:
    """Parse and validate schema text; return the fully-qualified parsed form (names resolved).

    ``named`` holds the named types of referenced schemas (and receives this schema's)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSchema(f"Invalid schema: not JSON: {exc}") from None
    try:
        if named is not None:
            return fastavro.parse_schema(raw, named_schemas=named, _write_hint=False)
        return fastavro.parse_schema(raw, _write_hint=False)
    except UnknownType as exc:
        raise InvalidSchema(f"Invalid schema: unknown type {exc.name!r}") from None
    except (SchemaParseException, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidSchema(f"Invalid schema: {type(exc).__name__}: {exc}") from None


def canonical(text: str) -> str:
    """Whitespace- and key-order-insensitive form used to decide whether two schemas are the same."""
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


def _named_types(schema: Any, out: dict[str, dict]) -> dict[str, dict]:
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, out)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed") and "name" in schema:
            out[schema["name"]] = schema
        if kind in ("record", "error"):
            for f in schema.get("fields", []):
                _named_types(f["type"], out)
        elif kind == "array":
            _named_types(schema["items"], out)
        elif kind == "map":
            _named_types(schema["values"], out)
    return out


class _Checker:
    """Walks a reader/writer pair of parsed schemas, collecting incompatibilities."""

    def __init__(self, reader: Any, writer: Any, rnamed: dict | None = None, wnamed: dict | None = None) -> None:
        self.rnames = _named_types(reader, _named_types(list((rnamed or {}).values()), {}))
        self.wnames = _named_types(writer, _named_types(list((wnamed or {}).values()), {}))
        self.seen: set[tuple[str, str]] = set()
        self.problems: list[str] = []

    def resolve(self, schema: Any, names: dict[str, dict]) -> Any:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return names.get(schema, schema)
        if isinstance(schema, dict) and schema.get("type") in PRIMITIVES:
            return schema["type"]  # logical types do not change the encoding
        return schema

    @staticmethod
    def kind(schema: Any) -> str:
        if isinstance(schema, list):
            return "union"
        return schema if isinstance(schema, str) else schema["type"]

    def check(self, reader: Any, writer: Any, path: str) -> bool:
        """True when data written with ``writer`` resolves against ``reader``; records why not."""
        reader, writer = self.resolve(reader, self.rnames), self.resolve(writer, self.wnames)
        rk, wk = self.kind(reader), self.kind(writer)
        if wk == "union":
            return all([self.check(reader, branch, path) for branch in writer])  # list: report every branch
        if rk == "union":
            if any(self.quiet(branch, writer) for branch in reader):
                return True
            return self.fail(
                path,
                "TYPE_MISMATCH",
                f"writer type {describe(writer)} matches no branch of the reader's union {describe(reader)}",
            )
        if rk != wk:
            if wk in PROMOTIONS and rk in PROMOTIONS[wk]:
                return True
            return self.fail(
                path, "TYPE_MISMATCH", f"writer type {describe(writer)} cannot be read as {describe(reader)}"
            )
        if rk in ("record", "error"):
            return self.record(reader, writer, path)
        if rk == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                return self.fail(
                    path,
                    "MISSING_ENUM_SYMBOLS",
                    f"reader enum {reader['name']} lacks symbols {missing} and has no default",
                )
            return True
        if rk == "fixed":
            if reader["size"] != writer["size"]:
                return self.fail(path, "FIXED_SIZE_MISMATCH", f"fixed size {writer['size']} != {reader['size']}")
            return self.names_match(reader, writer, path)
        if rk == "array":
            return self.check(reader["items"], writer["items"], f"{path}[]")
        if rk == "map":
            return self.check(reader["values"], writer["values"], f"{path}{{}}")
        return True

    def quiet(self, reader: Any, writer: Any) -> bool:
        """Like check, but without recording problems (for trying union branches)."""
        probe = _Checker.__new__(_Checker)
        probe.rnames, probe.wnames, probe.seen, probe.problems = self.rnames, self.wnames, set(self.seen), []
        return probe.check(reader, writer, "")

    def record(self, reader: dict, writer: dict, path: str) -> bool:
        if not self.names_match(reader, writer, path):
            return False
        key = (reader["name"], writer["name"])
        if key in self.seen:  # recursive type already being compared
            return True
        self.seen.add(key)
        wfields = {f["name"]: f for f in writer.get("fields", [])}
        ok = True
        for rf in reader.get("fields", []):
            fpath = f"{path}.{rf['name']}" if path else rf["name"]
            candidates = [rf["name"], *rf.get("aliases", [])]
            wf = next((wfields[n] for n in candidates if n in wfields), None)
            if wf is None:
                if "default" not in rf:
                    ok = self.fail(
                        fpath,
                        "READER_FIELD_MISSING_DEFAULT_VALUE",
                        "the reader's field has no default value and is missing in the writer "
                        "schema (give it a default)",
                    )
                continue
            ok = self.check(rf["type"], wf["type"], fpath) and ok
        return ok

    def names_match(self, reader: dict, writer: dict, path: str) -> bool:
        rnames = {reader["name"], short(reader["name"]), *reader.get("aliases", [])}
        if writer["name"] in rnames or short(writer["name"]) in {short(n) for n in rnames}:
            return True
        return self.fail(
            path, "NAME_MISMATCH", f"writer {writer['type']} {writer['name']} cannot be read as {reader['name']}"
        )

    def fail(self, path: str, error_type: str, message: str) -> bool:
        where = f"field {path!r}: " if path else ""
        self.problems.append(f"{error_type}: {where}{message}")
        return False


def short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def describe(schema: Any) -> str:
    if isinstance(schema, list):
        return "[" + ", ".join(describe(b) for b in schema) + "]"
    if isinstance(schema, dict):
        return schema.get("name") or schema["type"]
    return schema


def read_problems(reader: Any, writer: Any) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader`` (empty: it can).

    Parsed Avro forms, or :class:`Parsed` schemas of any type (both of the same type)."""
    if isinstance(reader, Parsed) or isinstance(writer, Parsed):
        if not (isinstance(reader, Parsed) and isinstance(writer, Parsed)):
            raise TypeError("read_problems: both schemas must be Parsed, or both parsed Avro")
        if reader.kind != writer.kind:
            return [f"SCHEMA_TYPE_CHANGED: a {reader.kind} schema cannot read data written with a {writer.kind} schema"]
        if reader.kind == "JSON":
            from kstream_lab.schemas.json_schema import json_read_problems

            return json_read_problems(reader, writer)
        if reader.kind == "PROTOBUF":
            from kstream_lab.schemas.protobuf import protobuf_read_problems

            return protobuf_read_problems(reader, writer)
        checker = _Checker(reader.schema, writer.schema, reader.named, writer.named)
        checker.check(reader.schema, writer.schema, "")
        return checker.problems
    checker = _Checker(reader, writer)
    checker.check(reader, writer, "")
    return checker.problems


def compatibility_problems(level: str, new: Any, existing: list[Any]) -> list[str]:
    """Problems registering ``new`` after ``existing`` (oldest first) under ``level``."""
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"unknown compatibility level {level!r}; one of {', '.join(LEVELS)}")
    if level == "NONE" or not existing:
        return []
    against = existing if level.endswith("_TRANSITIVE") else existing[-1:]
    problems: list[str] = []
    for old in reversed(against):
        if level.startswith(("BACKWARD", "FULL")):
            problems += read_problems(new, old)
        if level.startswith(("FORWARD", "FULL")):
            problems += read_problems(old, new)
    return list(dict.fromkeys(problems))
