"""The transactional loop's error handling (docs/semantics.md §4), driven by scripted client errors:
retriable -> the same call again; txn_requires_abort -> abort, rewind to the committed offsets and
rebuild state; fatal -> FatalKafkaError (the worker exits non-zero); RetryBatch -> abort and rewind
without dead-lettering; and the happy path commits outputs and offsets in one transaction."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from kstream_lab.kafka.transactional import FatalKafkaError, LoopConfig, RetryBatch, TransactionalLoop
from kstream_lab.settings import Settings


class ScriptedProducer:
    """Records transactional calls; ``fail[name]`` is a list of errors raised by successive calls."""

    def __init__(self, fail: dict[str, list[KafkaError]] | None = None) -> None:
        self.fail, self.calls, self.produced = fail or {}, [], []

    def _step(self, name: str) -> None:
        self.calls.append(name)
        errors = self.fail.get(name)
        if errors:
            raise KafkaException(errors.pop(0))

    def begin_transaction(self) -> None:
        self._step("begin")

    def send_offsets_to_transaction(self, offsets, metadata, timeout) -> None:
        self._step("send_offsets")
        self.offsets = [(tp.partition, tp.offset) for tp in offsets]

    def commit_transaction(self, timeout) -> None:
        self._step("commit")

    def abort_transaction(self, timeout) -> None:
        self._step("abort")

    def produce(self, topic, **kwargs) -> None:
        self.produced.append((topic, kwargs["value"]))

    def poll(self, timeout=0) -> int:
        return 0


class ScriptedConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[int, int]] = []

    def consumer_group_metadata(self) -> object:
        return object()

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("in", 0), TopicPartition("in", 1)]

    def committed(self, partitions, timeout) -> list[TopicPartition]:
        return [TopicPartition("in", 0, 40), TopicPartition("in", 1, -1001)]  # p1 never committed

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))

    def position(self, partitions):
        return partitions

    def get_watermark_offsets(self, tp, timeout=None, cached=False):
        return (0, 100)


class EchoProcessor:
    def __init__(self, raise_retry: int = 0) -> None:
        self.raise_retry, self.restored, self.revoked = raise_retry, [], []

    def assign(self, partitions, restore) -> None:
        self.restored.append(partitions)

    def revoke(self, partitions) -> None:
        self.revoked.append(partitions)

    def process(self, messages, out) -> None:
        if self.raise_retry:
            self.raise_retry -= 1
            raise RetryBatch("schema registry unavailable")
        for m in messages:
            out.send("out", key=m.key(), value=m.value(), partition=m.partition())

    def changelog(self) -> dict:
        return {}


def loop(producer: ScriptedProducer, processor: EchoProcessor | None = None) -> TransactionalLoop:
    settings = Settings(bootstrap_servers="127.0.0.1:1")  # clients are never contacted: both are replaced
    lp = TransactionalLoop(
        settings,
        LoopConfig(input_topic="in", group_id="g", transactional_id="t", retries=3),
        processor or EchoProcessor(),
        service="test",
        stop=threading.Event(),
    )
    lp.producer, lp.consumer = producer, ScriptedConsumer()
    return lp


BATCH = [Message(topic="in", partition=0, offset=o, key=b"k", value=b"v%d" % o) for o in (40, 41)] + [
    Message(topic="in", partition=1, offset=7, key=b"k", value=b"w")
]


def test_a_batch_commits_outputs_and_next_offsets_in_one_transaction() -> None:
    producer = ScriptedProducer()
    lp = loop(producer)
    lp._run_batch(BATCH)
    assert producer.calls == ["begin", "send_offsets", "commit"]
    assert producer.offsets == [(0, 42), (1, 8)]
    assert [v for _t, v in producer.produced] == [b"v40", b"v41", b"w"]
    assert lp.batches == 1 and not lp.in_transaction


def test_retriable_errors_retry_the_same_call() -> None:
    slow = KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True)
    producer = ScriptedProducer({"commit": [slow, slow]})
    lp = loop(producer)
    lp._run_batch(BATCH)
    assert producer.calls == ["begin", "send_offsets", "commit", "commit", "commit"]
    assert lp.batches == 1


def test_abortable_errors_abort_rewind_to_committed_offsets_and_rebuild_state() -> None:
    producer = ScriptedProducer({"send_offsets": [KafkaError(KafkaError._STATE, "abort me", txn_requires_abort=True)]})
    processor = EchoProcessor()
    lp = loop(producer, processor)
    lp._run_batch(BATCH)
    assert producer.calls == ["begin", "send_offsets", "abort"]
    assert lp.consumer.seeks == [(0, 40), (1, -2)]  # -2: OFFSET_BEGINNING where nothing was committed
    assert processor.revoked == [[0, 1]] and processor.restored == [[0, 1]]
    assert lp.batches == 0 and not lp.in_transaction


def test_fatal_errors_end_the_worker() -> None:
    producer = ScriptedProducer({"commit": [KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True)]})
    lp = loop(producer)
    with pytest.raises(FatalKafkaError, match="fenced"):
        lp._run_batch(BATCH)
    assert producer.calls == ["begin", "send_offsets", "commit", "abort"]  # the open transaction is ended


def test_retry_batch_aborts_and_rewinds_without_dead_letters() -> None:
    producer = ScriptedProducer()
    processor = EchoProcessor(raise_retry=1)
    lp = loop(producer, processor)
    lp.stop.set()  # no back-off sleep in a unit test
    lp._run_batch(BATCH)
    assert producer.calls == ["begin", "abort"] and producer.produced == []
    assert lp.consumer.seeks == [(0, 40), (1, -2)]
    lp._run_batch(BATCH)  # the re-consumed batch goes through
    assert producer.calls[-3:] == ["begin", "send_offsets", "commit"] and len(producer.produced) == 3


def test_close_after_fencing_keeps_the_fatal_error() -> None:
    """A fenced producer raises on flush too; close() must not replace the FatalKafkaError (exit 3)."""

    class FencedProducer(ScriptedProducer):
        def flush(self, timeout) -> int:
            raise KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))

    class ClosingConsumer(ScriptedConsumer):
        def close(self) -> None:
            pass

    lp = loop(FencedProducer({"commit": [KafkaError(KafkaError._FENCED, "fenced", fatal=True)]}))
    lp.consumer = ClosingConsumer()
    with pytest.raises(FatalKafkaError):
        try:
            lp._run_batch(BATCH)
        finally:
            lp.close()


def test_produce_errors_inside_the_transaction_are_classified_too() -> None:
    """Once fenced, produce() itself raises a fatal error; an abortable one rewinds instead."""

    class FailingProduce(ScriptedProducer):
        def __init__(self, err: KafkaError) -> None:
            super().__init__()
            self.err = err

        def produce(self, topic, **kwargs) -> None:
            raise KafkaException(self.err)

    fenced = FailingProduce(KafkaError(KafkaError._FATAL, "Unable to produce message: Local: Fatal error", fatal=True))
    with pytest.raises(FatalKafkaError, match="Fatal error"):
        loop(fenced)._run_batch(BATCH)
    assert fenced.calls == ["begin", "abort"]

    abortable = FailingProduce(KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True))
    lp = loop(abortable)
    lp._run_batch(BATCH)
    assert abortable.calls == ["begin", "abort"] and lp.consumer.seeks == [(0, 40), (1, -2)]


class HangingProducer(ScriptedProducer):
    """send_offsets_to_transaction never returns (librdkafka issue 5456), until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def send_offsets_to_transaction(self, offsets, metadata, timeout) -> None:
        self.calls.append("send_offsets")
        self.release.wait(30)

    def init_transactions(self, timeout) -> None:
        self.calls.append("init")


