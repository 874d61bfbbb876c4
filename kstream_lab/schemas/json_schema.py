"""JSON Schema: parsing with references, compatibility, and the Polars columns a schema implies.

A registered JSON schema may ``$ref`` another subject's schema: the registry passes each reference
as (name, schema), the name being the URI the ``$ref`` uses (e.g.
``http://example.com/customer.schema.json``), and the schemas are put into a ``referencing``
registry under those names (and under their own ``$id``), as confluent-kafka's JSONSerializer does.

Compatibility asks "is every value valid under the writer schema W also valid under the reader R?"
by comparing the two schemas keyword by keyword, as Confluent Schema Registry's JSON Schema diff
does (its difference names are used in the messages); docs/schemas.md lists the rules and what is
not compared.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl
from jsonschema import validators
from jsonschema.exceptions import SchemaError
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT7

from kstream_lab.schemas.compat import InvalidSchema, Parsed, Source


def _resource(schema: Any) -> Resource:
    return Resource.from_contents(schema, default_specification=DRAFT7)


def _load(text: str, what: str) -> Any:
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSchema(f"Invalid schema: {what} is not JSON: {exc}") from None
    if not isinstance(schema, dict | bool):
        raise InvalidSchema(f"Invalid schema: {what} must be a JSON object or boolean, not {type(schema).__name__}")
    return schema


def _add_deps(deps: tuple[tuple[str, Source], ...], resources: dict[str, Resource], seen: set[str]) -> None:
    for name, dep in deps:
        if name in seen:
            continue
        seen.add(name)
        if (dep.schema_type or "").upper() != "JSON":
            raise InvalidSchema(f"Invalid schema: reference {name!r} is a {dep.schema_type} schema, not JSON")
        schema = _load(dep.text, f"reference {name!r}")
        resources[name] = _resource(schema)
        if isinstance(schema, dict) and isinstance(schema.get("$id"), str):
            resources.setdefault(schema["$id"], resources[name])
        _add_deps(dep.deps, resources, seen)


def parse_json_schema(source: Source) -> Parsed:
    """Parse and check a JSON schema (its own metaschema) and that every ``$ref`` resolves."""
    schema = _load(source.text, "the schema")
    resources: dict[str, Resource] = {}
    _add_deps(source.deps, resources, set())
    cls = validators.validator_for(schema, default=validators.Draft7Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise InvalidSchema(
            f"Invalid schema: {exc.message} (at {'/'.join(map(str, exc.path)) or 'the root'})"
        ) from None
    registry: Registry = Registry().with_resources(resources.items())
    base = schema.get("$id", "") if isinstance(schema, dict) else ""
    registry = registry.with_resource(base, _resource(schema))
    parsed = Parsed("JSON", schema, registry)
    for ref, resolver in _refs(schema, registry.resolver(base)):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            raise InvalidSchema(
                f"Invalid schema: $ref {ref!r} does not resolve; reference the subject that holds it "
                "(references: name = that URI, subject, version)"
            ) from None
    return parsed


def _refs(schema: Any, resolver: Any, seen: set[int] | None = None) -> list[tuple[str, Any]]:
    """Every ``$ref`` in ``schema`` (not following them), with the resolver to look it up with."""
    out: list[tuple[str, Any]] = []
    if isinstance(schema, dict):
        if isinstance(schema.get("$ref"), str):
            out.append((schema["$ref"], resolver))
        for key, value in schema.items():
            if key in ("enum", "const", "default", "examples"):
                continue
            out += _refs(value, resolver)
    elif isinstance(schema, list):
        for item in schema:
            out += _refs(item, resolver)
    return out


def validator(parsed: Parsed) -> Any:
    """A jsonschema validator for ``parsed`` that resolves its references."""
    cls = validators.validator_for(parsed.schema, default=validators.Draft7Validator)
    return cls(parsed.schema, registry=parsed.named)


# ---- compatibility -------------------------------------------------------------------------------

NUMERIC_BOUNDS = (  # keyword, which way the reader may move it (+1: only up, -1: only down)
    ("maximum", 1),
    ("exclusiveMaximum", 1),
    ("maxLength", 1),
    ("maxItems", 1),
    ("maxProperties", 1),
    ("minimum", -1),
    ("exclusiveMinimum", -1),
    ("minLength", -1),
    ("minItems", -1),
    ("minProperties", -1),
)


def _types(schema: dict) -> set[str] | None:
    kind = schema.get("type")
    if kind is None:
        return None
    kinds = {kind} if isinstance(kind, str) else set(kind)
    if "number" in kinds:
        kinds.add("integer")
    return kinds


class _JsonChecker:
    def __init__(self, reader: Parsed, writer: Parsed) -> None:
        self.problems: list[str] = []
        self.seen: set[tuple[int, int]] = set()
        self.rres = reader.named.resolver(reader.schema.get("$id", "") if isinstance(reader.schema, dict) else "")
        self.wres = writer.named.resolver(writer.schema.get("$id", "") if isinstance(writer.schema, dict) else "")

    def fail(self, path: str, kind: str, message: str) -> None:
        where = f"at {path!r}: " if path else ""
        self.problems.append(f"{kind}: {where}{message}")

    @staticmethod
    def deref(schema: Any, resolver: Any) -> tuple[Any, Any]:
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
            found = resolver.lookup(schema["$ref"])
            merged = found.contents
            extra = {k: v for k, v in schema.items() if k not in ("$ref", "description", "title")}
            if extra and isinstance(merged, dict):
                merged = {**merged, **extra}
            schema, resolver = merged, found.resolver
        return schema, resolver

    def check(self, reader: Any, rres: Any, writer: Any, wres: Any, path: str) -> None:
        reader, rres = self.deref(reader, rres)
        writer, wres = self.deref(writer, wres)
        key = (id(reader), id(writer))
        if key in self.seen:
            return
        self.seen.add(key)
        if reader is True or reader == {}:
            return
        if reader is False:
            if writer is not False:
                self.fail(path, "SCHEMA_NARROWED", "the reader accepts nothing")
            return
        if writer is False:
            return
        if writer is True:
            writer = {}
        rtypes, wtypes = _types(reader), _types(writer)
        if rtypes is not None:
            if wtypes is None:
                self.fail(path, "TYPE_NARROWED", f"writer allows any type, reader only {sorted(rtypes)}")
            elif not wtypes <= rtypes:
                self.fail(
                    path, "TYPE_CHANGED", f"writer type {sorted(wtypes)} is not within reader type {sorted(rtypes)}"
                )
                return
        if "enum" in reader:
            if "enum" not in writer:
                self.fail(path, "ENUM_ARRAY_NARROWED", "the reader adds an enum the writer does not have")
            elif any(v not in reader["enum"] for v in writer["enum"]):
                missing = [v for v in writer["enum"] if v not in reader["enum"]]
                self.fail(path, "ENUM_ARRAY_NARROWED", f"the reader's enum lacks {missing}")
        if "const" in reader and reader.get("const") != writer.get("const", object()):
            self.fail(path, "CONST_CHANGED", "the reader's const differs from the writer's")
        for keyword, way in NUMERIC_BOUNDS:
            if keyword not in reader or isinstance(reader[keyword], bool):
                continue
            if keyword not in writer or isinstance(writer[keyword], bool):
                self.fail(path, f"{keyword.upper()}_ADDED", f"the reader adds {keyword} {reader[keyword]}")
            elif (reader[keyword] - writer[keyword]) * way < 0:
                change = "DECREASED" if way > 0 else "INCREASED"
                self.fail(path, f"{keyword.upper()}_{change}", f"{keyword} {writer[keyword]} -> {reader[keyword]}")
        if reader.get("pattern") and reader.get("pattern") != writer.get("pattern"):
            self.fail(path, "PATTERN_CHANGED", f"pattern {writer.get('pattern')!r} -> {reader['pattern']!r}")
        self.objects(reader, rres, writer, wres, path)
        if "items" in reader and isinstance(reader["items"], dict | bool):
            witems = writer.get("items", {})
            if isinstance(witems, dict | bool):
                self.check(reader["items"], rres, witems, wres, f"{path}[]")

    def objects(self, reader: dict, rres: Any, writer: dict, wres: Any, path: str) -> None:
        rprops, wprops = reader.get("properties", {}), writer.get("properties", {})
        radd, wadd = reader.get("additionalProperties", True), writer.get("additionalProperties", True)
        w_open = wadd is not False
        for name in sorted(set(reader.get("required", [])) - set(writer.get("required", []))):
            self.fail(
                _join(path, name), "REQUIRED_PROPERTY_ADDED", f"the reader requires {name!r}; the writer does not"
            )
        for name, rprop in rprops.items():
            p = _join(path, name)
            if name in wprops:
                self.check(rprop, rres, wprops[name], wres, p)
            elif w_open and not (rprop is True or rprop == {}):
                if isinstance(wadd, dict) and wadd:
                    self.check(rprop, rres, wadd, wres, p)
                else:
                    self.fail(
                        p,
                        "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                        f"the writer's open content model may hold {name!r} of any type",
                    )
        for name, wprop in wprops.items():
            if name in rprops:
                continue
            p = _join(path, name)
            if radd is False:
                self.fail(p, "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", f"the reader no longer allows {name!r}")
            elif isinstance(radd, dict) and radd:
                self.check(radd, rres, wprop, wres, p)
        if radd is False and w_open:
            self.fail(path, "ADDITIONAL_PROPERTIES_REMOVED", "the reader closes a content model the writer left open")
        elif isinstance(radd, dict) and radd and w_open:
            self.check(radd, rres, wadd if isinstance(wadd, dict) else {}, wres, f"{path}{{}}")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def json_read_problems(reader: Parsed, writer: Parsed) -> list[str]:
    """Why values valid under ``writer`` may be invalid under ``reader`` (empty: compatible)."""
    checker = _JsonChecker(reader, writer)
    try:
        checker.check(reader.schema, checker.rres, writer.schema, checker.wres, "")
    except Unresolvable as exc:
        return [f"UNRESOLVABLE_REFERENCE: {exc}"]
    return list(dict.fromkeys(checker.problems))


# ---- columns -------------------------------------------------------------------------------------

_CONNECT_TYPES: dict[str, Any] = {
    "int8": pl.Int8,
    "int16": pl.Int16,
    "int32": pl.Int32,
    "int64": pl.Int64,
    "float32": pl.Float32,
    "float64": pl.Float64,
}
_SCALARS: dict[str, Any] = {"integer": pl.Int64, "number": pl.Float64, "string": pl.String, "boolean": pl.Boolean}


def polars_dtype(schema: Any, resolver: Any, depth: int = 0) -> Any:
    """The Polars dtype values of ``schema`` decode to, or None when it has no single one."""
    if depth > 16:
        return None
    schema, resolver = _JsonChecker.deref(schema, resolver)
    if not isinstance(schema, dict):
        return None
    kinds = _types(schema)
    if kinds is None:
        return None
    kinds.discard("null")
    if kinds == {"integer", "number"}:
        return pl.Float64
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if schema.get("connect.type") in _CONNECT_TYPES and kind in ("integer", "number"):
        return _CONNECT_TYPES[schema["connect.type"]]  # Kafka Connect's width annotation
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        inner = polars_dtype(schema.get("items", {}), resolver, depth + 1)
        return pl.List(inner) if inner is not None else None
    if kind == "object":
        props = schema.get("properties") or {}
        if not props:
            return None
        fields = {}
        for name, prop in props.items():
            dtype = polars_dtype(prop, resolver, depth + 1)
            if dtype is None:
                return None
            fields[name] = dtype
        return pl.Struct(fields)
    return None


def polars_schema(parsed: Parsed) -> pl.Schema | None:
    """Column -> dtype for an object schema whose every property has one dtype; None otherwise."""
    base = parsed.schema.get("$id", "") if isinstance(parsed.schema, dict) else ""
    dtype = polars_dtype(parsed.schema, parsed.named.resolver(base))
    return pl.Schema(dict(dtype.to_schema())) if isinstance(dtype, pl.Struct) else None


def required_columns(parsed: Parsed) -> list[str]:
    """Top-level properties a valid value must have with a non-null value."""
    schema, _ = _JsonChecker.deref(parsed.schema, parsed.named.resolver(parsed.schema.get("$id", "")))
    out = []
    for name in schema.get("required", []) if isinstance(schema, dict) else []:
        prop = (schema.get("properties") or {}).get(name, {})
        kinds = _types(prop) if isinstance(prop, dict) else None
        if kinds is None or "null" not in kinds:
            out.append(name)
    return out
