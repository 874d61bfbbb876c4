"""The schema registry boundary: confluent-kafka's registry client and serdes, and the `_schemas` log.

Everything that touches ``confluent_kafka.schema_registry`` lives here so the rest of the package
talks to any Confluent-compatible registry (ours, Confluent, Karapace, Apicurio's ccompat API)
through one small API whose failures are :class:`RegistryError` with the registry's error code.
:class:`SchemaLog` is the durable store of the local registry: a compacted single-partition topic,
written synchronously and read back from the beginning at start-up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import httpx
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from kstream_lab.errors import BrokerError, KStreamLabError
from kstream_lab.kafka.clients import make_admin, make_producer
from kstream_lab.kafka.read import read_records
from kstream_lab.settings import Settings

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(KStreamLabError):
    """The schema registry refused a request or could not be reached.

    ``status`` is the HTTP status (0 when unreachable) and ``code`` the registry error code
    (40401 unknown subject, 40403 unknown schema id, 409 incompatible, 42201 invalid schema ...).
    """

    def __init__(self, message: str, *, status: int = 0, code: int = -1, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status, self.code = status, code

    @property
    def unavailable(self) -> bool:
        """The registry could not answer (unreachable, or a 5xx): an outage to wait out, not a refusal
        about the request or the record."""
        return self.status == 0 or self.status >= 500


@dataclass(frozen=True)
class RegisteredVersion:
    subject: str
    version: int
    schema_id: int
    schema: str


RefTuple = tuple[str, str, int]  # a schema reference: name, subject, version


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as the registry returns it: type (AVRO, JSON, PROTOBUF), text, references.

    Protobuf text is the base64 FileDescriptorProto (asked for with ``format=serialized``)."""

    schema_type: str
    schema: str
    references: tuple[RefTuple, ...] = ()


def _refs(refs: Any) -> tuple[RefTuple, ...]:
    return tuple((r.name, r.subject, int(r.version)) for r in refs or ())


def _schema(text: str, schema_type: str, references: tuple[RefTuple, ...] | list[RefTuple] = ()) -> Schema:
    return Schema(text, schema_type, [SchemaReference(n, s, v) for n, s, v in references])


def registry_client_config(settings: Settings) -> dict[str, Any]:
    """confluent-kafka's SchemaRegistryClient config from Settings: URL, basic auth, CA (the one place).

    confluent-kafka's Python client takes ``basic.auth.user.info`` alone (it rejects the Java
    client's ``basic.auth.credentials.source``; USER_INFO is what it does)."""
    conf: dict[str, Any] = {"url": settings.registry_url}
    if settings.schema_registry_user:
        password = settings.schema_registry_password
        conf["basic.auth.user.info"] = (
            f"{settings.schema_registry_user}:{password.get_secret_value() if password else ''}"
        )
    if settings.schema_registry_ca_location:
        conf["ssl.ca.location"] = str(settings.schema_registry_ca_location)
    return conf


def registry_http_options(settings: Settings) -> dict[str, Any]:
    """The same credentials and CA as :func:`registry_client_config`, for direct ``httpx`` calls."""
    conf = registry_client_config(settings)
    user, _, password = conf.get("basic.auth.user.info", "").partition(":")
    return {"auth": (user, password) if user else None, "verify": conf.get("ssl.ca.location", True)}


_POOLED: dict[tuple[Any, ...], httpx.Client] = {}
_POOL_LOCK = threading.Lock()


def pooled_http(settings: Settings) -> httpx.Client:
    """One keep-alive HTTP client per registry URL, login and CA in this process: building a client
    costs ~50 ms (its TLS context, even for plain HTTP), a lookup over a kept connection ~2 ms."""
    opts = registry_http_options(settings)
    key = (settings.registry_url, opts["auth"], str(opts["verify"]))
    with _POOL_LOCK:
        client = _POOLED.get(key)
        if client is None:
            client = _POOLED[key] = httpx.Client(auth=opts["auth"], verify=opts["verify"])
        return client