def test_a_hung_send_offsets_replaces_the_producer_and_rewinds() -> None:
    hung, fresh = HangingProducer(), HangingProducer()
    processor = EchoProcessor()
    lp = loop(hung, processor)
    lp.config = LoopConfig(input_topic="in", group_id="g", transactional_id="t", call_timeout_s=0.1, hang_grace_s=0.1)
    lp._new_producer = lambda: fresh  # type: ignore[method-assign]
    lp._run_batch(BATCH)
    hung.release.set()
    assert hung.calls == ["begin", "send_offsets"]  # never aborted or closed: it is inside a call
    assert fresh.calls == ["init"]  # the new one fences the old transactional epoch
    assert lp.producer is fresh and lp._wedged == [hung]
    assert lp.consumer.seeks == [(0, 40), (1, -2)]
    assert processor.revoked == [[0, 1]] and processor.restored == [[0, 1]]
    assert lp.batches == 0 and not lp.in_transaction


def test_a_slow_retriable_send_offsets_is_retried_on_the_same_producer_not_replaced() -> None:
    """Each attempt gets its own time limit: a first attempt that fails retriably close to the limit
    is followed by a second one on the same producer (the old code timed all attempts together)."""

    class SlowThenOk(ScriptedProducer):
        def send_offsets_to_transaction(self, offsets, metadata, timeout) -> None:
            if "send_offsets" not in self.calls:
                threading.Event().wait(0.15)  # most of the 0.2 s limit
                self.calls.append("send_offsets")
                raise KafkaException(KafkaError(KafkaError._TRANSPORT, "transport", retriable=True))
            super().send_offsets_to_transaction(offsets, metadata, timeout)

    slow = SlowThenOk()
    lp = loop(slow)
    lp.config = LoopConfig(input_topic="in", group_id="g", transactional_id="t", call_timeout_s=0.1, hang_grace_s=0.1)
    lp._new_producer = lambda: pytest.fail("the producer must not be replaced")  # type: ignore[method-assign]
    lp._run_batch(BATCH)
    assert slow.calls == ["begin", "send_offsets", "send_offsets", "commit"]
    assert lp.producer is slow and lp._wedged == [] and lp.batches == 1


