"""Avro schema parsing and compatibility by the Avro specification's schema-resolution rules.

The registry enforces a compatibility level per subject. "Can a reader with schema R read data
written with schema W?" is the only question; the levels just choose which pairs to ask about:
BACKWARD = new schema reads data of the previous version, FORWARD = the previous version reads the
new schema's data, FULL = both, ``*_TRANSITIVE`` = against every earlier version, NONE = no check.
Messages name the field (with its path) so a refused registration says what to fix.
"""

from __future__ import annotations

import json
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


class InvalidSchema(ValueError):
    """Schema text that is not JSON or not a valid Avro schema (the parser's message)."""


def parse_avro(text: str) -> Any:
    """Parse and validate schema text; return the fully-qualified parsed form (names resolved)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSchema(f"Invalid schema: not JSON: {exc}") from None
    try:
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

    def __init__(self, reader: Any, writer: Any) -> None:
        self.rnames = _named_types(reader, {})
        self.wnames = _named_types(writer, {})
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
    """Why data written with ``writer`` cannot be read with ``reader`` (empty: it can)."""
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