def current_schema(settings: Settings, schema_id: int, *, timeout: float = 10.0) -> RegisteredSchema:
    """Schema ``schema_id`` as the registry answers *now* (no client's cache in between: for checks
    that an id still names the schema it named, e.g. the replay cache's). Same form as
    :meth:`SchemaRegistry.schema`; RegistryError 404 when unknown."""
    url = settings.registry_url.split(",")[0].strip().rstrip("/")
    try:
        res = pooled_http(settings).get(
            f"{url}/schemas/ids/{schema_id}",
            params={"format": "serialized"},
            headers={"Accept": CONTENT_TYPE},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise unreachable(url, exc) from None
    body = res.json() if res.content else {}
    if res.status_code != 200:
        code, message = int(body.get("error_code", -1)), str(body.get("message", res.text))
        if res.status_code in (401, 403):
            raise SchemaRegistry.refusal(settings, f"schema id {schema_id}", res.status_code, code, message)
        raise RegistryError(f"schema id {schema_id}: {message}", status=res.status_code, code=code)
    refs = tuple((r["name"], r["subject"], int(r["version"])) for r in body.get("references") or ())
    return RegisteredSchema(body.get("schemaType") or "AVRO", body["schema"], refs)


class SchemaRegistry:
    """A registry client for one URL; caches schemas by id (ids are immutable)."""

    def __init__(self, settings: Settings, *, timeout: float = 10.0) -> None:
        self.settings = settings
        self.url = settings.registry_url
        self.user = settings.schema_registry_user
        self._client = SchemaRegistryClient({**registry_client_config(settings), "timeout": timeout, "max.retries": 1})
        self._http = registry_http_options(settings)
        self._timeout = timeout
        self._schemas: dict[int, RegisteredSchema] = {}
        self._versions: dict[tuple[str, int], RegisteredSchema] = {}

    def _refusal(self, what: str, status: int, code: int, message: str) -> RegistryError:
        return self.refusal(self.settings, what, status, code, message)

    @staticmethod
    def refusal(settings: Settings, what: str, status: int, code: int, message: str) -> RegistryError:
        """A 401/403 says which user (never the password) and which registry."""
        user = settings.schema_registry_user
        who = f"user {user!r}" if user else "an anonymous request"
        hint = (
            "set KSTREAM_SCHEMA_REGISTRY_USER and KSTREAM_SCHEMA_REGISTRY_PASSWORD(_FILE)"
            if status == 401
            else "use a user with the write role for changes"
        )
        return RegistryError(
            f"schema registry at {settings.registry_url} refused {who}: {status} {message} ({what})",
            status=status,
            code=code,
            hint=hint,
        )

    def _registry_error(self, what: str, exc: SchemaRegistryError) -> RegistryError:
        if exc.http_status_code in (401, 403):
            return self._refusal(what, exc.http_status_code, exc.error_code, exc.error_message)
        return RegistryError(f"{what}: {exc.error_message}", status=exc.http_status_code, code=exc.error_code)

    # ---- calls ------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SchemaRegistryError as exc:
            raise self._registry_error(what, exc) from None
        except Exception as exc:
            if is_transport_error(exc):
                raise unreachable(self.url, exc) from None
            raise

    def register(
        self, subject: str, schema: str, schema_type: str = "AVRO", references: tuple[RefTuple, ...] = ()
    ) -> RegisteredVersion:
        """Register ``schema`` under ``subject`` (idempotent) and return its version and id."""
        sch = _schema(schema, schema_type, references)
        reg = self._call(f"registering {subject}", self._client.register_schema_full_response, subject, sch)
        version = reg.version
        if version is None:  # older registries answer with the id only
            version = self._call(f"looking up {subject}", self._client.lookup_schema, subject, sch).version
        return RegisteredVersion(subject, version, reg.schema_id, schema)

    def lookup(self, subject: str, schema: str) -> RegisteredVersion | None:
        """The version of ``subject`` that has exactly this schema, or None."""
        try:
            found = self._call(f"looking up {subject}", self._client.lookup_schema, subject, Schema(schema, "AVRO"))
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        return RegisteredVersion(subject, found.version, found.schema_id, schema)

    def writer_schema(self, schema_id: int) -> str:
        """The schema text for ``schema_id``; RegistryError (code 40403) when unknown."""
        sch = self._call(f"schema id {schema_id}", self._client.get_schema, schema_id)
        if sch.schema_type not in (None, "AVRO"):
            raise RegistryError(
                f"schema id {schema_id} is a {sch.schema_type} schema, not Avro", status=422, code=42201
            )
        return sch.schema_str

    def schema(self, schema_id: int) -> RegisteredSchema:
        """Schema ``schema_id`` of any type (Protobuf as a base64 descriptor); RegistryError 40403 when unknown."""
        cached = self._schemas.get(schema_id)
        if cached is None:
            sch = self._call(f"schema id {schema_id}", self._client.get_schema, schema_id, None, "serialized")
            cached = RegisteredSchema(sch.schema_type or "AVRO", sch.schema_str, _refs(sch.references))
            self._schemas[schema_id] = cached
        return cached

    def referenced(self, subject: str, version: int) -> RegisteredSchema:
        """The schema a reference names (subject, version), including soft-deleted versions."""
        key = (subject, version)
        cached = self._versions.get(key)
        if cached is None:
            reg = self._call(
                f"version {version} of {subject}", self._client.get_version, subject, version, True, "serialized"
            )
            sch = reg.schema
            cached = RegisteredSchema(sch.schema_type or "AVRO", sch.schema_str, _refs(sch.references))
            self._versions[key] = cached
        return cached

    def subjects(self) -> list[str]:
        return sorted(self._call("listing subjects", self._client.get_subjects))

    def versions(self, subject: str) -> list[int]:
        return list(self._call(f"versions of {subject}", self._client.get_versions, subject))

    def version(self, subject: str, version: int | str = "latest") -> RegisteredVersion:
        if version == "latest":
            reg = self._call(f"latest version of {subject}", self._client.get_latest_version, subject)
        else:
            reg = self._call(f"version {version} of {subject}", self._client.get_version, subject, int(version))
        return RegisteredVersion(reg.subject, reg.version, reg.schema_id, reg.schema.schema_str)

    def compatibility(self, subject: str | None = None) -> str:
        return self._call("reading compatibility", self._client.get_compatibility, subject)

    def set_compatibility(self, level: str, subject: str | None = None) -> str:
        res = self._call("setting compatibility", self._client.set_compatibility, subject, level)
        return res["compatibility"] if isinstance(res, dict) else str(res)

    def check_compatibility(self, subject: str, schema: str, version: int | str = "latest") -> list[str]:
        """Reasons ``schema`` is incompatible with ``subject``'s version (empty list = compatible).

        Uses the verbose REST form directly because the client's method only returns a boolean.
        """
        try:
            res = httpx.post(
                f"{self.url}/compatibility/subjects/{subject}/versions/{version}",
                params={"verbose": "true"},
                timeout=self._timeout,
                headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
                json={"schema": schema, "schemaType": "AVRO"},
                **self._http,
            )
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from None
        body = res.json() if res.content else {}
        if res.status_code in (401, 403):
            raise self._refusal(
                f"compatibility check for {subject}",
                res.status_code,
                body.get("error_code", -1),
                body.get("message", ""),
            )
        if res.status_code != 200:
            raise RegistryError(
                f"compatibility check for {subject}: {body.get('message', res.text)}",
                status=res.status_code,
                code=body.get("error_code", -1),
            )
        if body.get("is_compatible"):
            return []
        return list(body.get("messages") or ["incompatible (the registry gave no reason)"])

    # ---- confluent-kafka serdes ----------------------------------------------------------------
    def avro_serializer(self, schema: str, *, auto_register: bool = True) -> Callable[[dict, str], bytes]:
        """confluent-kafka's AvroSerializer for topic values (subject ``<topic>-value``)."""
        ser = AvroSerializer(self._client, schema, conf={"auto.register.schemas": auto_register})

        def serialize(obj: dict, topic: str) -> bytes:
            try:
                return ser(obj, SerializationContext(topic, MessageField.VALUE))
            except SchemaRegistryError as exc:
                raise self._registry_error(f"registering the schema of {topic}-value", exc) from None
            except Exception as exc:
                if is_transport_error(exc):
                    raise unreachable(self.url, exc) from None
                raise

        return serialize

    def _guarded(self, ser: Callable[..., bytes], subject_of: str) -> Callable[[Any, str], bytes]:
        def serialize(obj: Any, topic: str) -> bytes:
            try:
                return ser(obj, SerializationContext(topic, MessageField.VALUE))
            except SchemaRegistryError as exc:
                raise self._registry_error(f"registering the schema of {topic}{subject_of}", exc) from None
            except Exception as exc:
                if is_transport_error(exc):
                    raise unreachable(self.url, exc) from None
                raise

        return serialize

    def protobuf_serializer(self, message_class: type, *, auto_register: bool = True) -> Callable[[Any, str], bytes]:
        """confluent-kafka's ProtobufSerializer for topic values: registers the message's file (its
        imports first, each as a reference under its own file name) and writes the message indexes."""
        conf = {"auto.register.schemas": auto_register, "use.deprecated.format": False}
        return self._guarded(ProtobufSerializer(message_class, self._client, conf), "-value")

    def json_serializer(
        self, schema: str, references: tuple[RefTuple, ...] = (), *, auto_register: bool = True
    ) -> Callable[[Any, str], bytes]:
        """confluent-kafka's JSONSerializer (validates every value against the schema, references resolved)."""
        sch: str | Schema = _schema(schema, "JSON", references) if references else schema
        ser = JSONSerializer(sch, self._client, conf={"auto.register.schemas": auto_register})
        return self._guarded(ser, "-value")

    def protobuf_deserializer(self, message_class: type) -> Callable[[bytes, str], Any]:
        """confluent-kafka's ProtobufDeserializer into ``message_class``."""
        de = ProtobufDeserializer(message_class, {"use.deprecated.format": False})
        return lambda data, topic: de(data, SerializationContext(topic, MessageField.VALUE))

    def json_deserializer(self, schema: str | None = None) -> Callable[[bytes, str], Any]:
        """confluent-kafka's JSONDeserializer; the writer's schema (and references) from the registry
        when ``schema`` is None."""
        de = JSONDeserializer(schema, schema_registry_client=self._client)
        return lambda data, topic: de(data, SerializationContext(topic, MessageField.VALUE))

    def avro_deserializer(self, reader_schema: str | None = None) -> Callable[[bytes, str], dict]:
        """confluent-kafka's AvroDeserializer; decodes with ``reader_schema`` when given."""
        de = AvroDeserializer(self._client, reader_schema)

        def deserialize(data: bytes, topic: str) -> dict:
            return de(data, SerializationContext(topic, MessageField.VALUE))

        return deserialize

    def close(self) -> None:
        self._client.close()


def is_transport_error(exc: Exception) -> bool:
    """Connection-level failures of the registry's HTTP client (confluent-kafka uses an httpx fork)."""
    package = type(exc).__module__.split(".", 1)[0]
    return isinstance(exc, OSError) or package in ("httpx", "httpx2", "httpcore", "httpcore2")


def unreachable(url: str, exc: Exception) -> RegistryError:
    return RegistryError(
        f"schema registry at {url} did not answer: {type(exc).__name__}: {exc}",
        hint="start it with `kstream-lab registry up` or set KSTREAM_SCHEMA_REGISTRY_URL",
    )


class SchemaLog:
    """The local registry's durable log: a compacted, single-partition topic (default ``_schemas``).

    Writes are synchronous (produce + flush) so an HTTP 200 means the change is on the broker.
    """

    def __init__(self, settings: Settings, topic: str = "_schemas") -> None:
        self.settings, self.topic = settings, topic
        tuning: dict[str, Any] = {"linger.ms": 0, "message.timeout.ms": 15000, "compression.type": "none"}
        self._producer = make_producer(settings, **tuning)

    def ensure_topic(self) -> None:
        admin = make_admin(self.settings)
        try:
            if self.topic in admin.list_topics(timeout=10).topics:
                return
            fut = admin.create_topics(
                [
                    NewTopic(
                        self.topic,
                        num_partitions=1,
                        replication_factor=1,
                        config={"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
                    )
                ],
                operation_timeout=30,
            )[self.topic]
            fut.result(timeout=60)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return
            raise BrokerError(f"cannot create {self.topic} on {self.settings.bootstrap}: {exc}") from None

    def read_all(self, timeout: float = 30.0) -> list[tuple[bytes, bytes | None]]:
        """Every record from the beginning up to the end offset as it stood when called (read
        committed, through ``kafka.read``: a stall of ``timeout`` seconds is a BrokerError)."""
        records = read_records(self.settings, self.topic, [0], stall_timeout=timeout)
        return [(cast(bytes, r.key), r.value) for r in records]  # a compacted topic holds keyed records only

    def append(self, key: bytes, value: bytes | None, timeout: float = 20.0) -> None:
        """Write one record and wait for the broker's acknowledgement."""
        errors: list[KafkaError] = []
        self._producer.produce(
            self.topic, key=key, value=value, on_delivery=lambda err, _msg: errors.append(err) if err else None
        )
        left = self._producer.flush(timeout)
        if left or errors:
            reason = errors[0].str() if errors else f"not acknowledged within {timeout:.0f}s"
            raise BrokerError(f"writing to {self.topic} failed: {reason}", hint="is the broker up?")