def test_a_lost_group_session_renews_the_consumer_before_the_next_batch() -> None:
    """After on_lost (a broker restart), the state is dropped and the next loop turn swaps in a fresh
    consumer, closing the old one and subscribing the new with the same callbacks."""

    class Closing(ScriptedConsumer):
        closed = False
        subscribed: list[str] = []

        def close(self) -> None:
            self.closed = True

        def subscribe(self, topics, **callbacks) -> None:
            self.subscribed = list(topics)
            self.callbacks = callbacks

    processor = EchoProcessor()
    lp = loop(ScriptedProducer(), processor)
    old, fresh = Closing(), Closing()
    lp.consumer = old
    lp._new_consumer = lambda: fresh  # type: ignore[method-assign]
    lp._on_lost(old, [TopicPartition("in", 0), TopicPartition("in", 1)])
    assert processor.revoked == [[0, 1]] and lp._consumer_lost
    lp._renew_consumer()
    assert old.closed and not fresh.closed and lp.consumer is fresh and not lp._consumer_lost
    assert fresh.subscribed == ["in"] and fresh.callbacks["on_lost"] == lp._on_lost


def test_an_assignment_restores_state_only_once_the_offsets_are_stable() -> None:
    """A previous owner's transaction still holds offsets of the partitions (a zombie paused after
    send_offsets_to_transaction): committed() times out while they are pending; the changelog is read
    only after it answers, so the zombie's last batch, which commits when it wakes, is in the state."""
    events: list[str] = []
    pending = KafkaError(KafkaError._TIMED_OUT, "UNSTABLE_OFFSET_COMMIT", retriable=True)

    class PendingConsumer(ScriptedConsumer):
        def __init__(self) -> None:
            super().__init__()
            self.refusals = 2

        def committed(self, partitions, timeout) -> list[TopicPartition]:
            if self.refusals:
                self.refusals -= 1
                events.append("pending")
                raise KafkaException(pending)
            events.append("stable")
            return super().committed(partitions, timeout)

    class Restoring(EchoProcessor):
        def assign(self, partitions, restore) -> None:
            events.append("restore")
            super().assign(partitions, restore)

    lp = loop(ScriptedProducer(), Restoring())
    lp.config = LoopConfig(input_topic="in", group_id="g", transactional_id="t", changelog_topic="cl")
    lp.consumer = PendingConsumer()
    lp._on_assign(None, [TopicPartition("in", 0), TopicPartition("in", 1)])
    assert events == ["pending", "pending", "stable", "restore"]


