"""The local registry's state as a fold over its log, and the rules for changing it.

Every change is first written to the `_schemas` topic as a record, then applied with the same
:meth:`RegistryState.apply` that rebuilds the state at start-up, so a restarted registry (or one
started after the broker restarted) has exactly the subjects, versions and ids it had before. The
record layout follows Confluent Schema Registry's own `_schemas` topic (JSON keys with keytype
SCHEMA or CONFIG; soft deletes set ``deleted``; a tombstone is a permanent delete).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kstream_lab.schemas.compat import (
    LEVELS,
    SCHEMA_TYPES,
    InvalidSchema,
    Parsed,
    Source,
    canonical_text,
    compatibility_problems,
    parse_source,
)

DEFAULT_LEVEL = "BACKWARD"
LogRecord = tuple[bytes, bytes | None]


class RegistryProblem(Exception):
    """A request the registry refuses, with Confluent's HTTP status and error code."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def subject_not_found(subject: str) -> RegistryProblem:
    return RegistryProblem(404, 40401, f"Subject '{subject}' not found.")


Reference = tuple[str, str, int]  # name, subject, version


@dataclass(frozen=True)
class SchemaBody:
    """What a client sends: schema text, its type (AVRO when absent) and its references."""

    schema: str
    schema_type: str = "AVRO"
    references: tuple[Reference, ...] = ()

    def key(self) -> str:
        """Identity of a schema: the same key gets the same id in every subject."""
        return json.dumps([self.schema_type, canonical_text(self.schema_type, self.schema), self.references])

    def as_json(self) -> dict:
        out: dict = {}
        if self.schema_type != "AVRO":
            out["schemaType"] = self.schema_type
        if self.references:
            out["references"] = [{"name": n, "subject": s, "version": v} for n, s, v in self.references]
        out["schema"] = self.schema
        return out


def references_of(raw: object) -> tuple[Reference, ...]:
    """References from a request or `_schemas` record; RegistryProblem 42201 when malformed."""
    if not raw:
        return ()
    if not isinstance(raw, list):
        raise RegistryProblem(422, 42201, "Invalid schema: references must be a list")
    out = []
    for ref in raw:
        if (
            not isinstance(ref, dict)
            or not isinstance(ref.get("name"), str)
            or not isinstance(ref.get("subject"), str)
            or not isinstance(ref.get("version"), int)
        ):
            raise RegistryProblem(
                422, 42201, f"Invalid schema: reference {ref!r} needs a name, a subject and an integer version"
            )
        out.append((ref["name"], ref["subject"], ref["version"]))
    return tuple(out)


def body_of(schema: str, schema_type: object = None, references: object = None) -> SchemaBody:
    kind = str(schema_type or "AVRO").upper()
    if kind not in SCHEMA_TYPES:
        raise RegistryProblem(
            422, 42201, f"Invalid schema: unknown schemaType {schema_type!r}; one of {', '.join(SCHEMA_TYPES)}"
        )
    return SchemaBody(schema, kind, references_of(references))


def as_body(body: SchemaBody | str) -> SchemaBody:
    return SchemaBody(body) if isinstance(body, str) else body


@dataclass(frozen=True)
class Version:
    subject: str
    version: int
    schema_id: int
    schema: str
    deleted: bool = False
    schema_type: str = "AVRO"
    references: tuple[Reference, ...] = ()

    @property
    def body(self) -> SchemaBody:
        return SchemaBody(self.schema, self.schema_type, self.references)

    def as_json(self) -> dict:
        return {"subject": self.subject, "version": self.version, "id": self.schema_id, **self.body.as_json()}

    def marked_deleted(self) -> Version:
        return Version(self.subject, self.version, self.schema_id, self.schema, True, self.schema_type, self.references)


