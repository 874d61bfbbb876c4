"""A batching producer wrapper that counts delivery failures instead of losing them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from kstream_lab.errors import AuthorizationError, BrokerError
from kstream_lab.kafka.admin import authorized_operations
from kstream_lab.kafka.clients import make_producer
from kstream_lab.kafka.denials import denied, is_denial, principal, refusal
from kstream_lab.settings import Settings


def produce_kwargs(
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    partition: int | None = None,
    timestamp: int | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    on_delivery: Callable[[KafkaError | None, Any], None] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of one ``Producer.produce`` call; every producer here builds them so.

    confluent-kafka takes no None for partition, timestamp or callback (leaving one out means the
    partitioner, the current time, no callback), so unset ones are left out -- by ``is not None``,
    never by truthiness: partition 0 is a partition, and a timestamp of 0 is handed on as given
    (librdkafka itself reads 0 as "now"; what it does with a value is its rule, not ours).
    """
    kwargs: dict[str, Any] = {"topic": topic, "value": value, "key": key}
    if partition is not None:
        kwargs["partition"] = partition
    if timestamp is not None:
        kwargs["timestamp"] = timestamp
    if headers:
        kwargs["headers"] = headers
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    return kwargs


def produce_waiting(producer: Any, kwargs: dict[str, Any]) -> None:
    """``produce(**kwargs)`` (see :func:`produce_kwargs`), serving delivery callbacks while librdkafka's
    local queue is full instead of failing."""
    while True:
        try:
            producer.produce(**kwargs)
            return
        except BufferError:
            producer.poll(0.05)


def kafka_cause(exc: BaseException) -> KafkaException | None:
    """The KafkaException behind ``exc`` (a SystemError's ``__cause__``/``__context__`` chain), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KafkaException):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class BatchProducer:
    """Idempotent producer that serves its delivery callbacks as it goes and flushes on exit."""

    denial: AuthorizationError | None = None  # the first ACL refusal a delivery report carried
    fatal: KafkaException | None = None  # a fatal error a delivery callback met pending (see _on_delivery)

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self._settings = settings
        self._producer = make_producer(settings, **{"error_cb": self._on_error, **overrides})
        self._topic: str | None = None
        self.delivered = 0
        self.failed = 0
        self.first_error: str | None = None

    def _on_error(self, err: KafkaError) -> None:
        """A fatal denial (no WRITE on any topic: no idempotent producer id) arrives here first; the
        factory's security check runs after it (``clients._checked``)."""
        if is_denial(err) and self.denial is None:
            self.denial = denied(self._settings, err, "WRITE", self._topic or "?", kind="topic")

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        try:
            if is_denial(err) and self.denial is None:
                self.denial = denied(self._settings, err, "WRITE", msg.topic(), kind="topic")
            self.first_error = self.first_error or err.str()
        except SystemError as exc:
            # confluent-kafka runs delivery callbacks with a fatal error (e.g. no producer id for a
            # principal that may write no topic) already pending: any call here fails with that error
            # as the cause, and catching it consumes it. Keep it for flush() to report.
            self.fatal = self.fatal or kafka_cause(exc)

    def _failure(self, topic: str, exc: KafkaException) -> Exception:
        """A principal with WRITE on no topic is refused an idempotent producer id (a cluster denial):
        to the user that is being denied the write."""
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError) and is_denial(err):
            return denied(self._settings, err, "WRITE", topic, kind="topic")
        return BrokerError(f"produce to {topic} failed: {exc}")

    def _lost_fatal(self) -> Exception:
        """confluent-kafka can lose a fatal error's detail when Python code (a callback, a log handler)
        runs while it is pending. The broker still answers what this principal may do to the topic:
        without WRITE (or ALL) it is the denial, named as such; otherwise one line naming who could not
        write where."""
        ops = authorized_operations(self._settings, self._topic) if self._topic else None
        if ops is not None and not ops & {"WRITE", "ALL"}:
            reason = "its ACLs grant " + (", ".join(sorted(ops)) or "nothing") + ", not WRITE"
            return refusal(self._settings, "WRITE", "topic", self._topic or "?", reason)
        return BrokerError(
            f"{principal(self._settings)} could not produce to {self._topic or '?'} on {self._settings.bootstrap}: "
            "the producer hit a fatal error (its log line above says which)",
            hint="a principal that may WRITE no topic gets no producer id: grant it in the pipeline file "
            "and run `kstream-lab acls apply`",
        )

    def _raise_denial(self) -> None:
        """An ACL refusal stops the producer at once: every further record would be refused too."""
        if self.denial is not None:
            raise self.denial

    def produce(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        timestamp: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._topic = topic
        kwargs = produce_kwargs(topic, value, key, partition, timestamp, headers, self._on_delivery)
        try:
            produce_waiting(self._producer, kwargs)
        except KafkaException as exc:
            raise self._failure(topic, exc) from None
        try:
            self._producer.poll(0)
        except KafkaException as exc:
            raise self._failure(topic, exc) from None
        self._raise_denial()

    def flush(self, timeout: float = 60.0) -> None:
        """Wait for every record's delivery, in short slices: an error callback's exception (a refused
        login: SecurityError) then surfaces at once instead of after ``timeout``."""
        deadline = time.monotonic() + timeout
        try:
            remaining = self._producer.flush(min(0.5, timeout))
            while remaining and time.monotonic() < deadline:
                remaining = self._producer.flush(min(0.5, max(0.0, deadline - time.monotonic())))
        except (KafkaException, SystemError):  # a fatal error left over from a callback
            self._raise_denial()
            if self.fatal is not None:
                raise self._failure(self._topic or "?", self.fatal) from None
            try:  # poll() itself says which fatal error (as the transactional loop learnt)
                self._producer.poll(0)
            except KafkaException as exc:
                raise self._failure(self._topic or "?", exc) from None
            raise self._lost_fatal() from None
        self._raise_denial()
        if remaining:
            raise BrokerError(
                f"{remaining} records still undelivered after {timeout:.0f}s", hint="is the broker reachable?"
            )

    def __enter__(self) -> BatchProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


def publish_atomically(
    settings: Settings, transactional_id: str, records: list[dict[str, Any]], timeout: float = 30.0
) -> None:
    """Write ``records`` (dicts of topic, key, value, headers, partition) in one Kafka transaction.

    All or nothing: readers with read_committed see every record or none. A fixed transactional id
    fences a concurrent writer with the same id (the older one's transaction is aborted).
    """
    producer = make_producer(settings, transactional_id=transactional_id)
    try:
        producer.init_transactions(timeout)
        producer.begin_transaction()
        for rec in records:
            kwargs = produce_kwargs(
                rec["topic"],
                rec.get("value"),
                rec.get("key"),
                partition=rec.get("partition"),
                headers=rec.get("headers"),
            )
            producer.produce(**kwargs)
        producer.commit_transaction(timeout)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if err is not None and getattr(err, "txn_requires_abort", lambda: False)():
            producer.abort_transaction(timeout)
        raise BrokerError(
            f"transaction {transactional_id} failed: {err.str() if err else exc}", hint="nothing was written; retry"
        ) from None