def test_a_committed_offset_that_could_not_be_read_is_asked_again_not_taken_as_the_beginning() -> None:
    """After a broker restart committed() can answer a partition with an error (offset -1001): the
    rewind asks again instead of seeking that partition to its beginning (which would write it twice)."""

    class FlakyCommitted(ScriptedConsumer):
        asked = 0

        def committed(self, partitions, timeout):
            self.asked += 1
            if self.asked == 1:  # TopicPartition.error is read-only: a stand-in with the same fields
                broken = SimpleNamespace(
                    topic="in", partition=0, offset=-1001, error=KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)
                )
                return [broken, TopicPartition("in", 1, 7)]
            return [TopicPartition("in", 0, 40), TopicPartition("in", 1, 7)]

    lp = loop(ScriptedProducer())
    lp.consumer = FlakyCommitted()
    lp._rewind()
    assert lp.consumer.asked == 2 and lp.consumer.seeks == [(0, 40), (1, 7)]


def test_the_loops_clients_never_re_bootstrap_and_reconnect_within_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-bootstrapping decommissions the one broker whenever it is down (a restart, a cut connection)
    and can leave send_offsets_to_transaction waiting forever on the decommissioned group coordinator
    (librdkafka 5511/5456), and the default 10 s reconnect back-off held each retry of a cut EndTxn
    for 10 s: the transactional producer and its consumer are made without either."""
    import kstream_lab.kafka.transactional as transactional

    seen: dict[str, dict] = {}
    monkeypatch.setattr(transactional, "make_producer", lambda _s, **conf: seen.setdefault("producer", conf))
    monkeypatch.setattr(transactional, "make_consumer", lambda _s, _g, **conf: seen.setdefault("consumer", conf))
    TransactionalLoop(
        Settings(bootstrap_servers="127.0.0.1:1"),
        LoopConfig(input_topic="in", group_id="g", transactional_id="t"),
        EchoProcessor(),
        service="test",
        stop=threading.Event(),
    )
    for client in ("producer", "consumer"):
        assert seen[client]["metadata.recovery.strategy"] == "none"
        assert seen[client]["reconnect.backoff.max.ms"] == 1000
    assert seen["producer"]["transactional_id"] == "t"


def test_an_abort_refused_with_invalid_txn_state_replaces_the_producer_and_rewinds() -> None:
    """The broker away longer than transaction.timeout.ms: the batch's records time out (abortable),
    and the abort meets a transaction the coordinator already aborted itself, INVALID_TXN_STATE,
    fatal for librdkafka (KAFKA-20785). A fresh producer takes over and the batch is re-consumed from
    the committed offsets, as a restart would do, instead of the worker exiting."""
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT, "5 message(s) timed out", txn_requires_abort=True)
    rolled_back = KafkaError(KafkaError.INVALID_TXN_STATE, "Failed to end transaction", fatal=True)
    old = ScriptedProducer({"send_offsets": [timed_out], "abort": [rolled_back]})
    fresh = HangingProducer()
    processor = EchoProcessor()
    lp = loop(old, processor)
    lp._new_producer = lambda: fresh  # type: ignore[method-assign]
    lp._run_batch(BATCH)
    assert old.calls == ["begin", "send_offsets", "abort"]
    assert fresh.calls == ["init"] and lp.producer is fresh and not lp.in_transaction
    assert lp.consumer.seeks == [(0, 40), (1, -2)]
    assert processor.revoked == [[0, 1]] and processor.restored == [[0, 1]]
    assert lp.batches == 0


def test_a_commit_refused_with_invalid_txn_state_replaces_the_producer_but_a_fence_still_ends_the_worker() -> None:
    rolled_back = KafkaError(KafkaError.INVALID_TXN_STATE, "Failed to end transaction", fatal=True)
    fresh = HangingProducer()
    lp = loop(ScriptedProducer({"commit": [rolled_back]}))
    lp._new_producer = lambda: fresh  # type: ignore[method-assign]
    lp._run_batch(BATCH)
    assert lp.producer is fresh and fresh.calls == ["init"] and lp.consumer.seeks == [(0, 40), (1, -2)]

    fenced = KafkaError(KafkaError.PRODUCER_FENCED, "fenced by a newer instance", fatal=True)
    lp = loop(ScriptedProducer({"commit": [fenced]}))
    lp._new_producer = lambda: pytest.fail("a fenced producer must not be replaced")  # type: ignore[method-assign]
    with pytest.raises(FatalKafkaError, match="fenced"):
        lp._run_batch(BATCH)
