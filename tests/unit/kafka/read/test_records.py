"""The record-level reader's end rule, without a broker: a fake consumer serves a partition log with
transaction markers, aborted and open transactions and compaction gaps, the way librdkafka does
(read_committed stops at the last stable offset and reports EOF there)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, Message

from kstream_lab.errors import BrokerError, ConfigError, TopicError
from kstream_lab.kafka.read import Record, read_records
from kstream_lab.settings import Settings

DATA, MARKER, ABORTED, OPEN = "data", "marker", "aborted", "open"


@dataclass
class PartitionLog:
    """Offset -> kind; offsets missing from ``entries`` were removed by compaction."""

    entries: dict[int, str]
    low: int = 0
    eof: bool = True  # False: no EOF events (records alone must finish the partition)
    later: dict[int, str] = field(default_factory=dict)  # written after the snapshot

    @property
    def high(self) -> int:
        return max(self.entries, default=self.low - 1) + 1

    @property
    def stable(self) -> int:
        """The last stable offset: the first offset of a still open transaction, else the high watermark."""
        return min((o for o, kind in self.entries.items() if kind == OPEN), default=self.high)


class FakeConsumer:
    """Serves ``logs`` like librdkafka's consumer: visible records from the position, then one EOF."""

    def __init__(self, logs: dict[int, PartitionLog], read_committed: bool) -> None:
        self.logs, self.read_committed = logs, read_committed
        self.position: dict[int, int] = {}
        self.paused: list[int] = []
        self.consumed = 0

    def list_topics(self, topic: str, timeout: float):
        meta = SimpleNamespace(error=None, partitions={p: None for p in self.logs})
        return SimpleNamespace(topics={"t": meta})

    def get_watermark_offsets(self, tp, timeout: float):
        log = self.logs[tp.partition]
        return log.low, log.stable if self.read_committed else log.high

    def assign(self, tps) -> None:
        for tp in tps:
            self.position[tp.partition] = tp.offset
        for log in self.logs.values():  # the snapshot is taken: producers keep writing
            log.entries.update(log.later)

    def pause(self, tps) -> None:
        self.paused += [tp.partition for tp in tps]

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.consumed += 1
        for p, pos in sorted(self.position.items()):
            if p in self.paused or pos is None:
                continue
            log = self.logs[p]
            limit = log.stable if self.read_committed else log.high
            visible = (DATA,) if self.read_committed else (DATA, ABORTED, OPEN)
            out = [message(p, o) for o in sorted(log.entries) if pos <= o < limit and log.entries[o] in visible]
            out = out[:num_messages]
            self.position[p] = (out[-1].offset() + 1) if len(out) == num_messages else None
            if self.position[p] is None and log.eof:
                out.append(Message(topic="t", partition=p, offset=limit, error=KafkaError(KafkaError._PARTITION_EOF)))
            if out:
                return out
        time.sleep(0.01)
        return []

    def close(self) -> None:
        pass


def message(p: int, o: int) -> Message:
    return Message(topic="t", partition=p, offset=o, key=f"k{o}".encode(), value=f"v{o}".encode(), timestamp=(1, o))


@pytest.fixture
def serve(monkeypatch):
    """serve(logs) -> the FakeConsumers the reader opens (one for the snapshot, one for the read)."""
    opened: list[FakeConsumer] = []

    def install(logs: dict[int, PartitionLog]) -> list[FakeConsumer]:
        def make(settings, group, *, read_committed=True, **overrides):
            opened.append(FakeConsumer(logs, read_committed))
            return opened[-1]

        monkeypatch.setattr("kstream_lab.kafka.read.bounds.make_consumer", make)
        monkeypatch.setattr("kstream_lab.kafka.read.engine.make_consumer", make)
        return opened

    return install


def offsets(got: list[Record]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in got]


