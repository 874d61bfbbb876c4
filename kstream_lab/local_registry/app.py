"""The Confluent Schema Registry REST API subset that confluent-kafka's client uses.

Avro, JSON Schema and Protobuf (``schemaType``), with schema references.

Same paths, bodies, status codes and error codes as Confluent's registry, so SchemaRegistryClient,
AvroSerializer and AvroDeserializer cannot tell the difference. Reads come from memory; every change
is written to the `_schemas` topic before it is applied and answered.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kstream_lab.errors import KStreamLabError
from kstream_lab.kafka.schema_registry import SchemaLog
from kstream_lab.local_registry.auth import Refused, RegistryUsers
from kstream_lab.local_registry.state import (
    LogRecord,
    RegistryProblem,
    RegistryState,
    SchemaBody,
    body_of,
    subject_not_found,
)
from kstream_lab.settings import Settings

LOG = logging.getLogger("kstream_lab.local_registry")


class SchemaJSON(JSONResponse):
    media_type = "application/vnd.schemaregistry.v1+json"


class RegistryService:
    """State + log + one writer lock (changes are serialised; reads are lock-free snapshots)."""

    def __init__(self, settings: Settings, topic: str = "_schemas", *, log: SchemaLog | None = None) -> None:
        self.log = log or SchemaLog(settings, topic)
        self.state = RegistryState()
        self.lock = threading.Lock()

    def restore(self) -> int:
        """Create the topic if needed and fold it from the beginning; return the records read."""
        self.log.ensure_topic()
        records = self.log.read_all()
        for key, value in records:
            self.state.apply(key, value)
        return len(records)

    def write(self, records: list[LogRecord]) -> None:
        for key, value in records:
            try:
                self.log.append(key, value)
            except KStreamLabError as exc:
                raise RegistryProblem(500, 50001, f"Error while storing the change in Kafka: {exc}") from None
            self.state.apply(key, value)

    def register(self, subject: str, body: SchemaBody) -> dict:
        with self.lock:
            ver, records = self.state.plan_register(subject, body)
            self.write(records)
        return {"id": ver.schema_id, "version": ver.version, "subject": subject}

    def set_config(self, subject: str | None, level: str) -> dict:
        with self.lock:
            self.write([self.state.plan_config(subject, level)])
        return {"compatibility": str(level).upper()}

    def delete_config(self, subject: str | None) -> dict:
        with self.lock:
            previous = self.state.level(subject)
            self.write([(self.state.plan_config(subject, previous)[0], None)])
        return {"compatibilityLevel": previous}

    def delete_version(self, subject: str, version: str, permanent: bool) -> int:
        with self.lock:
            ver, record = self.state.plan_delete_version(subject, version, permanent)
            self.write([record])
        return ver.version

    def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        with self.lock:
            versions, records = self.state.plan_delete_subject(subject, permanent)
            self.write(records)
        return versions


async def _json_body(request: Request, code: int, what: str) -> Any:
    """The request's JSON body; 422 with ``code`` (``what``: the registry's wording) when it is not JSON."""
    try:
        return json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as exc:
        raise RegistryProblem(422, code, f"{what}: body is not JSON: {exc}") from None


async def _schema_body(request: Request) -> SchemaBody:
    body = await _json_body(request, 42201, "Invalid schema")
    if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise RegistryProblem(422, 42201, 'Invalid schema: the body needs a "schema" string')
    return body_of(body["schema"], body.get("schemaType"), body.get("references"))


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


def create_app(service: RegistryService, users: RegistryUsers | None = None) -> FastAPI:
    """The REST app; with ``users`` every request is authenticated and writes need the write role."""
    app = FastAPI(
        title="kstream_lab schema registry",
        default_response_class=SchemaJSON,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    state = service.state

    if users is not None:

        @app.middleware("http")
        async def _authorize(request: Request, call_next: Any) -> Any:
            try:
                users.check(request.method, request.url.path, request.headers.get("authorization"))
            except Refused as exc:
                headers = {"WWW-Authenticate": 'Basic realm="kstream_lab schema registry"'} if exc.status == 401 else {}
                return SchemaJSON({"error_code": exc.code, "message": exc.message}, exc.status, headers=headers)
            return await call_next(request)

    @app.exception_handler(RegistryProblem)
    async def _problem(_request: Request, exc: RegistryProblem) -> SchemaJSON:
        return SchemaJSON({"error_code": exc.code, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> SchemaJSON:
        """Unknown paths and methods (e.g. contexts, metadata, modes): Confluent's error shape.

        Subject names may hold slashes (Protobuf imports are registered under their file path), so
        ``/subjects/{subject}`` matches any deeper path too; a 405 there is an unknown path (404)."""
        status, detail = exc.status_code, exc.detail
        if status == 405 and request.url.path.startswith(("/subjects/", "/config/", "/compatibility/")):
            status, detail = 404, "Not Found"
        return SchemaJSON({"error_code": status, "message": f"HTTP {status} {detail}"}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> SchemaJSON:
        return SchemaJSON(
            {"error_code": 422, "message": f"Unprocessable request: {exc.errors()[0]['msg']}"}, status_code=422
        )

    @app.get("/")
    def root() -> dict:
        return {}

    @app.get("/schemas/types")
    def schema_types() -> list[str]:
        return ["AVRO", "JSON", "PROTOBUF"]

    @app.get("/mode")
    def mode() -> dict:
        return {"mode": "READWRITE"}

    @app.get("/subjects")
    def subjects(request: Request) -> list[str]:
        return state.subject_names(deleted=_flag(request, "deleted"))

    @app.post("/subjects/{subject:path}/versions")
    async def register(subject: str, request: Request) -> dict:
        text = await _schema_body(request)
        return await run_in_threadpool(service.register, subject, text)

    @app.post("/subjects/{subject:path}")
    async def lookup(subject: str, request: Request) -> dict:
        text = await _schema_body(request)
        return state.lookup(subject, text, deleted=_flag(request, "deleted")).as_json()

    @app.get("/subjects/{subject:path}/versions")
    def versions(subject: str, request: Request) -> list[int]:
        found = state.versions(subject, deleted=_flag(request, "deleted"))
        if not found:
            raise subject_not_found(subject)
        return [v.version for v in found]

    @app.get("/subjects/{subject:path}/versions/{version}")
    def version(subject: str, version: str, request: Request) -> dict:
        return state.version(subject, version, deleted=_flag(request, "deleted")).as_json()

    @app.get("/subjects/{subject:path}/versions/{version}/schema")
    def version_schema(subject: str, version: str) -> PlainTextResponse:
        return PlainTextResponse(state.version(subject, version).schema)

    @app.get("/subjects/{subject:path}/versions/{version}/referencedby")
    def referenced_by(subject: str, version: str) -> list[int]:
        ver = state.version(subject, version, deleted=True)
        return state.referenced_by(ver.subject, ver.version)

    @app.delete("/subjects/{subject:path}/versions/{version}")
    async def delete_version(subject: str, version: str, request: Request) -> int:
        return await run_in_threadpool(service.delete_version, subject, version, _flag(request, "permanent"))

    @app.delete("/subjects/{subject:path}")
    async def delete_subject(subject: str, request: Request) -> list[int]:
        return await run_in_threadpool(service.delete_subject, subject, _flag(request, "permanent"))

    @app.get("/schemas/ids/{schema_id}")
    def schema_by_id(schema_id: int) -> dict:
        return state.schema_by_id(schema_id).as_json()

    @app.get("/schemas/ids/{schema_id}/schema")
    def raw_schema_by_id(schema_id: int) -> PlainTextResponse:
        return PlainTextResponse(state.schema_by_id(schema_id).schema)

    @app.get("/schemas/ids/{schema_id}/versions")
    def versions_by_id(schema_id: int) -> list[dict]:
        state.schema_by_id(schema_id)
        return [
            {"subject": v.subject, "version": v.version}
            for s in state.subject_names()
            for v in state.versions(s)
            if v.schema_id == schema_id
        ]

    @app.get("/schemas/ids/{schema_id}/subjects")
    def subjects_by_id(schema_id: int) -> list[str]:
        return sorted({d["subject"] for d in versions_by_id(schema_id)})

    @app.post("/compatibility/subjects/{subject:path}/versions/{version}")
    async def compatible_with(subject: str, version: str, request: Request) -> dict:
        text = await _schema_body(request)
        try:
            against = [state.version(subject, version)]
        except RegistryProblem as exc:
            if exc.code == 40401 and version == "latest":
                return {"is_compatible": True}
            raise
        level = state.level(subject).replace("_TRANSITIVE", "")
        return _verdict(state.problems(subject, text, against, level), _flag(request, "verbose"))

    @app.post("/compatibility/subjects/{subject:path}/versions")
    async def compatible_with_all(subject: str, request: Request) -> dict:
        text = await _schema_body(request)
        level = state.level(subject).replace("_TRANSITIVE", "")
        level = level if level == "NONE" else f"{level}_TRANSITIVE"
        return _verdict(state.problems(subject, text, state.versions(subject), level), _flag(request, "verbose"))

    @app.get("/config")
    def get_global_config() -> dict:
        return {"compatibilityLevel": state.level(None)}

    @app.put("/config")
    async def put_global_config(request: Request) -> dict:
        return await run_in_threadpool(service.set_config, None, await _level_body(request))

    @app.get("/config/{subject:path}")
    def get_config(subject: str, request: Request) -> dict:
        if subject not in state.config and not _flag(request, "defaultToGlobal"):
            raise RegistryProblem(
                404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured"
            )
        return {"compatibilityLevel": state.level(subject)}

    @app.put("/config/{subject:path}")
    async def put_config(subject: str, request: Request) -> dict:
        return await run_in_threadpool(service.set_config, subject, await _level_body(request))

    @app.delete("/config/{subject:path}")
    async def delete_config(subject: str) -> dict:
        return await run_in_threadpool(service.delete_config, subject)

    return app


def _verdict(problems: list[str], verbose: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"is_compatible": not problems}
    if verbose:
        out["messages"] = problems
    return out


async def _level_body(request: Request) -> str:
    body = await _json_body(request, 42203, "Invalid compatibility level")
    level = body.get("compatibility") if isinstance(body, dict) else None
    if not isinstance(level, str):
        raise RegistryProblem(422, 42203, 'Invalid compatibility level: the body needs a "compatibility" string')
    return level
