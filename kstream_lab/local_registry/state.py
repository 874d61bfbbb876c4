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

from kstream_lab.schemas.compat import LEVELS, InvalidSchema, canonical, compatibility_problems, parse_avro

DEFAULT_LEVEL = "BACKWARD"
LogRecord = tuple[bytes, bytes | None]


class RegistryProblem(Exception):
    """A request the registry refuses, with Confluent's HTTP status and error code."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def subject_not_found(subject: str) -> RegistryProblem:
    return RegistryProblem(404, 40401, f"Subject '{subject}' not found.")


@dataclass(frozen=True)
class Version:
    subject: str
    version: int
    schema_id: int
    schema: str
    deleted: bool = False

    def as_json(self) -> dict:
        return {"subject": self.subject, "version": self.version, "id": self.schema_id, "schema": self.schema}


def _key(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def schema_record(v: Version) -> LogRecord:
    key = _key({"keytype": "SCHEMA", "subject": v.subject, "version": v.version, "magic": 1})
    value = {"subject": v.subject, "version": v.version, "id": v.schema_id, "schema": v.schema, "deleted": v.deleted}
    return key, json.dumps(value).encode()


def config_record(subject: str | None, level: str | None) -> LogRecord:
    key = _key({"keytype": "CONFIG", "subject": subject, "magic": 0})
    return key, None if level is None else json.dumps({"compatibilityLevel": level}).encode()


@dataclass
class RegistryState:
    schemas: dict[int, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)  # canonical schema text -> id
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
            ver = Version(v["subject"], v["version"], v["id"], v["schema"], bool(v.get("deleted")))
            versions[ver.version] = ver
            self.schemas.setdefault(ver.schema_id, ver.schema)
            self.ids.setdefault(canonical(ver.schema), ver.schema_id)
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

    def schema_by_id(self, schema_id: int) -> str:
        try:
            return self.schemas[schema_id]
        except KeyError:
            raise RegistryProblem(404, 40403, f"Schema {schema_id} not found") from None

    def lookup(self, subject: str, text: str, deleted: bool = False) -> Version:
        parse(text)
        live = self.versions(subject, deleted=deleted)
        if not live:
            raise subject_not_found(subject)
        want = canonical(text)
        for v in reversed(live):
            if canonical(v.schema) == want:
                return v
        raise RegistryProblem(404, 40403, "Schema not found")

    def problems(self, subject: str, text: str, against: list[Version], level: str | None = None) -> list[str]:
        new = parse(text)
        return compatibility_problems(level or self.level(subject), new, [parse(v.schema) for v in against])

    # ---- planning changes: records to write (then apply) --------------------------------------
    def plan_register(self, subject: str, text: str) -> tuple[Version, list[LogRecord]]:
        """The version ``text`` gets in ``subject`` and the records that make it durable.

        Registering a schema the subject already has is idempotent (same version, same id, no write).
        """
        parse(text)
        live = self.versions(subject)
        want = canonical(text)
        for v in live:
            if canonical(v.schema) == want:
                return v, []
        problems = self.problems(subject, text, live)
        if problems:
            raise RegistryProblem(
                409,
                409,
                f"Schema being registered is incompatible with an earlier schema for "
                f'subject "{subject}" ({self.level(subject)}), details: {problems}',
            )
        schema_id = self.ids.get(want) or max(self.schemas, default=0) + 1
        number = max(self.subjects.get(subject, {}), default=0) + 1
        ver = Version(subject, number, schema_id, text)
        return ver, [schema_record(ver)]

    def plan_config(self, subject: str | None, level: str) -> LogRecord:
        level = str(level).upper()
        if level not in LEVELS:
            raise RegistryProblem(422, 42203, f"Invalid compatibility level {level!r}; one of {', '.join(LEVELS)}")
        return config_record(subject, level)  # a subject may be configured before its first version

    def plan_delete_version(self, subject: str, version: str | int, permanent: bool) -> tuple[Version, LogRecord]:
        ver = self.version(subject, version, deleted=permanent)
        if permanent:
            if not ver.deleted:
                raise RegistryProblem(
                    404,
                    40407,
                    f"Subject '{subject}' Version {ver.version} was not deleted first before being permanently deleted",
                )
            return ver, (schema_record(ver)[0], None)
        return ver, schema_record(Version(ver.subject, ver.version, ver.schema_id, ver.schema, True))

    def plan_delete_subject(self, subject: str, permanent: bool) -> tuple[list[int], list[LogRecord]]:
        versions = self.versions(subject, deleted=permanent)
        if not versions:
            raise subject_not_found(subject)
        if permanent:
            if any(not v.deleted for v in versions):
                raise RegistryProblem(
                    404, 40405, f"Subject '{subject}' was not deleted first before being permanently deleted"
                )
            return [v.version for v in versions], [(schema_record(v)[0], None) for v in versions]
        records = [schema_record(Version(v.subject, v.version, v.schema_id, v.schema, True)) for v in versions]
        return [v.version for v in versions], records


def parse(text: str):
    try:
        return parse_avro(text)
    except InvalidSchema as exc:
        raise RegistryProblem(422, 42201, str(exc)) from None