def _key(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def schema_record(v: Version) -> LogRecord:
    key = _key({"keytype": "SCHEMA", "subject": v.subject, "version": v.version, "magic": 1})
    value = {"subject": v.subject, "version": v.version, "id": v.schema_id, **v.body.as_json(), "deleted": v.deleted}
    return key, json.dumps(value).encode()


def config_record(subject: str | None, level: str | None) -> LogRecord:
    key = _key({"keytype": "CONFIG", "subject": subject, "magic": 0})
    return key, None if level is None else json.dumps({"compatibilityLevel": level}).encode()


@dataclass
class RegistryState:
    schemas: dict[int, SchemaBody] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)  # SchemaBody.key() -> id
    subjects: dict[str, dict[int, Version]] = field(default_factory=dict)
    config: dict[str | None, str] = field(default_factory=dict)  # None = global

    # ---- the fold ---------------------------------------------------------------------------
    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one `_schemas` record; unknown key types (NOOP, DELETE_SUBJECT, ...) are skipped."""
        if not key:
            return
        k = json.loads(key)
        if k.get("keytype") == "SCHEMA":
            versions = self.subjects.setdefault(k["subject"], {})
            if value is None:
                versions.pop(k["version"], None)
                if not versions:
                    del self.subjects[k["subject"]]
                return
            v = json.loads(value)
            body = SchemaBody(v["schema"], v.get("schemaType") or "AVRO", references_of(v.get("references")))
            ver = Version(
                v["subject"],
                v["version"],
                v["id"],
                body.schema,
                bool(v.get("deleted")),
                body.schema_type,
                body.references,
            )
            versions[ver.version] = ver
            self.schemas.setdefault(ver.schema_id, body)
            self.ids.setdefault(body.key(), ver.schema_id)
        elif k.get("keytype") == "CONFIG":
            if value is None:
                self.config.pop(k.get("subject"), None)
            else:
                self.config[k.get("subject")] = json.loads(value)["compatibilityLevel"]

    # ---- queries ----------------------------------------------------------------------------
    def subject_names(self, deleted: bool = False) -> list[str]:
        return sorted(s for s in list(self.subjects) if self.versions(s, deleted=deleted))

    def versions(self, subject: str, deleted: bool = False) -> list[Version]:
        return [v for _, v in sorted(self.subjects.get(subject, {}).items()) if deleted or not v.deleted]

    def version(self, subject: str, version: str | int, deleted: bool = False) -> Version:
        live = self.versions(subject, deleted=deleted)
        if not live:
            raise subject_not_found(subject)
        if str(version) in ("latest", "-1"):
            return live[-1]
        try:
            number = int(version)
        except ValueError:
            raise RegistryProblem(
                422,
                42202,
                f"The specified version '{version}' is not a valid version id. "
                'Allowed values are between [1, 2^31-1] and the string "latest"',
            ) from None
        for v in live:
            if v.version == number:
                return v
        raise RegistryProblem(404, 40402, f"Version {number} not found.")

    def level(self, subject: str | None) -> str:
        return self.config.get(subject) or self.config.get(None) or DEFAULT_LEVEL

    def schema_by_id(self, schema_id: int) -> SchemaBody:
        try:
            return self.schemas[schema_id]
        except KeyError:
            raise RegistryProblem(404, 40403, f"Schema {schema_id} not found") from None

    def referenced_by(self, subject: str, version: int) -> list[int]:
        """Ids of the live schemas whose references name ``subject`` version ``version``."""
        return sorted(
            {
                v.schema_id
                for s in self.subject_names()
                for v in self.versions(s)
                if any(ref[1] == subject and ref[2] == version for ref in v.references)
            }
        )

    def source(self, body: SchemaBody, depth: int = 0) -> Source:
        """The body with its references resolved (recursively) to what parsing needs."""
        if depth > 32:
            raise RegistryProblem(422, 42201, "Invalid schema: references nest more than 32 deep (a cycle?)")
        deps = []
        for name, subject, number in body.references:
            try:
                ref = self.version(subject, number, deleted=True)
            except RegistryProblem:
                raise RegistryProblem(
                    422,
                    42201,
                    f"Invalid schema: reference {name!r} names subject {subject!r} version {number}, "
                    "which does not exist (register it first)",
                ) from None
            deps.append((name, self.source(ref.body, depth + 1)))
        return Source(body.schema_type, body.schema, tuple(deps))

    def parse(self, body: SchemaBody) -> Parsed:
        try:
            return parse_source(self.source(body))
        except InvalidSchema as exc:
            raise RegistryProblem(422, 42201, str(exc)) from None

    def lookup(self, subject: str, body: SchemaBody | str, deleted: bool = False) -> Version:
        body = as_body(body)
        self.parse(body)
        live = self.versions(subject, deleted=deleted)
        if not live:
            raise subject_not_found(subject)
        want = body.key()
        for v in reversed(live):
            if v.body.key() == want:
                return v
        raise RegistryProblem(404, 40403, "Schema not found")

    def problems(
        self, subject: str, body: SchemaBody | str, against: list[Version], level: str | None = None
    ) -> list[str]:
        new = self.parse(as_body(body))
        return compatibility_problems(level or self.level(subject), new, [self.parse(v.body) for v in against])

    # ---- planning changes: records to write (then apply) --------------------------------------
    def plan_register(self, subject: str, body: SchemaBody | str) -> tuple[Version, list[LogRecord]]:
        """The version ``body`` (text alone: Avro) gets in ``subject`` and the records that make it durable.

        Registering a schema the subject already has is idempotent (same version, same id, no write).
        """
        body = as_body(body)
        self.parse(body)
        live = self.versions(subject)
        want = body.key()
        for v in live:
            if v.body.key() == want:
                return v, []
        problems = self.problems(subject, body, live)
        if problems:
            raise RegistryProblem(
                409,
                409,
                f"Schema being registered is incompatible with an earlier schema for "
                f'subject "{subject}" ({self.level(subject)}), details: {problems}',
            )
        schema_id = self.ids.get(want) or max(self.schemas, default=0) + 1
        number = max(self.subjects.get(subject, {}), default=0) + 1
        ver = Version(subject, number, schema_id, body.schema, False, body.schema_type, body.references)
        return ver, [schema_record(ver)]

    def plan_config(self, subject: str | None, level: str) -> LogRecord:
        level = str(level).upper()
        if level not in LEVELS:
            raise RegistryProblem(422, 42203, f"Invalid compatibility level {level!r}; one of {', '.join(LEVELS)}")
        return config_record(subject, level)  # a subject may be configured before its first version

    def plan_delete_version(self, subject: str, version: str | int, permanent: bool) -> tuple[Version, LogRecord]:
        ver = self.version(subject, version, deleted=permanent)
        self._refuse_referenced(ver)
        if permanent:
            if not ver.deleted:
                raise RegistryProblem(
                    404,
                    40407,
                    f"Subject '{subject}' Version {ver.version} was not deleted first before being permanently deleted",
                )
            return ver, (schema_record(ver)[0], None)
        return ver, schema_record(ver.marked_deleted())

    def plan_delete_subject(self, subject: str, permanent: bool) -> tuple[list[int], list[LogRecord]]:
        versions = self.versions(subject, deleted=permanent)
        if not versions:
            raise subject_not_found(subject)
        for v in versions:
            self._refuse_referenced(v)
        if permanent:
            if any(not v.deleted for v in versions):
                raise RegistryProblem(
                    404, 40405, f"Subject '{subject}' was not deleted first before being permanently deleted"
                )
            return [v.version for v in versions], [(schema_record(v)[0], None) for v in versions]
        records = [schema_record(v.marked_deleted()) for v in versions]
        return [v.version for v in versions], records

    def _refuse_referenced(self, ver: Version) -> None:
        """Confluent's 42206: a version other live schemas reference cannot be deleted."""
        users = [i for i in self.referenced_by(ver.subject, ver.version) if i != ver.schema_id]
        if users:
            raise RegistryProblem(
                422,
                42206,
                f"One or more references exist to the schema {{subject={ver.subject},version={ver.version}}} "
                f"(schema ids {users})",
            )
