"""Error hierarchy.

Every error a user can cause derives from :class:`KStreamLabError`, so the CLI can turn it into one
line and exit code 2 instead of a traceback. Errors about a record carry where it came from
(topic/partition/offset) so a bad record is always findable.
"""

from __future__ import annotations


class KStreamLabError(Exception):
    """Root of kstream_lab's errors; ``hint`` says how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class WriterSchemaUnavailable(KStreamLabError):
    """The schema registry could not answer (unreachable, or a 5xx) when a writer schema was needed.

    Not a record error, on purpose: nothing is wrong with the record, so a worker retries its batch
    once the registry is back and never dead-letters it. ``cause`` is the registry client's error.
    """

    def __init__(self, schema_id: int, cause: Exception) -> None:
        self.schema_id, self.cause = schema_id, cause
        detail = getattr(cause, "message", None) or str(cause)
        super().__init__(
            f"schema registry unavailable for writer schema {schema_id}: {detail}", hint=getattr(cause, "hint", None)
        )


class DatabaseUnavailable(KStreamLabError):
    """The sink's database could not be reached, or dropped the connection, while a batch was written.

    Not the rows' fault and not a configuration error: the sink holds the batch, commits no offset
    past it and writes it again once the database answers (upserts make a half-written or
    written-but-unacknowledged batch harmless). A refusal (wrong password, no such database) is not
    this: it stays the driver's error and stops the worker.
    """


class ConfigError(KStreamLabError):
    """Bad settings or a malformed pipeline file (carries file and line where known)."""


class BrokerError(KStreamLabError):
    """The local broker cannot be started, stopped or reached."""


class ConnectError(KStreamLabError):
    """Kafka Connect: the worker cannot start or answer, or a connector is refused or fails."""


class ProducerQueueFull(BrokerError):
    """The producer already holds as many unacknowledged records as its queue bound allows: the broker
    (or the pipeline behind it) takes them more slowly than they come. Nothing was enqueued, so the
    caller may retry later without risk of a duplicate (the order service answers 503 + Retry-After)."""


class AuthorizationError(KStreamLabError):
    """The broker or the registry refused this principal an operation on a resource (an ACL, a role).

    Never a record's fault: a worker stops on it instead of dead-lettering or retrying. The message
    names principal, operation and resource (``User:analyst may not WRITE topic orders_raw``).
    """


class StateError(KStreamLabError):
    """The aggregator's changelog cannot be restored into window state: a record that is not state
    (corrupt key or value) with no later record replacing it, or state of another aggregation spec.

    Never skipped: folding new records into state with a hole would emit wrong totals as if they
    were right. The worker stops (exit 2) before it processes or commits anything, so no input
    offset moves and nothing is lost; the message names changelog partition and key.
    """


class TopicError(KStreamLabError):
    """Unknown topic, or a topic change refused (shrinking partitions without --force)."""


class RecordError(KStreamLabError):
    """A problem with one Kafka record; knows where the record lives.

    ``reason`` is a short stable name for the kind of problem (``not_avro``, ``unknown_schema_id``,
    ``negative_total`` ...; docs/reliability.md lists them all). It goes into the DLQ's
    ``error.reason`` header, so dead letters can be counted and triaged by kind without parsing
    the message, which names the record and differs for every one.
    """

    default_reason = "bad_record"

    def __init__(
        self,
        message: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        hint: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.reason = reason or self.default_reason
        where = ""
        if topic is not None:
            where = (
                f" at {topic}"
                + (f"[{partition}]" if partition is not None else "")
                + (f"@{offset}" if offset is not None else "")
            )
        super().__init__(f"{message}{where}", hint=hint)


class DeserializationError(RecordError):
    """Bytes that do not decode with the topic's declared format."""

    default_reason = "undecodable"


class SerializationError(RecordError):
    """A value that does not match its schema at produce time (names the field)."""

    default_reason = "unserializable"


class InvalidRecordError(RecordError):
    """A decoded record that breaks a business rule (e.g. a negative total)."""

    default_reason = "invalid"


class SecurityError(BrokerError):
    """Authentication or TLS with the broker failed: retrying with the same settings cannot help, so
    clients stop at the first such error instead of retrying (names user, mechanism and broker)."""