def test_markers_aborted_records_and_compaction_gaps_are_skipped_not_waited_for(serve) -> None:
    serve(
        {
            # 0-2 committed, 3 marker, 4-5 aborted, 6 marker, 7 data, 8 marker: the end (9) follows a marker
            0: PartitionLog(
                {0: DATA, 1: DATA, 2: DATA, 3: MARKER, 4: ABORTED, 5: ABORTED, 6: MARKER, 7: DATA, 8: MARKER}
            ),
            # compacted: 0, 1, 4, 5 removed; the log starts at 2 (retention moved it)
            1: PartitionLog({2: DATA, 3: DATA, 6: DATA, 9: DATA}, low=2),
            2: PartitionLog({}),  # empty
        }
    )
    t = time.monotonic()
    got = read_records(Settings(), "t", stall_timeout=5)
    assert time.monotonic() - t < 2
    assert offsets(got) == [(0, 0), (0, 1), (0, 2), (0, 7), (1, 2), (1, 3), (1, 6), (1, 9)]
    assert got[3] == Record("t", 0, 7, b"k7", b"v7", (), 7)


def test_an_open_transaction_ends_the_read_at_the_last_stable_offset(serve) -> None:
    logs = {0: PartitionLog({0: DATA, 1: DATA, 2: MARKER, 3: OPEN, 4: DATA, 5: OPEN})}
    serve(logs)
    t = time.monotonic()
    assert offsets(read_records(Settings(), "t", stall_timeout=5)) == [(0, 0), (0, 1)]  # not 4: it is past the LSO
    assert time.monotonic() - t < 2
    # read_uncommitted ends at the high watermark and sees the open transaction's records
    assert offsets(read_records(Settings(), "t", read_committed=False, stall_timeout=5)) == [
        (0, 0),
        (0, 1),
        (0, 3),
        (0, 4),
        (0, 5),
    ]


def test_a_record_past_the_end_finishes_a_partition_without_eof_and_is_cut(serve) -> None:
    """No EOF events: a record at end-1 finishes partition 0; partition 1's end (3) follows a marker,
    so only a record written after the snapshot (5, past an aborted one) finishes it, and is cut."""
    opened = serve(
        {
            0: PartitionLog({0: DATA, 1: DATA, 2: DATA}, eof=False),
            1: PartitionLog({0: DATA, 1: DATA, 2: MARKER}, eof=False, later={3: ABORTED, 4: MARKER, 5: DATA}),
        }
    )
    got = read_records(Settings(), "t", stall_timeout=5)
    assert offsets(got) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert sorted(opened[-1].paused) == [0, 1]


def test_without_eof_or_a_later_record_a_gap_at_the_end_is_a_stall(serve) -> None:
    """The end rule's limit: with EOF events turned off and nothing past the end, the read cannot
    know a trailing gap is a gap; it fails after the stall timeout, naming the partition."""
    serve({0: PartitionLog({0: DATA, 1: MARKER}, eof=False)})
    with pytest.raises(BrokerError, match=r"partitions \[0\] to reach offsets \{0: 2\}"):
        read_records(Settings(), "t", stall_timeout=0.3)


def test_start_offsets_partitions_and_bad_arguments(serve) -> None:
    serve({0: PartitionLog({o: DATA for o in range(5)}, low=1), 1: PartitionLog({o: DATA for o in range(3)})})
    assert offsets(read_records(Settings(), "t", start=3)) == [(0, 3), (0, 4)]
    assert offsets(read_records(Settings(), "t", [0], start=0)) == [(0, 1), (0, 2), (0, 3), (0, 4)]  # clamped to low
    assert offsets(read_records(Settings(), "t", start={1: 2})) == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2)]
    with pytest.raises(TopicError, match=r"has no partition\(s\) \[7\]"):
        read_records(Settings(), "t", [7])
    with pytest.raises(ConfigError, match="start must be a non-negative offset"):
        read_records(Settings(), "t", start=-1)
