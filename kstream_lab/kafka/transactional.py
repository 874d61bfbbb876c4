"""The transactional consume-transform-produce loop (docs/semantics.md §4), guarded in one place.

One transaction per consumed batch: every output record, the changelog entries and the batch's
input offsets (``send_offsets_to_transaction`` with the consumer's group metadata) commit
atomically, so a crash at any point leaves either all of a batch or none of it. Errors follow
librdkafka's classification: *retriable* -> retry the same call; *txn_requires_abort* -> abort,
rewind the consumer to its committed offsets, drop in-memory state and restore it from the
changelog; *fatal* -> :class:`FatalKafkaError` (the worker exits non-zero, a restart re-initialises
the transactional id and fences the old producer). An authorization failure (topic, group or
transactional id denied by an ACL) is neither: the transaction is aborted, so no input offset of
the batch is committed, and the loop stops with an :class:`AuthorizationError` naming principal,
operation and resource -- retrying cannot grant an ACL. Workers only supply a :class:`Processor`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition

from kstream_lab.errors import AuthorizationError, BrokerError
from kstream_lab.kafka.clients import make_consumer, make_producer
from kstream_lab.kafka.consuming import update_lag
from kstream_lab.kafka.denials import denied, is_denial
from kstream_lab.kafka.failures import await_metadata
from kstream_lab.kafka.producing import produce_kwargs, produce_waiting
from kstream_lab.kafka.read import read_records, snapshot_bounds
from kstream_lab.observability.metrics import METRICS
from kstream_lab.settings import Settings

log = logging.getLogger(__name__)

ChangelogEntries = dict[int, list[tuple[bytes, bytes | None]]]
Restore = Callable[[list[int]], ChangelogEntries]


def read_changelog(settings: Settings, topic: str, partitions: list[int]) -> ChangelogEntries:
    """(key, value) of each changelog partition from its first retained offset to its end at call time.

    Read committed (``kafka.read``): aborted writes of a crashed instance never leak into the
    restored state, and an instance's transaction still open on the changelog is neither waited for
    nor restored.
    """
    out: ChangelogEntries = {p: [] for p in partitions}
    for r in read_records(settings, topic, partitions):
        out[r.partition].append((cast(bytes, r.key), r.value))  # the workers write every entry with a key
    return out


def settle_changelog(settings: Settings, topic: str, partitions: list[int], wait_s: float = 3.0) -> None:
    """Give a just-committed transaction's markers a moment to reach the changelog before a restore.

    The broker writes a commit's markers to each partition separately: the offsets of a batch can be
    stable (``committed()`` answered) a moment before the marker on its changelog partition is
    written, and a read_committed restore stops short of it (the batch's state would be missing
    while its offsets count it). So wait, briefly, until no transaction is open on these changelog
    partitions (last stable offset == high watermark). A transaction that stays open longer is a
    live zombie's, not yet sent its offsets: it will be fenced or aborted, never committed, so the
    restore goes on without it.
    """
    deadline = time.monotonic() + wait_s
    while True:
        stable = snapshot_bounds(settings, topic, partitions, read_committed=True)
        high = snapshot_bounds(settings, topic, partitions, read_committed=False)
        if all(stable[p].end == high[p].end for p in partitions) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


# How the loop's producer and consumer come back after a broker restart or a cut connection.
#
# * No re-bootstrap. librdkafka (>= 2.11) "re-bootstraps" a client the moment every broker it knows
#   is down: it decommissions the learned brokers and starts over from ``bootstrap.servers``. With one
#   broker, a restart or one cut connection is "every broker down". The decommissioned broker can
#   stay the group coordinator in the producer's coordinator cache, and
#   ``send_offsets_to_transaction``'s TxnOffsetCommit then waits for a state change of a broker
#   thread that has ended, forever (its timeout is never checked: librdkafka issues 5511 and 5456;
#   seen in the chaos tests as "Decommissioning 1 broker(s): re-bootstrap", then the hang). Without
#   it the broker handle stays, reconnects, and its state change resumes the request. What
#   re-bootstrapping is for -- every broker's address changed at once -- is not covered then;
#   advertised host names are resolved again at each connection attempt.
# * Reconnect back-off capped at 1 s (default 10 s). The back-off doubles on every reconnect and is
#   reset only 10 s after the last attempt, so after a few cuts in a row each retry of a cut EndTxn
#   (``commit_transaction``) waited 10 s while the whole pipeline stood behind the transaction.
CLIENT_RECOVERY = {"metadata.recovery.strategy": "none", "reconnect.backoff.max.ms": 1000}


class FatalKafkaError(BrokerError):
    """librdkafka reported a fatal error (e.g. the producer was fenced); the process must exit."""


class RetryBatch(Exception):
    """Raised by a processor when a dependency is briefly unavailable (e.g. the schema registry):
    the batch is aborted, re-consumed from the committed offsets and retried after a backoff, instead
    of dead-lettering good records or crashing the worker."""


class _AbortTransaction(Exception):
    """Internal: the open transaction must be aborted and the batch re-consumed."""


class _ProducerLost(Exception):
    """Internal: this producer can do nothing more, but nothing says another instance took over: a
    new producer with the same transactional id takes its place (see ``_replace_producer``)."""


class _ProducerWedged(_ProducerLost):
    """Internal: a transactional call did not return long after its own timeout; the producer is lost."""


class _RolledBackByCoordinator(_ProducerLost):
    """Internal: the broker answered INVALID_TXN_STATE, fatal for librdkafka, about a transaction
    the coordinator had already aborted itself.

    Met after two broker SIGKILLs in a row: the broker was away longer than ``transaction.timeout.ms``
    (which also bounds ``message.timeout.ms``), the batch's records timed out, and by the time the
    abort reached the restarted broker its coordinator had aborted the timed-out transaction and
    bumped the epoch; under transactions V2 the client's EndTxn then fails the state check with
    INVALID_TXN_STATE instead of a fence (KAFKA-20785), although nothing of the transaction took
    effect. A twin with the same transactional id fences with PRODUCER_FENCED/INVALID_PRODUCER_EPOCH
    instead, and that stays fatal (exit 3). Replacing the producer is what a restart would do, in
    place: its ``init_transactions`` waits for the old transaction to be complete, whichever way it
    ended, and the rewind reads the committed offsets, which say which way that was."""


class Output:
    """Produces into the open transaction; the only way a processor writes to Kafka.

    A produce error is turned into the loop's own error by ``classify`` (fatal -> the worker exits,
    anything else -> abort and rewind), exactly like the errors of the transactional calls.
    """

    def __init__(self, producer: Any, classify: Callable[[str, KafkaError], Exception]) -> None:
        self._producer, self._classify = producer, classify
        self.sent: dict[str, int] = {}

    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp: int | None = None,
    ) -> None:
        try:
            produce_waiting(self._producer, produce_kwargs(topic, value, key, partition, timestamp, headers))
        except KafkaException as exc:  # e.g. once fenced: produce() itself fails fatally
            self.sent.setdefault(topic, 0)
            raise self._classify(f"produce to {topic}", exc.args[0]) from None
        self.sent[topic] = self.sent.get(topic, 0) + 1


class Processor(Protocol):
    """What a transactional worker does with its records and state."""

    def assign(self, partitions: list[int], restore: Restore) -> None:
        """Partitions were assigned (or state must be rebuilt): restore their state."""

    def revoke(self, partitions: list[int]) -> None:
        """Drop in-memory state of these partitions (it is in the changelog)."""

    def process(self, messages: Sequence[Message], out: Output) -> None:
        """Transform one batch, sending results through ``out``."""

    def changelog(self) -> ChangelogEntries:
        """State changes made by the batch, per input partition (empty for stateless workers)."""


@dataclass(frozen=True)
class LoopConfig:
    input_topic: str
    group_id: str
    transactional_id: str
    changelog_topic: str | None = None
    batch_size: int = 5000
    batch_timeout_s: float = 0.05  # at low load this bounds the added latency per hop
    session_timeout_ms: int = 6000
    transaction_timeout_ms: int = 60000
    call_timeout_s: float = 30.0
    hang_grace_s: float = 10.0  # past call_timeout_s, a call that has not returned is taken for hung
    retries: int = 10


class TransactionalLoop:
    """Runs a :class:`Processor` over ``input_topic`` until ``stop`` is set, exactly once."""

    def __init__(
        self, settings: Settings, config: LoopConfig, processor: Processor, *, service: str, stop: threading.Event
    ) -> None:
        self.settings, self.config, self.processor = settings, config, processor
        self.service, self.stop = service, stop
        self.producer = self._new_producer()
        self._wedged: list[Any] = []  # producers stuck in a call: kept, never closed (see _bounded)
        self._fatal_cause: str | None = None
        self.consumer = self._new_consumer()
        self._consumer_lost = False  # set by on_lost: the consumer is renewed before the next batch
        self.in_transaction = False
        self.batches = 0
        self._retry_delay = 0.0
        self._out: Output | None = None

    def _new_producer(self) -> Any:
        return make_producer(
            self.settings,
            transactional_id=self.config.transactional_id,
            **{
                "transaction.timeout.ms": self.config.transaction_timeout_ms,
                "linger.ms": 5,
                "error_cb": self._on_client_error,
                **CLIENT_RECOVERY,
            },
        )

    def _new_consumer(self) -> Any:
        tuning: dict[str, Any] = {
            "session.timeout.ms": self.config.session_timeout_ms,
            "heartbeat.interval.ms": max(500, self.config.session_timeout_ms // 6),
            "max.poll.interval.ms": 300000,
            "fetch.wait.max.ms": 100,
            **CLIENT_RECOVERY,
        }
        return make_consumer(self.settings, self.config.group_id, **tuning)

    def _subscribe(self) -> None:
        self.consumer.subscribe(
            [self.config.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def _renew_consumer(self) -> None:
        """A fresh consumer after the group session was lost (the broker restarted, or was cut off).

        librdkafka's consumer can keep a stale handle of a broker that went away and restarted, and
        then never fetch again for its partitions while it looks healthy (seen after broker SIGKILLs in
        the chaos tests: assigned, restored, nothing consumed for minutes). The partitions' state was
        already dropped by ``on_lost`` and is restored on the new assignment; no transaction is open
        between batches, so swapping the consumer here loses and repeats nothing."""
        log.warning("renewing the consumer after its group session was lost")
        old, self.consumer = self.consumer, self._new_consumer()
        self._consumer_lost = False
        try:
            old.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the old consumer: %s", exc)
        self._subscribe()

    # ---- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        """Initialise the transactional id (fencing any zombie), subscribe, loop, then close cleanly.

        First waits (briefly) for the producer to reach the cluster: a refused login or TLS handshake
        then stops the worker at once (SecurityError) instead of after init_transactions' retries."""
        await_metadata(self.producer, 5.0)
        try:
            self._call(self.producer.init_transactions, self.config.call_timeout_s)
        except AuthorizationError:
            self.close()
            raise
        except _AbortTransaction:
            raise FatalKafkaError("init_transactions failed") from None
        self._subscribe()
        try:
            while not self.stop.is_set():
                if self._consumer_lost:
                    self._renew_consumer()
                batch = self._consume()
                if batch:
                    self._run_batch(batch)
        finally:
            self.close()

    def _consume(self) -> list[Message]:
        try:
            messages = self.consumer.consume(self.config.batch_size, self.config.batch_timeout_s)
        except KafkaException as exc:
            raise self._classify_consumer_error(exc.args[0]) from None
        batch = []
        for m in messages:
            err = m.error()
            if err is None:
                batch.append(m)
            elif is_denial(err):
                raise self._denied(err, "READ", m.topic() or self.config.input_topic)
            elif err.fatal():
                raise FatalKafkaError(f"consumer: {err.str()}")
            elif err.code() != KafkaError._PARTITION_EOF:
                METRICS.errors.labels(self.service, "consume").inc()
                log.warning("consume error: %s", err.str())
        return batch

    def _run_batch(self, batch: list[Message]) -> None:
        t0 = time.perf_counter()
        out = self._out = Output(self.producer, self._txn_error)
        try:
            self._call(self.producer.begin_transaction)
            self.in_transaction = True
            self.processor.process(batch, out)
            self._write_changelog(out)
            offsets = _next_offsets(batch)
            self._bounded(
                self.producer.send_offsets_to_transaction,
                offsets,
                self.consumer.consumer_group_metadata(),
                self.config.call_timeout_s,
            )
            self._call(self.producer.commit_transaction, self.config.call_timeout_s)
            self.in_transaction = False
        except _AbortTransaction as exc:
            log.warning("aborting transaction and rewinding: %s", exc)
            self._abort_and_rewind()
            return
        except _ProducerLost as exc:
            log.warning("%s; replacing the producer (fencing the old one) and rewinding", exc)
            self._replace_producer()
            return
        except RetryBatch as exc:
            self._retry_delay = min(5.0, self._retry_delay * 2 or 0.2)
            log.warning("retrying the batch in %.1fs: %s", self._retry_delay, exc)
            METRICS.errors.labels(self.service, "retry_batch").inc()
            self._abort_and_rewind()
            self.stop.wait(self._retry_delay)
            return
        except BaseException:
            self._abort_quietly()
            raise
        self.batches += 1
        self._retry_delay = 0.0
        METRICS.transactions.labels(self.service, "committed").inc()
        METRICS.consumed.labels(self.service, self.config.input_topic).inc(len(batch))
        for topic, n in out.sent.items():
            METRICS.produced.labels(self.service, topic).inc(n)
        METRICS.latency.labels(self.service).observe(time.perf_counter() - t0)
        update_lag(self.consumer, self.service)

    def _write_changelog(self, out: Output) -> None:
        entries = self.processor.changelog()
        if not entries:
            return
        if self.config.changelog_topic is None:
            raise RuntimeError("processor produced changelog entries but no changelog topic is configured")
        for partition, items in entries.items():
            for key, value in items:
                out.send(self.config.changelog_topic, key=key, value=value, partition=partition)

    # ---- error handling ------------------------------------------------------------------------
    def _bounded(self, fn: Callable[..., Any], *args: Any) -> Any:
        """:meth:`_call` with every attempt run in a helper thread and given up on ``hang_grace_s``
        after its own timeout (:class:`_ProducerWedged`).

        librdkafka's ``send_offsets_to_transaction`` can block far past its timeout, or forever, when
        the group coordinator goes away mid-call (librdkafka issues 5456 and 5511: the coordinator
        request's timeout is never checked; a broker restart or a connection cut hits it). Nothing
        makes that call return, so the caller replaces the producer instead of hanging. One attempt
        per thread: a call declared hung is never retried on the producer being replaced. The way the
        chaos tests met it, a re-bootstrap decommissioning the group coordinator, is avoided by
        :data:`CLIENT_RECOVERY`; the bound stays for any other.
        """
        return self._call(fn, *args, runner=self._attempt_in_thread)

    def _attempt_in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        box: list[tuple[bool, Any]] = []

        def run() -> None:
            try:
                box.append((True, fn(*args)))
            except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
                box.append((False, exc))

        thread = threading.Thread(target=run, name=f"{self.service}-{fn.__name__}", daemon=True)
        thread.start()
        limit = self.config.call_timeout_s + self.config.hang_grace_s
        thread.join(limit)
        if not box:
            METRICS.errors.labels(self.service, "hung").inc()
            raise _ProducerWedged(f"{fn.__name__} has not returned after {limit:.0f}s")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def _replace_producer(self) -> None:
        """A new producer with the same transactional id: ``init_transactions`` fences the lost one
        (a transaction it still has open is aborted by the broker), then the batch is re-consumed. The
        lost one is kept referenced and never closed: destroying a client inside one of its own calls
        (a hung one) would crash."""
        self._wedged.append(self.producer)
        self.in_transaction = False
        METRICS.transactions.labels(self.service, "aborted").inc()
        self.producer = self._new_producer()
        try:
            self._call(self.producer.init_transactions, self.config.call_timeout_s)
        except _AbortTransaction as exc:
            raise FatalKafkaError(f"init_transactions of the replacement producer failed: {exc}") from None
        self._rewind()

    def _call(self, fn: Callable[..., Any], *args: Any, runner: Callable[..., Any] | None = None) -> Any:
        """Call a transactional API: retry retriable errors, escalate abortable and fatal ones.

        ``runner`` runs each try (default: a plain call; :meth:`_bounded` passes a bounded one)."""
        run = runner or (lambda f, *a: f(*a))
        for attempt in range(self.config.retries + 1):
            try:
                return run(fn, *args)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                retry = err.retriable() and not err.fatal() and not err.txn_requires_abort()
                if retry and attempt < self.config.retries:
                    METRICS.errors.labels(self.service, "retriable").inc()
                    log.warning("retriable error in %s (attempt %d): %s", fn.__name__, attempt + 1, err.str())
                    time.sleep(min(2.0, 0.1 * 2**attempt))
                    continue
                raise self._txn_error(fn.__name__, err) from None
        raise AssertionError("unreachable")

    def _txn_error(self, what: str, err: KafkaError) -> Exception:
        """Denied -> AuthorizationError; fatal -> FatalKafkaError (the process must exit); anything else
        -> abort and rewind."""
        if is_denial(err):
            written = ", ".join(sorted(self._out.sent)) if self._out and self._out.sent else self.config.input_topic
            return self._denied(err, "WRITE", written)
        if not err.fatal():
            return _AbortTransaction(f"{what}: {err.str()}")
        if err.code() == KafkaError.INVALID_TXN_STATE and what != "init_transactions":
            return _RolledBackByCoordinator(f"{what}: {err.str()}")
        METRICS.errors.labels(self.service, "fatal").inc()
        try:  # a failed produce() only says "Fatal error"; error_cb, or poll() itself, says why
            self.producer.poll(0)
        except KafkaException as exc:
            self._fatal_cause = self._fatal_cause or exc.args[0].str()
        cause = self._fatal_cause
        return FatalKafkaError(f"{what}: {err.str()}" + (f" ({cause})" if cause and cause not in err.str() else ""))

    def _denied(self, err: KafkaError, operation: str, topic: str) -> AuthorizationError:
        """Name the resource the error code is about: our transactional id, our group, or the topic."""
        METRICS.errors.labels(self.service, "denied").inc()
        if err.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            return denied(self.settings, err, "WRITE", self.config.transactional_id)
        if err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
            return denied(self.settings, err, "READ", self.config.group_id)
        return denied(self.settings, err, operation, topic)

    def _on_client_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal_cause = err.str()
        # the client factory's security check runs after this (a refused login raises SecurityError)

    def _classify_consumer_error(self, err: KafkaError) -> Exception:
        if is_denial(err):
            return self._denied(err, "READ", self.config.input_topic)
        if err.fatal():
            return FatalKafkaError(f"consumer: {err.str()}")
        return BrokerError(f"consumer: {err.str()}")

    def _abort_and_rewind(self) -> None:
        """Abort, seek every assigned partition back to its committed offset, rebuild state."""
        METRICS.transactions.labels(self.service, "aborted").inc()
        try:
            self._call(self.producer.abort_transaction, self.config.call_timeout_s)
        except _AbortTransaction as exc:
            raise FatalKafkaError(f"abort failed: {exc}") from None
        except _RolledBackByCoordinator as exc:
            log.warning("%s; replacing the producer (fencing the old one) and rewinding", exc)
            self._replace_producer()
            return
        self.in_transaction = False
        self._rewind()

    def _rewind(self) -> None:
        """Seek every assigned partition back to its committed offset and rebuild its state.

        A partition whose committed offset could not be read (its ``error``, e.g. the coordinator
        still loading after a broker restart) is asked again: taking the missing offset for "never
        committed" would seek to the beginning and write the partition's records a second time."""
        assignment = self.consumer.assignment()
        if not assignment:
            return
        for tp in self._committed(assignment):
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        partitions = sorted(tp.partition for tp in assignment)
        self.processor.revoke(partitions)
        self.processor.assign(partitions, self._restore)

    def _committed(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The committed offsets of ``partitions``, retried until every partition has an answer."""
        for attempt in range(self.config.retries + 1):
            try:
                committed = self.consumer.committed(partitions, timeout=self.config.call_timeout_s)
            except KafkaException as exc:
                if exc.args[0].fatal() or attempt == self.config.retries:
                    raise self._classify_consumer_error(exc.args[0]) from None
                log.warning("reading committed offsets: %s (retrying)", exc.args[0].str())
            else:
                failed = [tp for tp in committed if tp.error is not None]
                if not failed:
                    return committed
                if attempt == self.config.retries:
                    raise FatalKafkaError(
                        f"committed offsets of {failed[0].topic}[{failed[0].partition}]: {failed[0].error}"
                    )
                log.warning(
                    "committed offset of partition %d unreadable: %s (retrying)", failed[0].partition, failed[0].error
                )
            time.sleep(min(2.0, 0.1 * 2**attempt))
        raise AssertionError("unreachable")

    def _abort_quietly(self) -> None:
        if not self.in_transaction:
            return
        try:
            self.producer.abort_transaction(10)
            METRICS.transactions.labels(self.service, "aborted").inc()
        except KafkaException as exc:
            log.error("abort_transaction failed: %s", exc)
        self.in_transaction = False

    # ---- rebalance callbacks (served inside consume(), never while a transaction is open) ------
    def _restore(self, partitions: list[int]) -> ChangelogEntries:
        if self.config.changelog_topic is None or not partitions:
            return {p: [] for p in partitions}
        settle_changelog(self.settings, self.config.changelog_topic, partitions)
        return read_changelog(self.settings, self.config.changelog_topic, partitions)

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        parts = sorted(tp.partition for tp in partitions)
        log.info("assigned partitions %s", parts)
        if self.config.changelog_topic is not None:
            self._await_stable_offsets(partitions)
        self.processor.assign(parts, self._restore)

    def _await_stable_offsets(self, partitions: list[TopicPartition]) -> None:
        """Wait until no transaction of a previous owner still holds offsets of these partitions.

        A previous owner paused (a zombie) after ``send_offsets_to_transaction`` cannot be fenced:
        its offsets were valid when sent, and its commit goes through when it wakes. The consumer's
        own offset fetch waits for that (read_committed requires stable offsets, KIP-447), but the
        state would already have been restored from the changelog without the zombie's last batch,
        and the batch's records never come again: its windows would stay short. So the restore waits
        too. ``committed()`` of a read_committed consumer is refused while offsets are pending; a
        transaction that never ends is aborted by the broker after ``transaction.timeout.ms``. (A
        zombie paused *before* sending its offsets holds none; it is fenced when it sends them.)
        """
        tps = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        while not self.stop.is_set():
            try:
                self.consumer.committed(tps, timeout=self.config.call_timeout_s)
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.fatal() or not (err.retriable() or err.code() == KafkaError._TIMED_OUT):
                    raise self._classify_consumer_error(err) from None
                log.warning(
                    "offsets of partitions %s not stable yet (%s): waiting", [tp.partition for tp in tps], err.str()
                )

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        parts = sorted(tp.partition for tp in partitions)
        log.info("revoked partitions %s", parts)
        if self.in_transaction:  # defensive: commit what the batch did before giving the partitions up
            try:
                self._call(self.producer.commit_transaction, self.config.call_timeout_s)
                self.in_transaction = False
            except (_AbortTransaction, _ProducerLost):
                self._abort_quietly()
        self.processor.revoke(parts)

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        parts = sorted(tp.partition for tp in partitions)
        log.warning("lost partitions %s", parts)
        self._abort_quietly()
        self.processor.revoke(parts)
        self._consumer_lost = True

    def close(self) -> None:
        """End any open transaction, leave the group, flush the producer."""
        self._abort_quietly()
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("consumer close: %s", exc)
        try:
            self.producer.flush(5)
        except Exception as exc:  # noqa: BLE001 -- a fenced (fatal) producer fails even this, as a
            # KafkaException or, with an error left over from a callback, a SystemError; the cause
            # is already being raised and must not be replaced by this one
            log.warning("producer flush on close: %s", exc)


def _next_offsets(batch: Sequence[Message]) -> list[TopicPartition]:
    """The offset to resume from for each (topic, partition) in the batch: last offset + 1."""
    last: dict[tuple[str, int], int] = {}
    for m in batch:
        # A consumed message always has its topic, partition and offset; the stubs allow None for all
        # three. Typed as Any here, which costs nothing per record (a cast() is a call).
        key: Any = (m.topic(), m.partition())
        offset: Any = m.offset()
        last[key] = max(last.get(key, -1), offset)
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]
